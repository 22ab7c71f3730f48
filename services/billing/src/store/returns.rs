//! Return tickets and returns (SPEC §1 "Returns (IPT)"; `migrations/billing/0002_returns.sql`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

use super::{attachment_error, Stamp};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TicketRow {
    pub ticket_id: String,
    pub area: String,
    pub notes: String,
    pub status: String,
    pub return_count: i32,
    pub created_by: Option<Uuid>,
    pub created_by_username: String,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by_username: String,
    pub version: i64,
    /// Σ of its returned parents' snapshots.
    pub child_count: i64,
    pub actual_weight_kg: f64,
}

const TICKET_COLUMNS: &str = "t.ticket_id, t.area, t.notes, t.status, t.return_count, \
     t.created_by, t.created_by_username, t.created_at, t.closed_at, t.closed_by_username, \
     t.version, \
     (SELECT coalesce(sum(r.child_count), 0)::int8 FROM billing.returns r \
       WHERE r.ticket_id = t.ticket_id AND r.state = 'returned') AS child_count, \
     (SELECT coalesce(sum(r.actual_weight_kg), 0)::float8 FROM billing.returns r \
       WHERE r.ticket_id = t.ticket_id AND r.state = 'returned') AS actual_weight_kg";

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReturnRow {
    pub parent_qr: String,
    pub bill_id: String,
    pub ticket_id: String,
    pub state: String,
    pub product_line: String,
    pub child_count: i32,
    pub expected_weight_kg: f64,
    pub actual_weight_kg: f64,
    pub area: String,
    pub returned_by: Option<Uuid>,
    pub returned_by_username: String,
    pub returned_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
}

const RETURN_COLUMNS: &str = "parent_qr, bill_id, ticket_id, state, product_line, child_count, \
     expected_weight_kg, actual_weight_kg, area, returned_by, returned_by_username, returned_at, \
     started_at";

pub fn ticket_not_found() -> AppError {
    AppError::new(ErrorCode::TicketNotFound, "no return ticket with that id")
}

pub async fn create_ticket<'e>(
    db: impl PgExecutor<'e>,
    area: &str,
    notes: &str,
    user: Uuid,
    username: &str,
) -> AppResult<String> {
    Ok(sqlx::query_scalar(
        "INSERT INTO billing.return_tickets (area, notes, created_by, created_by_username) \
         VALUES ($1, $2, $3, $4) RETURNING ticket_id",
    )
    .bind(area)
    .bind(notes)
    .bind(user)
    .bind(username)
    .fetch_one(db)
    .await?)
}

/// A ticket by id (ids ignore case).
pub async fn ticket<'e>(db: impl PgExecutor<'e>, id: &str) -> AppResult<Option<TicketRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TICKET_COLUMNS} FROM billing.return_tickets t WHERE upper(t.ticket_id) = upper($1)"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Tickets newest first, after the keyset cursor, optionally of one status and created in
/// [from, to).
pub async fn list_tickets<'e>(
    db: impl PgExecutor<'e>,
    status: Option<&str>,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> AppResult<Vec<TicketRow>> {
    let (at, id) = after.unzip();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TICKET_COLUMNS} FROM billing.return_tickets t \
          WHERE ($1::text IS NULL OR t.status = $1) \
            AND ($2::timestamptz IS NULL OR (t.created_at, t.ticket_id) < ($2, $3)) \
            AND ($5::timestamptz IS NULL OR t.created_at >= $5) \
            AND ($6::timestamptz IS NULL OR t.created_at < $6) \
          ORDER BY t.created_at DESC, t.ticket_id DESC LIMIT $4"
    )))
    .bind(status)
    .bind(at)
    .bind(id)
    .bind(limit)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?)
}

/// open → committed (only with a returned parent) or cancelled; whether it moved.
pub async fn close_ticket<'e>(
    db: impl PgExecutor<'e>,
    ticket_id: &str,
    to: &str,
    username: &str,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.return_tickets SET status = $2, closed_at = now(), updated_at = now(), \
                closed_by_username = $3, version = version + 1 \
          WHERE ticket_id = $1 AND status = 'open' \
            AND ($2 <> 'committed' OR return_count > 0)",
    )
    .bind(ticket_id)
    .bind(to)
    .bind(username)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn returns_of_ticket<'e>(
    db: impl PgExecutor<'e>,
    ticket_id: &str,
) -> AppResult<Vec<ReturnRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RETURN_COLUMNS} FROM billing.returns WHERE ticket_id = $1 \
          ORDER BY started_at, parent_qr"
    )))
    .bind(ticket_id)
    .fetch_all(db)
    .await?)
}

