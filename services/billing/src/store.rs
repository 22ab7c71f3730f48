//! billing's rows and SQL. Every statement is schema-qualified. `parent_count` and
//! `unsettled_count` are never written here: the trigger on `billing.attachments` changes them in
//! the same statement as each attachment row, by a conditional update of the bill row (see
//! `migrations/billing/0001_init.sql`); code only inserts, updates the state of, or deletes
//! attachment rows, and the database refuses what would overflow a bill or touch a closed one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

/// One bill as stored, with the expected weight of its confirmed parents summed at read time.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct BillRow {
    pub bill_id: String,
    pub status: String,
    pub capacity: i32,
    /// Every attachment row, settled or not (the places taken).
    pub parent_count: i32,
    /// Attachments pending (being attached) or detaching.
    pub unsettled_count: i32,
    pub description: String,
    pub destination: String,
    pub vehicle_number: String,
    pub created_by: Option<Uuid>,
    pub created_by_username: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub expected_weight_kg: f64,
}

impl BillRow {
    /// The confirmed parents: what users see as the bill's parent count.
    pub fn confirmed(&self) -> i32 {
        self.parent_count - self.unsettled_count
    }
}

/// The columns of [`BillRow`] from `billing.bills b`.
pub const BILL_COLUMNS: &str =
    "b.bill_id, b.status, b.capacity, b.parent_count, b.unsettled_count, \
     b.description, b.destination, b.vehicle_number, b.created_by, b.created_by_username, \
     b.created_at, b.updated_at, b.completed_at, b.version, \
     (SELECT coalesce(sum(a.expected_weight_kg), 0)::float8 FROM billing.attachments a \
       WHERE a.bill_id = b.bill_id AND a.state = 'confirmed') AS expected_weight_kg";

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AttachmentRow {
    pub parent_qr: String,
    pub bill_id: String,
    pub state: String,
    pub product_line: String,
    pub expected_weight_kg: Option<f64>,
    pub attached_at: Option<DateTime<Utc>>,
}

const ATTACHMENT_COLUMNS: &str =
    "parent_qr, bill_id, state, product_line, expected_weight_kg, attached_at";

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
pub async fn bill_status<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
) -> AppResult<Option<(String, String)>> {
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

pub fn bill_not_found() -> AppError {
    AppError::new(ErrorCode::BillNotFound, "no bill with that id")
}

pub fn bill_completed() -> AppError {
    AppError::new(
        ErrorCode::BillCompleted,
        "the bill is completed; reopen it first",
    )
}

/// Maps the trigger's refusals (and the constraints behind them) to their stable codes.
pub fn attachment_error(err: sqlx::Error) -> AppError {
    if let Some(db) = err.as_database_error() {
        match (db.code().as_deref(), db.constraint()) {
            (Some("TB001"), _) | (Some("23514"), Some("bills_parent_count_within_capacity")) => {
                return AppError::new(ErrorCode::BillFull, "the bill has no free place");
            }
            (Some("TB002"), _) => return bill_completed(),
            (Some("TB003"), _) | (Some("23503"), _) => return bill_not_found(),
            _ => {}
        }
    }
    AppError::from(err)
}

/// The outcome of trying to reserve a place for a parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// A new pending row holds a place on the bill.
    Reserved,
    /// The parent already has a row: on which bill, in which state.
    Existing { bill_id: String, state: String },
    /// The row that blocked the insert is gone already (settled by someone else): try again.
    Vanished,
}

/// Step 1 of the attach saga, one statement: a pending row under UNIQUE(parent_qr); the trigger
/// takes the place with `parent_count < capacity AND status IN ('new', 'processing')` in the
/// same statement (`bill_full`, `bill_completed`, `bill_not_found` otherwise).
pub async fn reserve<'e>(
    db: impl PgExecutor<'e> + Copy,
    bill_id: &str,
    parent_qr: &str,
    user: Option<Uuid>,
) -> AppResult<Reservation> {
    let inserted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO billing.attachments (parent_qr, bill_id, state, attached_by) \
         VALUES ($1, $2, 'pending', $3) \
         ON CONFLICT ON CONSTRAINT attachments_parent_on_one_bill DO NOTHING RETURNING 1",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(user)
    .fetch_optional(db)
    .await
    .map_err(attachment_error)?;
    if inserted.is_some() {
        return Ok(Reservation::Reserved);
    }
    let existing: Option<(String, String)> =
        sqlx::query_as("SELECT bill_id, state FROM billing.attachments WHERE parent_qr = $1")
            .bind(parent_qr)
            .fetch_optional(db)
            .await?;
    Ok(match existing {
        Some((bill_id, state)) => Reservation::Existing { bill_id, state },
        None => Reservation::Vanished,
    })
}

