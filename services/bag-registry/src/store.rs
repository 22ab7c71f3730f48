//! bag-registry's rows and the SQL shared by its handlers.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;
use uuid::Uuid;

pub const SCHEMA: &str = "registry";
pub const SERVICE: &str = "bag-registry";

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

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl BagRow {
    pub fn is_parent(&self) -> bool {
        self.kind == "parent"
    }

    pub fn to_pb(&self) -> pb::Bag {
        let parent = self.is_parent();
        pb::Bag {
            qr: self.qr.clone(),
            r#type: if parent {
                pb::BagType::Parent
            } else {
                pb::BagType::Child
            } as i32,
            product_line: self.product_line.clone().unwrap_or_default(),
            status: self.status.clone(),
            child_count: self.child_count,
            capacity: self.capacity.unwrap_or(0),
            weight_kg: if parent {
                f64::from(self.child_count) * self.child_weight_kg
            } else {
                self.child_weight_kg
            },
            expected_weight_kg: if parent {
                self.parent_weight_kg.unwrap_or(0.0)
            } else {
                self.child_weight_kg
            },
            area: self.area.clone(),
            parent_qr: self.parent_qr.clone().unwrap_or_default(),
            bill_id: self.bill_id.clone().unwrap_or_default(),
            frozen: self.frozen,
            created_at: Some(ts(self.created_at)),
            created_by: self.created_by.map(|u| u.to_string()).unwrap_or_default(),
            linked_at: self.linked_at.map(ts),
            linked_by: self.linked_by.map(|u| u.to_string()).unwrap_or_default(),
        }
    }
}

/// SearchBags' and ExportBags' filters; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct BagFilter {
    /// "parent" or "child".
    pub kind: Option<&'static str>,
    pub area: Option<String>,
    /// A normalised QR prefix.
    pub prefix: Option<String>,
    /// Children: linked or not; parents: holding children or not.
    pub linked: Option<bool>,
    /// On a bill or not.
    pub billed: Option<bool>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// Bags matching `f` in QR order, strictly after `after`. The statement holds only the
/// conditions given, so the primary key ("C" collation) is walked from the prefix or the cursor
/// (a page never rescans what earlier pages read).
pub async fn bags_by_qr(
    conn: &mut PgConnection,
    f: &BagFilter,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<BagRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {BAG_COLUMNS} FROM registry.bags b WHERE true"
    ));
    if let Some(prefix) = &f.prefix {
        q.push(" AND b.qr >= ")
            .push_bind(prefix.clone())
            .push(" AND b.qr < ")
            .push_bind(format!("{prefix}\u{10ffff}"));
    }
    if let Some(after) = after {
        q.push(" AND b.qr > ").push_bind(after.to_owned());
    }
    if let Some(kind) = f.kind {
        q.push(" AND b.kind = ").push_bind(kind);
    }
    if let Some(area) = &f.area {
        q.push(" AND b.area = ").push_bind(area.clone());
    }
    if let Some(linked) = f.linked {
        q.push(" AND (CASE WHEN b.kind = 'child' THEN b.parent_qr IS NOT NULL ELSE b.child_count > 0 END) = ")
            .push_bind(linked);
    }
    if let Some(billed) = f.billed {
        q.push(" AND (b.bill_id IS NOT NULL) = ").push_bind(billed);
    }
    if let Some(from) = f.from {
        q.push(" AND b.created_at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND b.created_at < ").push_bind(to);
    }
    q.push(" ORDER BY b.qr LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
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
    match bag(conn, qr).await? {
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
