//! Attachments: a parent's place on a bill, reserved (pending), confirmed, detaching, removed.

use sqlx::{PgConnection, PgExecutor};
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{attachment_error, AttachmentRow, Stamp, ATTACHMENT_COLUMNS};

/// The outcome of trying to reserve a place for a parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// A new pending row holds a place on the bill, under this lease.
    Reserved(Stamp),
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
    let inserted: Option<Stamp> = sqlx::query_scalar(
        "INSERT INTO billing.attachments (parent_qr, bill_id, state, attached_by, state_changed_at) \
         VALUES ($1, $2, 'pending', $3, clock_timestamp()) \
         ON CONFLICT ON CONSTRAINT attachments_parent_on_one_bill DO NOTHING \
         RETURNING state_changed_at",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(user)
    .fetch_optional(db)
    .await
    .map_err(attachment_error)?;
    if let Some(stamp) = inserted {
        return Ok(Reservation::Reserved(stamp));
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

/// Confirms a pending attachment with what bag-registry said about the parent, only if it is
/// still pending under this lease. Whether it was.
pub async fn confirm(
    conn: &mut PgConnection,
    bill_id: &str,
    parent_qr: &str,
    product_line: &str,
    expected_weight_kg: f64,
    stamp: Stamp,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE billing.attachments \
            SET state = 'confirmed', product_line = $3, expected_weight_kg = $4, \
                attached_at = now(), state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'pending' AND state_changed_at = $5",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(product_line)
    .bind(expected_weight_kg)
    .bind(stamp)
    .execute(&mut *conn)
    .await
    .map_err(attachment_error)?;
    Ok(r.rows_affected() == 1)
}

/// Deletes an attachment row in the given state under this lease (undoing a reservation, or
/// finishing a detach); the trigger gives the place back. Whether it was.
pub async fn remove<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    state: &str,
    stamp: Stamp,
) -> AppResult<bool> {
    let r = sqlx::query(
        "DELETE FROM billing.attachments \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = $3 AND state_changed_at = $4",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(state)
    .bind(stamp)
    .execute(db)
    .await
    .map_err(attachment_error)?;
    Ok(r.rows_affected() == 1)
}

/// Step 1 of a detach: confirmed → detaching (the trigger refuses it on a closed bill). The
/// lease's stamp when it moved.
pub async fn mark_detaching<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
) -> AppResult<Option<Stamp>> {
    sqlx::query_scalar(
        "UPDATE billing.attachments a SET state = 'detaching', \
                state_changed_at = greatest(clock_timestamp(), a.state_changed_at + interval '1 microsecond') \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'confirmed' \
         RETURNING state_changed_at",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .fetch_optional(db)
    .await
    .map_err(attachment_error)
}

/// Puts a detaching row back under this lease (bag-registry refused the release).
pub async fn unmark_detaching<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qr: &str,
    stamp: Stamp,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE billing.attachments SET state = 'confirmed', state_changed_at = now() \
          WHERE parent_qr = $1 AND bill_id = $2 AND state = 'detaching' AND state_changed_at = $3",
    )
    .bind(parent_qr)
    .bind(bill_id)
    .bind(stamp)
    .execute(db)
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

/// Every attachment row of a bill, in QR order: the parents a deletion releases.
pub async fn parents_of<'e>(db: impl PgExecutor<'e>, bill_id: &str) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT parent_qr FROM billing.attachments WHERE bill_id = $1 ORDER BY parent_qr",
    )
    .bind(bill_id)
    .fetch_all(db)
    .await?)
}

/// Which unsettled state the sweeper looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    Pending,
    Detaching,
}

/// Step 1 of AttachParents, one statement: a pending row for each of `parent_qrs` that has no
/// row yet (each with its own lease: `clock_timestamp()`), the trigger taking a place for each.
/// All or nothing: when they do not all fit the statement fails (`bill_full`) and the caller
/// reserves one by one. The parents reserved, with their stamps.
///
/// The rows go in QR order (the unique index's), whatever the request's order: an insert that
/// meets a parent another uncommitted reservation holds waits for that transaction, so two
/// imports of the same parents in opposite orders each waited for the other (`deadlock
/// detected`, answered `conflict`). In one order, the later one just waits for the earlier.
pub async fn reserve_many<'e>(
    db: impl PgExecutor<'e>,
    bill_id: &str,
    parent_qrs: &[String],
    user: Option<Uuid>,
) -> AppResult<Vec<(String, Stamp)>> {
    sqlx::query_as(
        "INSERT INTO billing.attachments (parent_qr, bill_id, state, attached_by, state_changed_at) \
         SELECT q, $2, 'pending', $3, clock_timestamp() FROM unnest($1::text[]) AS r(q) \
          ORDER BY q COLLATE \"C\" \
         ON CONFLICT ON CONSTRAINT attachments_parent_on_one_bill DO NOTHING \
         RETURNING parent_qr, state_changed_at",
    )
    .bind(parent_qrs)
    .bind(bill_id)
    .bind(user)
    .fetch_all(db)
    .await
    .map_err(attachment_error)
}

/// The rows holding any of `parent_qrs`: parent → (bill, state).
pub async fn holders<'e>(
    db: impl PgExecutor<'e>,
    parent_qrs: &[String],
) -> AppResult<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT parent_qr, bill_id, state FROM billing.attachments WHERE parent_qr = ANY($1)",
    )
    .bind(parent_qrs)
    .fetch_all(db)
    .await?)
}
