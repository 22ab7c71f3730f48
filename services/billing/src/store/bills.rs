//! Bills: read, created, edited, moved through their statuses, listed and deleted.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

use super::{BillRow, BillState, BILL_COLUMNS};
use crate::rules::{below_attached, bill_completed};

/// A bill that readers may see (not being deleted), by id compared case-insensitively.
pub async fn find_bill<'e>(db: impl PgExecutor<'e>, id: &str) -> AppResult<Option<BillRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BILL_COLUMNS} FROM billing.bills b \
         WHERE lower(b.bill_id) = lower($1) AND b.status <> 'deleting'"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// The bill's canonical id and status, whatever its status (deleting included).
pub async fn bill_status<'e>(db: impl PgExecutor<'e>, id: &str) -> AppResult<Option<BillState>> {
    Ok(
        sqlx::query_as(
            "SELECT bill_id, status FROM billing.bills WHERE lower(bill_id) = lower($1)",
        )
        .bind(id)
        .fetch_optional(db)
        .await?,
    )
}

/// A bill by its canonical id, in the caller's transaction (sees its own changes).
pub async fn bill_by_id(conn: &mut PgConnection, bill_id: &str) -> AppResult<Option<BillRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BILL_COLUMNS} FROM billing.bills b WHERE b.bill_id = $1"
    )))
    .bind(bill_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A new bill, as CreateBill gives it.
pub struct NewBill<'a> {
    pub bill_id: &'a str,
    pub capacity: i32,
    pub description: &'a str,
    pub destination: &'a str,
    pub vehicle_number: &'a str,
    pub created_by: Uuid,
    pub created_by_username: &'a str,
}

/// Inserts a bill; `bill_exists` when the id is taken (ids ignore case).
pub async fn insert_bill(conn: &mut PgConnection, new: &NewBill<'_>) -> AppResult<BillRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH b AS (INSERT INTO billing.bills (bill_id, capacity, description, destination, \
                                             vehicle_number, created_by, created_by_username) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *) \
         SELECT {BILL_COLUMNS} FROM b"
    )))
    .bind(new.bill_id)
    .bind(new.capacity)
    .bind(new.description)
    .bind(new.destination)
    .bind(new.vehicle_number)
    .bind(new.created_by)
    .bind(new.created_by_username)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        AppError::from_unique(
            e,
            &[
                (
                    "bills_pkey",
                    ErrorCode::BillExists,
                    "a bill with that id exists",
                ),
                (
                    "bills_bill_id_key",
                    ErrorCode::BillExists,
                    "a bill with that id exists (ids ignore case)",
                ),
            ],
        )
    })
}

/// A bill readers may see, locked for an edit (the lock is on the bill row alone).
pub async fn lock_for_edit(conn: &mut PgConnection, id: &str) -> AppResult<Option<BillRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BILL_COLUMNS} FROM billing.bills b WHERE lower(b.bill_id) = lower($1) \
           AND b.status <> 'deleting' FOR UPDATE OF b"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// What UpdateBill changes; a field left None keeps its value.
pub struct BillEdit {
    pub description: Option<String>,
    pub destination: Option<String>,
    pub vehicle_number: Option<String>,
    pub capacity: Option<i32>,
    pub driver_name: Option<String>,
    pub driver_phone: Option<String>,
    pub seal_number: Option<String>,
}

/// Applies an edit to `before` (locked by the caller). A capacity change is made only while the
/// bill is open and holds no more parents than the new capacity: the statement's condition, not
/// a check before it. The bill's id if it changed; `bill_completed` or
/// `capacity_below_attached` when a constraint refuses it.
pub async fn update_bill(
    conn: &mut PgConnection,
    before: &BillRow,
    edit: &BillEdit,
) -> AppResult<Option<String>> {
    sqlx::query_scalar(
        "UPDATE billing.bills SET description = coalesce($2, description), \
                destination = coalesce($3, destination), \
                vehicle_number = coalesce($4, vehicle_number), \
                capacity = coalesce($5, capacity), \
                driver_name = coalesce($6, driver_name), \
                driver_phone = coalesce($7, driver_phone), \
                seal_number = coalesce($8, seal_number), \
                version = version + 1, updated_at = now() \
          WHERE bill_id = $1 \
            AND ($5::int IS NULL OR capacity = $5 \
                 OR (status IN ('new', 'processing') AND parent_count <= $5)) \
         RETURNING bill_id",
    )
    .bind(&before.bill_id)
    .bind(&edit.description)
    .bind(&edit.destination)
    .bind(&edit.vehicle_number)
    .bind(edit.capacity)
    .bind(&edit.driver_name)
    .bind(&edit.driver_phone)
    .bind(&edit.seal_number)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match tracetrack_common::db::check_violation(&e) {
        Some("bills_parent_count_within_capacity") => below_attached(before.parent_count),
        Some("bills_closed_only_when_full") => bill_completed(),
        _ => AppError::from(e),
    })
}

/// What ListBills asks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub prefix: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    /// Keyset: strictly after this (created_at, bill_id) in newest-first order.
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// `LIKE` pattern of a literal prefix.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Newest first by (created_at DESC, bill_id DESC); bills being deleted are left out.
pub async fn list_bills<'e>(db: impl PgExecutor<'e>, f: &ListFilter) -> AppResult<Vec<BillRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {BILL_COLUMNS} FROM billing.bills b WHERE b.status <> 'deleting'"
    ));
    if let Some(status) = &f.status {
        q.push(" AND b.status = ").push_bind(status.clone());
    }
    if let Some(prefix) = &f.prefix {
        q.push(" AND lower(b.bill_id) LIKE lower(")
            .push_bind(like_prefix(prefix))
            .push(")");
    }
    if let Some(from) = f.from {
        q.push(" AND b.created_at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND b.created_at < ").push_bind(to);
    }
    if let Some(user) = f.created_by {
        q.push(" AND b.created_by = ").push_bind(user);
    }
    if let Some((at, id)) = &f.after {
        q.push(" AND (b.created_at, b.bill_id) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    q.push(" ORDER BY b.created_at DESC, b.bill_id DESC LIMIT ")
        .push_bind(f.limit);
    Ok(q.build_query_as().fetch_all(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_are_literal() {
        assert_eq!(like_prefix("BILL"), "BILL%");
        assert_eq!(like_prefix("a_b"), "a\\_b%");
        assert_eq!(like_prefix("x%"), "x\\%%");
        assert_eq!(like_prefix(""), "%");
    }
}