pub async fn returns_of_bill<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
) -> AppResult<Vec<ReturnRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RETURN_COLUMNS} FROM billing.returns WHERE bill_id = $1 \
          ORDER BY started_at, parent_qr"
    )))
    .bind(bill_id)
    .fetch_all(db)
    .await?)
}

/// A parent's return on one ticket, if any.
pub async fn return_on_ticket<'e>(
    db: impl PgExecutor<'e>,
    ticket_id: &str,
    parent_qr: &str,
) -> AppResult<Option<ReturnRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RETURN_COLUMNS} FROM billing.returns WHERE ticket_id = $1 AND parent_qr = $2 \
          ORDER BY started_at DESC LIMIT 1"
    )))
    .bind(ticket_id)
    .bind(parent_qr)
    .fetch_optional(db)
    .await?)
}

/// Another open ticket the parent is on (being returned there, or returned there and free
/// since): its id.
pub async fn other_open_ticket<'e>(
    db: impl PgExecutor<'e>,
    ticket_id: &str,
    parent_qr: &str,
) -> AppResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT r.ticket_id FROM billing.returns r \
           JOIN billing.return_tickets t ON t.ticket_id = r.ticket_id \
          WHERE r.parent_qr = $1 AND r.ticket_id <> $2 \
            AND (r.state = 'returning' OR t.status = 'open') \
          ORDER BY r.started_at DESC LIMIT 1",
    )
    .bind(parent_qr)
    .bind(ticket_id)
    .fetch_optional(db)
    .await?)
}

/// What the intent of a return snapshotted from the attachment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Returning {
    pub bill_id: String,
    pub product_line: String,
    pub expected_weight_kg: Option<f64>,
}

/// Step 1 of a return, in the caller's transaction: the parent's confirmed attachment →
/// `returning` (the trigger moves its place to the bill's returns, only on a completed bill:
/// `bill_not_completed` otherwise). None when the parent has no confirmed attachment.
pub async fn mark_returning(
    conn: &mut PgConnection,
    parent_qr: &str,
) -> AppResult<Option<Returning>> {
    sqlx::query_as(
        "UPDATE billing.attachments SET state = 'returning', state_changed_at = now() \
          WHERE parent_qr = $1 AND state = 'confirmed' \
         RETURNING bill_id, product_line, expected_weight_kg",
    )
    .bind(parent_qr)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match e.as_database_error().and_then(|d| d.code()) {
        Some(c) if c == "TB004" || c == "TB002" => AppError::new(
            ErrorCode::BillNotCompleted,
            "the parent's bill is not completed; detach it instead",
        ),
        _ => attachment_error(e),
    })
}

/// Step 1, continued: the ticket counts the return (only while open: whether it is) and the
/// `returning` row is written with its lease.
#[allow(clippy::too_many_arguments)]
pub async fn begin_return(
    conn: &mut PgConnection,
    ticket_id: &str,
    parent_qr: &str,
    r: &Returning,
    user: Uuid,
    username: &str,
) -> AppResult<Option<Stamp>> {
    let open = sqlx::query(
        "UPDATE billing.return_tickets SET return_count = return_count + 1, \
                updated_at = now(), version = version + 1 \
          WHERE ticket_id = $1 AND status = 'open'",
    )
    .bind(ticket_id)
    .execute(&mut *conn)
    .await?;
    if open.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query_scalar(
            "INSERT INTO billing.returns (parent_qr, bill_id, ticket_id, state, product_line, \
                    expected_weight_kg, returned_by, returned_by_username) \
             VALUES ($1, $2, $3, 'returning', $4, $5, $6, $7) RETURNING state_changed_at",
        )
        .bind(parent_qr)
        .bind(&r.bill_id)
        .bind(ticket_id)
        .bind(&r.product_line)
        .bind(r.expected_weight_kg.unwrap_or_default())
        .bind(user)
        .bind(username)
        .fetch_one(&mut *conn)
        .await?,
    ))
}

/// The snapshot bag-registry answered.
pub struct Snapshot<'a> {
    pub child_count: i32,
    pub actual_weight_kg: f64,
    pub area: &'a str,
}

