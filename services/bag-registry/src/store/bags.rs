//! Registering and deleting bags.

use sqlx::PgConnection;
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{BagRow, BAG_COLUMNS};

/// Inserts a parent with its line's capacity and weights snapshotted; None if it exists.
pub async fn insert_parent(
    conn: &mut PgConnection,
    qr: &str,
    line: &str,
    area: &str,
    created_by: Option<Uuid>,
) -> AppResult<Option<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (
             INSERT INTO registry.bags (qr, kind, product_line, area, capacity, parent_weight_kg, child_weight_kg, created_by)
             SELECT $1, 'parent', l.name, $3, l.capacity, l.parent_weight_kg, l.child_weight_kg, $4
             FROM registry.product_lines l WHERE l.name = $2
             ON CONFLICT (qr) DO NOTHING
             RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(qr)
    .bind(line)
    .bind(area)
    .bind(created_by)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Inserts an unlinked child; None if the QR exists.
pub async fn insert_child(
    conn: &mut PgConnection,
    qr: &str,
    area: &str,
    created_by: Uuid,
) -> AppResult<Option<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (INSERT INTO registry.bags (qr, kind, area, created_by) VALUES ($1, 'child', $2, $3)
                      ON CONFLICT (qr) DO NOTHING RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(qr)
    .bind(area)
    .bind(created_by)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Deletes a bag that holds no child, is in no parent and on no bill; the bag as it was, or
/// None when there is no such bag.
pub async fn delete_free_bag(conn: &mut PgConnection, qr: &str) -> AppResult<Option<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (DELETE FROM registry.bags WHERE qr = $1 AND child_count = 0 AND parent_qr IS NULL AND bill_id IS NULL RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(qr)
    .fetch_optional(&mut *conn)
    .await?)
}
