//! Leases: who may act on an unsettled attachment or bill while bag-registry is called.
//!
//! No row lock is held across a call to bag-registry. Instead the row's `state_changed_at`
//! (attachments) or `status_changed_at` (bills) is its **lease stamp**: whoever commits an
//! intent, or takes over one whose lease expired, gets a fresh stamp back, calls bag-registry
//! with no transaction open, and finishes with one conditional statement `… AND <stamp column> =
//! $stamp`, which does nothing when someone else took the row over meanwhile. A lease is live for
//! `lease_ms` (the sweeper's `sweeper_settle_after_ms`, well past the registry deadline) after its
//! stamp; a live lease is never taken over (requests wait for it, the sweeper skips it), an
//! expired one is.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use tracetrack_common::AppResult;

use super::attachment_error;

/// A lease stamp (microseconds, exactly as Postgres stores it).
pub type Stamp = DateTime<Utc>;

/// The next stamp of a row: now, and always later than the one before.
const NEXT_ATTACHMENT_STAMP: &str =
    "greatest(clock_timestamp(), a.state_changed_at + interval '1 microsecond')";
const NEXT_BILL_STAMP: &str =
    "greatest(clock_timestamp(), b.status_changed_at + interval '1 microsecond')";

/// An attachment's state and lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentLease {
    pub state: String,
    /// Whether someone holds the row's lease now.
    pub live: bool,
}

/// A parent's attachment row on a bill, with whether its lease is live.
pub async fn attachment_lease<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    lease_ms: i64,
) -> AppResult<Option<AttachmentLease>> {
    Ok(sqlx::query_as(
        "SELECT state, state_changed_at >= now() - $3 * interval '1 millisecond' AS live \
           FROM billing.attachments WHERE parent_qr = $1 AND bill_id = $2",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(lease_ms)
    .fetch_optional(db)
    .await?)
}

/// Takes over an unsettled attachment whose lease expired: its new stamp, or None when the row
/// is not in `state`, its lease is live, or (a pending row) its bill no longer takes parents.
pub async fn take_attachment<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    state: &str,
    lease_ms: i64,
) -> AppResult<Option<Stamp>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE billing.attachments a SET state_changed_at = {NEXT_ATTACHMENT_STAMP} \
          WHERE a.parent_qr = $1 AND a.bill_id = $2 AND a.state = $3 \
            AND a.state_changed_at < now() - $4 * interval '1 millisecond' \
            AND (a.state <> 'pending' OR EXISTS (SELECT 1 FROM billing.bills b \
                  WHERE b.bill_id = a.bill_id AND b.status IN ('new', 'processing'))) \
         RETURNING a.state_changed_at"
    )))
    .bind(parent_qr)
    .bind(bill_id)
    .bind(state)
    .bind(lease_ms)
    .fetch_optional(db)
    .await
    .map_err(attachment_error)
}

/// An attachment the sweeper took over, with its new stamp.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TakenAttachment {
    pub parent_qr: String,
    pub bill_id: String,
    pub stamp: Stamp,
}

/// The sweeper's work: up to `batch` attachments in `state` ('pending' or 'detaching') whose
/// lease expired, oldest first, taken over in one statement (`SKIP LOCKED`: a row another
/// sweeper is taking this instant is left to it).
pub async fn take_unsettled<'e>(
    db: impl PgExecutor<'e>,
    state: super::Unsettled,
    lease_ms: i64,
    batch: i64,
) -> AppResult<Vec<TakenAttachment>> {
    // The state is written into the statement (not bound) so the partial index on unsettled
    // rows applies to every plan.
    let state = match state {
        super::Unsettled::Pending => "pending",
        super::Unsettled::Detaching => "detaching",
    };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE billing.attachments a SET state_changed_at = {NEXT_ATTACHMENT_STAMP} \
          WHERE a.parent_qr IN (SELECT parent_qr FROM billing.attachments \
                 WHERE state = '{state}' \
                   AND state_changed_at < now() - $1 * interval '1 millisecond' \
                 ORDER BY state_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
            AND a.state = '{state}' \
         RETURNING a.parent_qr, a.bill_id, a.state_changed_at AS stamp"
    )))
    .bind(lease_ms)
    .bind(batch)
    .fetch_all(db)
    .await?)
}

/// Whether any pending attachment of a bill is leased now (a claim may be on its way to
/// bag-registry). Reads the rows with a short lock (`FOR SHARE`), so a take-over committing this
/// instant is seen.
pub async fn pending_leased<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    lease_ms: i64,
) -> AppResult<bool> {
    let live: Vec<bool> = sqlx::query_scalar(
        "SELECT state_changed_at >= now() - $2 * interval '1 millisecond' \
           FROM billing.attachments WHERE bill_id = $1 AND state = 'pending' FOR SHARE",
    )
    .bind(bill_id)
    .bind(lease_ms)
    .fetch_all(db)
    .await?;
    Ok(live.into_iter().any(|l| l))
}

