//! A parent's bill: claimed, released, frozen while the bill is completed, and the figures of
//! bills (billing asks for them).

use sqlx::{PgConnection, PgExecutor};
use tracetrack_common::AppResult;

use super::{BagRow, BAG_COLUMNS};

/// Puts a parent on a bill if it is on none; the parent, or None when it is not free.
pub async fn claim(conn: &mut PgConnection, qr: &str, bill_id: &str) -> AppResult<Option<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (UPDATE registry.bags SET bill_id = $2 WHERE qr = $1 AND kind = 'parent' AND bill_id IS NULL RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(qr)
    .bind(bill_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Takes a parent off a bill unless it is frozen; whether it was released.
pub async fn release(conn: &mut PgConnection, qr: &str, bill_id: &str) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE registry.bags SET bill_id = NULL WHERE qr = $1 AND bill_id = $2 AND NOT frozen",
    )
    .bind(qr)
    .bind(bill_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// A parent returned from a completed bill, in one statement: released and unfrozen only while
/// it is on `bill_id`; it and its children take `area`. Whether it was on that bill.
pub async fn return_parent(
    conn: &mut PgConnection,
    qr: &str,
    bill_id: &str,
    area: &str,
) -> AppResult<bool> {
    let returned: i64 = sqlx::query_scalar(
        r#"WITH p AS (UPDATE registry.bags SET bill_id = NULL, frozen = false, area = $3
                       WHERE qr = $1 AND kind = 'parent' AND bill_id = $2 RETURNING qr),
                c AS (UPDATE registry.bags SET area = $3
                       WHERE parent_qr IN (SELECT qr FROM p) AND area <> $3 RETURNING 1)
           SELECT count(*) FROM p"#,
    )
    .bind(qr)
    .bind(bill_id)
    .bind(area)
    .fetch_one(&mut *conn)
    .await?;
    Ok(returned > 0)
}

/// Freezes or unfreezes a bill's parents (locked in QR order, then flipped); how many changed.
pub async fn set_frozen(conn: &mut PgConnection, bill_id: &str, frozen: bool) -> AppResult<u64> {
    Ok(sqlx::query(
        r#"UPDATE registry.bags SET frozen = $2
           WHERE qr IN (SELECT qr FROM registry.bags WHERE bill_id = $1 AND frozen <> $2 ORDER BY qr FOR UPDATE)"#,
    )
    .bind(bill_id)
    .bind(frozen)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// A bill's figures from its parents.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BillFiguresRow {
    pub bill_id: String,
    pub parent_count: i64,
    pub child_count: i64,
    pub actual_weight_kg: f64,
    pub expected_weight_kg: f64,
}

/// The figures of the bills that have parents (others are left out).
pub async fn bill_figures<'e>(
    db: impl PgExecutor<'e>,
    bill_ids: &[String],
) -> AppResult<Vec<BillFiguresRow>> {
    Ok(sqlx::query_as(
        r#"SELECT bill_id, count(*) AS parent_count, coalesce(sum(child_count), 0)::bigint AS child_count,
                  coalesce(sum(child_count * child_weight_kg), 0)::float8 AS actual_weight_kg,
                  coalesce(sum(parent_weight_kg), 0)::float8 AS expected_weight_kg
           FROM registry.bags WHERE bill_id = ANY($1) GROUP BY bill_id"#,
    )
    .bind(bill_ids)
    .fetch_all(db)
    .await?)
}

/// ClaimParents' statement: puts each free parent of `qrs` on its bill of `bill_ids` (the same
/// order), locking the rows in QR order first (as the link trigger locks parents), so two bulk
/// claims cannot deadlock. The QRs newly claimed.
pub async fn claim_many(
    conn: &mut PgConnection,
    qrs: &[String],
    bill_ids: &[String],
) -> AppResult<Vec<String>> {
    sqlx::query("SELECT qr FROM registry.bags WHERE qr = ANY($1) ORDER BY qr FOR UPDATE")
        .bind(qrs)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar(
        "UPDATE registry.bags b SET bill_id = r.bill_id \
           FROM unnest($1::text[], $2::text[]) AS r(qr, bill_id) \
          WHERE b.qr = r.qr AND b.kind = 'parent' AND b.bill_id IS NULL \
         RETURNING b.qr",
    )
    .bind(qrs)
    .bind(bill_ids)
    .fetch_all(&mut *conn)
    .await?)
}
