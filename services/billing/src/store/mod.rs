//! billing's rows and SQL. Every statement is schema-qualified. `parent_count` and
//! `unsettled_count` are never written here: the trigger on `billing.attachments` changes them in
//! the same statement as each attachment row, by a conditional update of the bill row (see
//! `migrations/billing/0001_init.sql`); code only inserts, updates the state of, or deletes
//! attachment rows, and the database refuses what would overflow a bill or touch a closed one.

mod attachments;
mod bills;
mod leases;
pub mod reconcile;
mod returns;

pub use attachments::*;
pub use bills::*;
pub use leases::*;
pub use returns::*;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracetrack_common::AppError;
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

use crate::rules::{bill_completed, bill_not_found};

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
    pub driver_name: String,
    pub driver_phone: String,
    pub seal_number: String,
    pub created_by: Option<Uuid>,
    pub created_by_username: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub expected_weight_kg: f64,
    /// Parents returned from it (SPEC §1 Returns), and the sums of their snapshots.
    pub returned_count: i32,
    pub returned_child_count: i64,
    pub returned_actual_weight_kg: f64,
    pub returned_expected_weight_kg: f64,
}

impl BillRow {
    /// The confirmed parents: what users see as the bill's parent count.
    pub fn confirmed(&self) -> i32 {
        self.parent_count - self.unsettled_count
    }
}

/// A bill's canonical id and status.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BillState {
    pub bill_id: String,
    pub status: String,
}

/// The columns of [`BillRow`] from `billing.bills b`.
pub const BILL_COLUMNS: &str =
    "b.bill_id, b.status, b.capacity, b.parent_count, b.unsettled_count, \
     b.description, b.destination, b.vehicle_number, b.driver_name, b.driver_phone, \
     b.seal_number, b.created_by, b.created_by_username, \
     b.created_at, b.updated_at, b.completed_at, b.version, \
     (SELECT coalesce(sum(a.expected_weight_kg), 0)::float8 FROM billing.attachments a \
       WHERE a.bill_id = b.bill_id AND a.state = 'confirmed') AS expected_weight_kg, \
     b.returned_count, \
     (SELECT coalesce(sum(r.child_count), 0)::int8 FROM billing.returns r \
       WHERE r.bill_id = b.bill_id AND r.state = 'returned') AS returned_child_count, \
     (SELECT coalesce(sum(r.actual_weight_kg), 0)::float8 FROM billing.returns r \
       WHERE r.bill_id = b.bill_id AND r.state = 'returned') AS returned_actual_weight_kg, \
     (SELECT coalesce(sum(r.expected_weight_kg), 0)::float8 FROM billing.returns r \
       WHERE r.bill_id = b.bill_id) AS returned_expected_weight_kg";

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