/// A bill's canonical id, status and whether its lease is live.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillLease {
    pub bill_id: String,
    pub status: String,
    pub live: bool,
    pub returned_count: i32,
}

pub async fn bill_lease<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
    lease_ms: i64,
) -> AppResult<Option<BillLease>> {
    Ok(sqlx::query_as(
        "SELECT bill_id, status, returned_count, \
                status_changed_at >= now() - $2 * interval '1 millisecond' AS live \
           FROM billing.bills WHERE lower(bill_id) = lower($1)",
    )
    .bind(id)
    .bind(lease_ms)
    .fetch_optional(db)
    .await?)
}

/// A bill moved into an intent, with the stamp of its lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillIntent {
    pub bill_id: String,
    pub stamp: Stamp,
}

/// Moves a bill into the intent `to` with one conditional statement: from any status in `from`,
/// or from one in `expired_from` only when its lease expired (an intent abandoned by a crash or a
/// failed call; a live one is never taken over); `require_full`: only with parents = capacity
/// and nothing in flight.
pub async fn begin_intent<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
    to: &str,
    from: &[&str],
    expired_from: &[&str],
    require_full: bool,
    lease_ms: i64,
) -> AppResult<Option<BillIntent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE billing.bills b SET status = $2, status_changed_at = {NEXT_BILL_STAMP}, \
                updated_at = now(), version = b.version + 1 \
          WHERE lower(b.bill_id) = lower($1) \
            AND (b.status = ANY($3) OR (b.status = ANY($4) \
                 AND b.status_changed_at < now() - $6 * interval '1 millisecond')) \
            AND (NOT $5 OR (b.parent_count = b.capacity AND b.unsettled_count = 0)) \
         RETURNING b.bill_id, b.status_changed_at AS stamp"
    )))
    .bind(id)
    .bind(to)
    .bind(from)
    .bind(expired_from)
    .bind(require_full)
    .bind(lease_ms)
    .fetch_optional(db)
    .await
    .map_err(|e| match tracetrack_common::db::check_violation(&e) {
        Some("bills_returns_only_when_completed") => tracetrack_common::AppError::new(
            tracetrack_domain::ErrorCode::BillHasReturns,
            "a bill with returns can be neither reopened nor deleted",
        ),
        _ => e.into(),
    })
}

/// A bill the sweeper took over: its status and new stamp.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TakenBill {
    pub bill_id: String,
    pub status: String,
    pub stamp: Stamp,
}

/// The sweeper's bills: up to `batch` left completing, reopening or deleting whose lease
/// expired, oldest first, taken over in one statement.
pub async fn take_transitional<'e>(
    db: impl PgExecutor<'e>,
    lease_ms: i64,
    batch: i64,
) -> AppResult<Vec<TakenBill>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE billing.bills b SET status_changed_at = {NEXT_BILL_STAMP} \
          WHERE b.bill_id IN (SELECT bill_id FROM billing.bills \
                 WHERE status IN ('completing', 'reopening', 'deleting') \
                   AND status_changed_at < now() - $1 * interval '1 millisecond' \
                 ORDER BY status_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
            AND b.status IN ('completing', 'reopening', 'deleting') \
         RETURNING b.bill_id, b.status, b.status_changed_at AS stamp"
    )))
    .bind(lease_ms)
    .bind(batch)
    .fetch_all(db)
    .await?)
}

/// Finishes an intent: `intent` → completed (completing) or processing/new (reopening), only if
/// the bill is still in it under this lease. Whether it was.
pub async fn finish_settle<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    intent: &str,
    stamp: Stamp,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.bills \
            SET status = CASE WHEN $2 = 'completing' THEN 'completed' \
                              WHEN parent_count - unsettled_count > 0 THEN 'processing' \
                              ELSE 'new' END, \
                completed_at = CASE WHEN $2 = 'completing' THEN now() END, \
                status_changed_at = now(), updated_at = now(), version = version + 1 \
          WHERE bill_id = $1 AND status = $2 AND status_changed_at = $3",
    )
    .bind(bill_id)
    .bind(intent)
    .bind(stamp)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes a bill being deleted, under this lease, with its attachment rows (the trigger gives
/// the places back). Whether it was.
pub async fn finish_delete(
    conn: &mut sqlx::PgConnection,
    bill_id: &str,
    stamp: Stamp,
) -> AppResult<bool> {
    let mine: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM billing.bills WHERE bill_id = $1 AND status = 'deleting' \
           AND status_changed_at = $2 FOR UPDATE",
    )
    .bind(bill_id)
    .bind(stamp)
    .fetch_optional(&mut *conn)
    .await?;
    if mine.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM billing.attachments WHERE bill_id = $1")
        .bind(bill_id)
        .execute(&mut *conn)
        .await
        .map_err(attachment_error)?;
    sqlx::query("DELETE FROM billing.bills WHERE bill_id = $1 AND status = 'deleting'")
        .bind(bill_id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}
