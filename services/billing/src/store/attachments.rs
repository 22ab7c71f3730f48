//! Attachments: a parent's place on a bill, reserved (pending), confirmed, detaching, removed.

use sqlx::{PgConnection, PgExecutor};
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{attachment_error, AttachmentKey, AttachmentRow, ATTACHMENT_COLUMNS};

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

/// The row that holds a parent already.
#[derive(sqlx::FromRow)]
struct Holder {
    bill_id: String,
    state: String,
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
    let existing: Option<Holder> =
        sqlx::query_as("SELECT bill_id, state FROM billing.attachments WHERE parent_qr = $1")
            .bind(parent_qr)
            .fetch_optional(db)
            .await?;
    Ok(match existing {
        Some(Holder { bill_id, state }) => Reservation::Existing { bill_id, state },
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

/// Every attachment row of a bill, locked (waiting for in-flight attaches and detaches), in QR
/// order: the parents a deletion releases.
pub async fn lock_parents_of(conn: &mut PgConnection, bill_id: &str) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT parent_qr FROM billing.attachments WHERE bill_id = $1 ORDER BY parent_qr FOR UPDATE",
    )
    .bind(bill_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Deletes every attachment row of a bill (the trigger gives the places back).
pub async fn remove_all_of(conn: &mut PgConnection, bill_id: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM billing.attachments WHERE bill_id = $1")
        .bind(bill_id)
        .execute(&mut *conn)
        .await
        .map_err(attachment_error)?;
    Ok(())
}

/// Which unsettled state the sweeper looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    Pending,
    Detaching,
}

/// Attachments left pending or detaching for at least `settle_after_ms`, oldest first, locked
/// (`SKIP LOCKED`: rows a request or another sweeper holds are left to them).
pub async fn lock_unsettled(
    conn: &mut PgConnection,
    state: Unsettled,
    settle_after_ms: i64,
    batch: i64,
) -> AppResult<Vec<AttachmentKey>> {
    // The state is written into the statement (not bound) so the partial index on unsettled
    // rows applies to every plan.
    let sql = match state {
        Unsettled::Pending => {
            "SELECT parent_qr, bill_id FROM billing.attachments \
              WHERE state = 'pending' AND state_changed_at < now() - $1 * interval '1 millisecond' \
              ORDER BY state_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        }
        Unsettled::Detaching => {
            "SELECT parent_qr, bill_id FROM billing.attachments \
              WHERE state = 'detaching' AND state_changed_at < now() - $1 * interval '1 millisecond' \
              ORDER BY state_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        }
    };
    Ok(sqlx::query_as(sql)
        .bind(settle_after_ms)
        .bind(batch)
        .fetch_all(&mut *conn)
        .await?)
}
