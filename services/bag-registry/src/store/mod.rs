//! bag-registry's rows and SQL: every statement is here, schema-qualified. A parent's child
//! count is kept by the trigger on `registry.bags` (see `migrations/registry/0001_init.sql`),
//! which also refuses any change to a frozen parent's children, and a CHECK refuses a link past
//! capacity; the statements here only insert, update or delete rows and map those refusals to
//! stable codes.

mod bags;
mod bills;
mod configuration;
mod import;
mod links;
mod search;

pub use bags::*;
pub use bills::*;
pub use configuration::*;
pub use import::*;
pub use links::*;
pub use search::*;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BagRow {
    pub qr: String,
    pub kind: String,
    pub product_line: Option<String>,
    pub status: String,
    pub child_count: i32,
    pub capacity: Option<i32>,
    pub parent_weight_kg: Option<f64>,
    pub child_weight_kg: f64,
    pub area: String,
    pub parent_qr: Option<String>,
    pub bill_id: Option<String>,
    pub frozen: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub linked_at: Option<DateTime<Utc>>,
    pub linked_by: Option<Uuid>,
}

/// A link statement's answer: the child row, whether it was created by the statement, and its
/// area before (it takes its parent's).
#[derive(Debug, sqlx::FromRow)]
pub struct LinkedRow {
    #[sqlx(flatten)]
    pub bag: BagRow,
    pub inserted: bool,
    pub area_before: Option<String>,
}

pub const BAG_COLUMNS: &str = "b.qr, b.kind, b.product_line, b.status, b.child_count, b.capacity, \
    b.parent_weight_kg, b.child_weight_kg, b.area, b.parent_qr, b.bill_id, b.frozen, b.created_at, \
    b.created_by, b.linked_at, b.linked_by";

impl BagRow {
    pub fn is_parent(&self) -> bool {
        self.kind == "parent"
    }
}

pub async fn bag(conn: &mut PgConnection, qr: &str) -> AppResult<Option<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BAG_COLUMNS} FROM registry.bags b WHERE b.qr = $1"
    )))
    .bind(qr)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn bags(conn: &mut PgConnection, qrs: &[String]) -> AppResult<Vec<BagRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BAG_COLUMNS} FROM registry.bags b WHERE b.qr = ANY($1) ORDER BY b.qr"
    )))
    .bind(qrs)
    .fetch_all(&mut *conn)
    .await?)
}

/// A parent that must exist: `parent_not_found`, or `qr_is_child` when the QR is a child.
pub async fn parent(conn: &mut PgConnection, qr: &str) -> AppResult<BagRow> {
    must_be_parent(bag(conn, qr).await?, qr)
}

/// The bag read under `qr`, which must be a parent (see [`parent`]).
pub fn must_be_parent(found: Option<BagRow>, qr: &str) -> AppResult<BagRow> {
    match found {
        Some(b) if b.is_parent() => Ok(b),
        Some(_) => Err(AppError::new(
            ErrorCode::QrIsChild,
            "that is a child label, not a parent bag",
        )),
        None => Err(
            AppError::new(ErrorCode::ParentNotFound, "no parent bag with that code")
                .with_detail("parent_qr", qr),
        ),
    }
}

/// Maps a failed link statement (the trigger's errors, the capacity CHECK) to its stable code;
/// `parent` is the parent that was being linked into.
pub fn link_error(err: sqlx::Error, parent: &str) -> AppError {
    if let Some(db) = err.as_database_error() {
        match (db.code().as_deref(), db.constraint()) {
            (Some("23514"), Some("bags_child_count_within_capacity")) => {
                return AppError::new(ErrorCode::ParentFull, "this parent bag is full")
                    .with_detail("parent_qr", parent);
            }
            // TT001: the parent a child leaves is frozen; TT002: the parent it joins is frozen
            // (it was read as an existing parent just before).
            (Some("TT001"), _) | (Some("TT002"), _) => {
                let which = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|e| e.detail())
                    .unwrap_or(parent)
                    .to_owned();
                return frozen(&which);
            }
            _ => {}
        }
    }
    AppError::from(err)
}

pub fn frozen(parent: &str) -> AppError {
    AppError::new(
        ErrorCode::ParentFrozen,
        "this parent is on a completed bill; its children cannot change",
    )
    .with_detail("parent_qr", parent)
}
