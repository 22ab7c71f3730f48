//! Children in parents: linked (registered or claimed in one statement), moved, unlinked, and
//! the newest link undone. Each maps the trigger's and the CHECK's refusals with
//! [`link_error`](super::link_error).

use sqlx::PgConnection;
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{link_error, BagRow, LinkedRow, BAG_COLUMNS};

/// Takes a child out of its parent; the child, or None when it is not in that parent.
pub async fn unlink(
    conn: &mut PgConnection,
    child_qr: &str,
    parent_qr: &str,
) -> AppResult<Option<BagRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (UPDATE registry.bags SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
                      WHERE qr = $1 AND parent_qr = $2 RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(child_qr)
    .bind(parent_qr)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}

/// Moves a child into a parent (taking its area, line and weight). The child row is locked
/// first by this statement, then (in the trigger) both parents in QR order.
pub async fn move_child(
    conn: &mut PgConnection,
    child_qr: &str,
    parent_qr: &str,
    linked_by: Uuid,
) -> AppResult<BagRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (UPDATE registry.bags c SET parent_qr = p.qr, linked_by = $3, linked_at = now(),
                             area = p.area, product_line = p.product_line, child_weight_kg = p.child_weight_kg
                      FROM registry.bags p WHERE c.qr = $1 AND c.kind = 'child' AND p.qr = $2
                      RETURNING c.*)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(child_qr)
    .bind(parent_qr)
    .bind(linked_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}

/// Links a child into `parent` in one statement: registers it, or claims it when it exists
/// unlinked; the trigger counts it into the parent (the CHECK refuses past capacity, a frozen
/// parent refuses any change). None when the child exists and is not free.
pub async fn link(
    conn: &mut PgConnection,
    child_qr: &str,
    parent: &BagRow,
    linked_by: Uuid,
) -> AppResult<Option<LinkedRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH old AS (SELECT area FROM registry.bags WHERE qr = $1),
           b AS (
             INSERT INTO registry.bags AS x (qr, kind, area, product_line, child_weight_kg, parent_qr, linked_by, linked_at, created_by)
             VALUES ($1, 'child', $3, $5, $6, $2, $4, now(), $4)
             ON CONFLICT (qr) DO UPDATE SET parent_qr = EXCLUDED.parent_qr, linked_by = EXCLUDED.linked_by,
                                           linked_at = EXCLUDED.linked_at, area = EXCLUDED.area,
                                           product_line = EXCLUDED.product_line, child_weight_kg = EXCLUDED.child_weight_kg
               WHERE x.kind = 'child' AND x.parent_qr IS NULL
             RETURNING *, (xmax = 0) AS inserted)
           SELECT {BAG_COLUMNS}, b.inserted, (SELECT area FROM old) AS area_before FROM b"#
    )))
    .bind(child_qr)
    .bind(&parent.qr)
    .bind(&parent.area)
    .bind(linked_by)
    .bind(&parent.product_line)
    .bind(parent.child_weight_kg)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| link_error(e, &parent.qr))
}

/// Unlinks the newest child this user linked into the parent in the last hour — only if it is
/// `named` when a child is named. The child's QR, or None when there is nothing to undo.
pub async fn undo_last_link(
    conn: &mut PgConnection,
    parent_qr: &str,
    user: Uuid,
    named: Option<&str>,
) -> AppResult<Option<String>> {
    sqlx::query_scalar(
        r#"WITH c AS (SELECT qr FROM registry.bags
                      WHERE parent_qr = $1 AND linked_by = $2 AND linked_at > now() - interval '1 hour'
                      ORDER BY linked_at DESC, qr DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
           UPDATE registry.bags b SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
           FROM c WHERE b.qr = c.qr AND ($3::text IS NULL OR c.qr = $3) RETURNING b.qr"#,
    )
    .bind(parent_qr)
    .bind(user)
    .bind(named)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}