/// Step 3: the return becomes `returned` with the snapshot and the attachment row goes, only if
/// the return is still `returning` under this lease. Whether it was.
pub async fn finish_return(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
    stamp: Stamp,
    snap: &Snapshot<'_>,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.returns SET state = 'returned', child_count = $4, actual_weight_kg = $5, \
                area = $6, returned_at = now(), state_changed_at = now() \
          WHERE bill_id = $1 AND parent_qr = $2 AND state = 'returning' AND state_changed_at = $3",
    )
    .bind(bill_id)
    .bind(parent_qr)
    .bind(stamp)
    .bind(snap.child_count)
    .bind(snap.actual_weight_kg)
    .bind(snap.area)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "DELETE FROM billing.attachments WHERE parent_qr = $1 AND bill_id = $2 AND state = 'returning'",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    Ok(true)
}

/// Undoes a return bag-registry refused, under this lease: the return row goes, the attachment
/// is confirmed again (its place back among the attached), the ticket counts one less.
pub async fn undo_return(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
    stamp: Stamp,
) -> AppResult<bool> {
    let ticket: Option<String> = sqlx::query_scalar(
        "DELETE FROM billing.returns \
          WHERE bill_id = $1 AND parent_qr = $2 AND state = 'returning' AND state_changed_at = $3 \
         RETURNING ticket_id",
    )
    .bind(bill_id)
    .bind(parent_qr)
    .bind(stamp)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(ticket) = ticket else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE billing.attachments SET state = 'confirmed', state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'returning'",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    sqlx::query(
        "UPDATE billing.return_tickets SET return_count = return_count - 1, updated_at = now(), \
                version = version + 1 WHERE ticket_id = $1",
    )
    .bind(ticket)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A return whose lease expired, taken over: its new stamp.
pub async fn take_return<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    lease_ms: i64,
) -> AppResult<Option<Stamp>> {
    Ok(sqlx::query_scalar(
        "UPDATE billing.returns r \
            SET state_changed_at = greatest(clock_timestamp(), r.state_changed_at + interval '1 microsecond') \
          WHERE r.bill_id = $1 AND r.parent_qr = $2 AND r.state = 'returning' \
            AND r.state_changed_at < now() - $3 * interval '1 millisecond' \
         RETURNING r.state_changed_at",
    )
    .bind(bill_id)
    .bind(parent_qr)
    .bind(lease_ms)
    .fetch_optional(db)
    .await?)
}

/// Whether a `returning` row's lease is live.
pub async fn return_leased<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    lease_ms: i64,
) -> AppResult<Option<bool>> {
    Ok(sqlx::query_scalar(
        "SELECT state_changed_at >= now() - $3 * interval '1 millisecond' FROM billing.returns \
          WHERE bill_id = $1 AND parent_qr = $2 AND state = 'returning'",
    )
    .bind(bill_id)
    .bind(parent_qr)
    .bind(lease_ms)
    .fetch_optional(db)
    .await?)
}

/// A return the sweeper took over.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TakenReturn {
    pub parent_qr: String,
    pub bill_id: String,
    pub ticket_id: String,
    pub area: String,
    pub stamp: Stamp,
}

/// The sweeper's returns: up to `batch` left `returning` past their lease, taken over.
pub async fn take_unsettled_returns<'e>(
    db: impl PgExecutor<'e>,
    lease_ms: i64,
    batch: i64,
) -> AppResult<Vec<TakenReturn>> {
    Ok(sqlx::query_as(
        "WITH taken AS ( \
           UPDATE billing.returns r \
              SET state_changed_at = greatest(clock_timestamp(), r.state_changed_at + interval '1 microsecond') \
            WHERE (r.bill_id, r.parent_qr) IN (SELECT bill_id, parent_qr FROM billing.returns \
                    WHERE state = 'returning' \
                      AND state_changed_at < now() - $1 * interval '1 millisecond' \
                    ORDER BY state_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
              AND r.state = 'returning' \
           RETURNING r.parent_qr, r.bill_id, r.ticket_id, r.state_changed_at) \
         SELECT taken.parent_qr, taken.bill_id, taken.ticket_id, t.area, \
                taken.state_changed_at AS stamp \
           FROM taken JOIN billing.return_tickets t ON t.ticket_id = taken.ticket_id",
    )
    .bind(lease_ms)
    .bind(batch)
    .fetch_all(db)
    .await?)
}
