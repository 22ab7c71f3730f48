//! Reading bags by filter: SearchBags (in QR order from a prefix, or newest first), ExportBags,
//! and a parent's children. Each statement holds only the conditions given (`QueryBuilder`), so
//! the index that fits the order is walked from the cursor.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use tracetrack_common::AppResult;

use super::{BagRow, BAG_COLUMNS};

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
    push_conditions(&mut q, f);
    q.push(" ORDER BY b.qr LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
}

/// The filter's conditions (the prefix aside), each ` AND …`.
fn push_conditions(q: &mut QueryBuilder<Postgres>, f: &BagFilter) {
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
}

/// Bags matching `f` (its prefix aside), newest first by (created_at DESC, qr DESC), strictly
/// after the cursor `after`.
pub async fn bags_newest<'e>(
    db: impl PgExecutor<'e>,
    f: &BagFilter,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> AppResult<Vec<BagRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {BAG_COLUMNS} FROM registry.bags b WHERE true"
    ));
    if let Some((at, qr)) = after {
        q.push(" AND (b.created_at, b.qr) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(qr.clone())
            .push(")");
    }
    push_conditions(&mut q, f);
    q.push(" ORDER BY b.created_at DESC, b.qr DESC LIMIT ")
        .push_bind(limit);
    Ok(q.build_query_as().fetch_all(db).await?)
}

/// A parent's children in QR order, strictly after `after`.
pub async fn children(
    conn: &mut PgConnection,
    parent_qr: &str,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<BagRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {BAG_COLUMNS} FROM registry.bags b WHERE b.parent_qr = "
    ));
    q.push_bind(parent_qr.to_owned());
    if let Some(after) = after {
        q.push(" AND b.qr > ").push_bind(after.to_owned());
    }
    q.push(" ORDER BY b.qr LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
}