/// Locks a parent's attachment row on a bill (the saga's steps that call bag-registry hold this
/// lock across the call, so a sweeper or a concurrent request never acts on the same row
/// meanwhile). Its state, or None when there is no such row.
pub async fn lock_attachment(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
) -> AppResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT state FROM billing.attachments WHERE parent_qr = $1 AND bill_id = $2 FOR UPDATE",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Confirms a pending attachment with what bag-registry said about the parent.
pub async fn confirm(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
    product_line: &str,
    expected_weight_kg: f64,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.attachments \
            SET state = 'confirmed', product_line = $3, expected_weight_kg = $4, \
                attached_at = now(), state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'pending'",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(product_line)
    .bind(expected_weight_kg)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    Ok(r.rows_affected() == 1)
}

/// Deletes an attachment row in the given state (undoing a reservation, or finishing a detach);
/// the trigger gives the place back.
pub async fn remove(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
    state: &str,
) -> AppResult<bool> {
    let r = sqlx::query(
        "DELETE FROM billing.attachments WHERE parent_qr = $1 AND bill_id = $2 AND state = $3",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(state)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    Ok(r.rows_affected() == 1)
}

/// Step 1 of a detach: confirmed → detaching (the trigger refuses it on a closed bill).
pub async fn mark_detaching<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.attachments SET state = 'detaching', state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'confirmed'",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .execute(db)
    .await
    .map_err(attachment_error)?;
    Ok(r.rows_affected() == 1)
}

/// Puts a detaching row back (bag-registry refused the release).
pub async fn unmark_detaching(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE billing.attachments SET state = 'confirmed', state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'detaching'",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    Ok(())
}

pub async fn attachment<'e>(
    db: impl PgExecutor<'e>,
    parent_qr: &str,
) -> AppResult<Option<AttachmentRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM billing.attachments WHERE parent_qr = $1"
    )))
    .bind(parent_qr)
    .fetch_optional(db)
    .await?)
}

/// A bill's confirmed parents, in QR order.
pub async fn confirmed_parents<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
) -> AppResult<Vec<AttachmentRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM billing.attachments \
          WHERE bill_id = $1 AND state = 'confirmed' ORDER BY parent_qr"
    )))
    .bind(bill_id)
    .fetch_all(db)
    .await?)
}

/// Moves a bill into a transitional status with one conditional statement; its canonical id if
/// it moved.
pub async fn transition<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
    to: &str,
    from: &[&str],
    require_full: bool,
) -> AppResult<Option<String>> {
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    Ok(sqlx::query_scalar(
        "UPDATE billing.bills SET status = $2, status_changed_at = now(), updated_at = now(), \
                version = version + 1 \
          WHERE lower(bill_id) = lower($1) AND status = ANY($3) \
            AND (NOT $4 OR (parent_count = capacity AND unsettled_count = 0)) \
         RETURNING bill_id",
    )
    .bind(id)
    .bind(to)
    .bind(&from)
    .bind(require_full)
    .fetch_optional(db)
    .await?)
}

/// Locks a bill in the given status (waiting, or skipping it when another holder has it).
pub async fn lock_bill_in(
    conn: &mut PgConnection,
    bill_id: &str,
    status: &str,
    skip_locked: bool,
) -> AppResult<Option<BillRow>> {
    let tail = if skip_locked {
        "FOR UPDATE OF b SKIP LOCKED"
    } else {
        "FOR UPDATE OF b"
    };
    // The lock is taken on the bill row alone (the expected weight is read by a sub-select).
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BILL_COLUMNS} FROM billing.bills b WHERE b.bill_id = $1 AND b.status = $2 {tail}"
    )))
    .bind(bill_id)
    .bind(status)
    .fetch_optional(&mut *conn)
    .await?)
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
