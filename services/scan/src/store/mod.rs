//! scan's SQL: the append-only scan log (insert and keyset reads, nothing else ever touches a
//! row) and the monthly partitions it lives in ([`partitions`]). Every statement is
//! schema-qualified.

mod partitions;

pub use partitions::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use tracetrack_common::{idempotency, outbox, time, AppResult};
use tracetrack_proto::scan::v1 as pb;
use uuid::Uuid;

/// One scan attempt, as stored in `scan.scan_events` and as sent, JSON encoded, in the
/// `payload_json` of the `scan.recorded` event (stats and every replica's WatchScans read it):
///
/// ```json
/// {"id": "0190…", "occurred_at": "2025-01-31T10:15:00.123456Z", "user_id": "0190…",
///  "username": "ravi", "kind": "child", "area": "indore", "parent_qr": "SB00001",
///  "child_qr": "0016586", "raw_input": "LABEL NO.:0016586 …", "outcome": "ok",
///  "parent_child_count": 17, "parent_capacity": 30, "idempotency_key": "…"}
/// ```
/// `kind` is `parent`, `child` or `undo`; `outcome` is `created`, `ok`, `already_linked` or the
/// stable error code; `child_qr`, the counts and `idempotency_key` may be null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ScanEventRow {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub username: String,
    pub kind: String,
    pub area: String,
    pub parent_qr: String,
    pub child_qr: Option<String>,
    pub raw_input: String,
    pub outcome: String,
    pub parent_child_count: Option<i32>,
    pub parent_capacity: Option<i32>,
    pub idempotency_key: Option<String>,
}

impl ScanEventRow {
    /// The row as the API shows it (ListScans, ExportScans, WatchScans).
    pub fn to_pb(&self) -> pb::ScanEvent {
        pb::ScanEvent {
            id: self.id.to_string(),
            occurred_at: Some(time::ts(self.occurred_at)),
            user_id: self.user_id.to_string(),
            username: self.username.clone(),
            kind: kind_to_pb(&self.kind) as i32,
            area: self.area.clone(),
            parent_qr: self.parent_qr.clone(),
            child_qr: self.child_qr.clone().unwrap_or_default(),
            raw_input: self.raw_input.clone(),
            outcome: self.outcome.clone(),
            parent_child_count: self.parent_child_count.unwrap_or_default(),
            parent_capacity: self.parent_capacity.unwrap_or_default(),
        }
    }
}

fn kind_to_pb(kind: &str) -> pb::ScanKind {
    match kind {
        "parent" => pb::ScanKind::Parent,
        "child" => pb::ScanKind::Child,
        "undo" => pb::ScanKind::Undo,
        _ => pb::ScanKind::Unspecified,
    }
}

const COLUMNS: &str = "id, occurred_at, user_id, username, kind, area, parent_qr, child_qr, \
     raw_input, outcome, parent_child_count, parent_capacity, idempotency_key";

/// The idempotency part of [`record`]: the client's key, its request's hash and the answer.
pub struct Claim<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub request_hash: &'a [u8],
    pub response: &'a [u8],
}

/// Records a scan in ONE statement (its own transaction: one round trip, one commit): the
/// event, its outbox row and, with a key, the key claimed with the answer. With a key that an
/// earlier request holds, nothing is written and the answer is `false` (the caller then reads
/// the earlier answer); otherwise `true`. An expired key is taken over.
pub async fn record(
    pool: &sqlx::PgPool,
    e: &ScanEventRow,
    event: &outbox::Prepared,
    claim: Option<Claim<'_>>,
) -> AppResult<bool> {
    let oc = outbox::OUTBOX_COLUMNS;
    let sql = if claim.is_some() {
        format!(
            r#"WITH k AS ({claim}),
               e AS (
                 INSERT INTO scan.scan_events ({COLUMNS})
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 WHERE EXISTS (SELECT 1 FROM k)),
               o AS (
                 INSERT INTO scan.outbox ({oc})
                 SELECT $14, $15, $16, $17, $18 WHERE EXISTS (SELECT 1 FROM k))
             SELECT EXISTS (SELECT 1 FROM k)"#,
            claim = idempotency::claim_sql("scan", ["$19", "$20", "$21", "$22"])
        )
    } else {
        format!(
            r#"WITH e AS (
                 INSERT INTO scan.scan_events ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13))
             INSERT INTO scan.outbox ({oc}) VALUES ($14, $15, $16, $17, $18)
             RETURNING true"#
        )
    };
    let mut q = sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(&*sql))
        .bind(e.id)
        .bind(e.occurred_at)
        .bind(e.user_id)
        .bind(&e.username)
        .bind(&e.kind)
        .bind(&e.area)
        .bind(&e.parent_qr)
        .bind(&e.child_qr)
        .bind(&e.raw_input)
        .bind(&e.outcome)
        .bind(e.parent_child_count)
        .bind(e.parent_capacity)
        .bind(&e.idempotency_key)
        .bind(event.event_id)
        .bind(&event.event_type)
        .bind(&event.aggregate_id)
        .bind(&event.envelope)
        .bind(event.created_at);
    if let Some(c) = &claim {
        q = q
            .bind(c.scope)
            .bind(c.key)
            .bind(c.request_hash)
            .bind(c.response);
    }
    Ok(q.fetch_one(pool).await?)
}

/// What ListScans asks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub user_id: Option<Uuid>,
    /// Matches the parent or the child QR.
    pub qr: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Only events of this area (dispatchers).
    pub area: Option<String>,
    /// Keyset: strictly older than this (occurred_at, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Newest first, by (occurred_at DESC, id DESC). The statement holds only the filters given, so
/// each combination gets a plan that uses its index (and prunes partitions by time).
pub async fn list_events<'e>(
    db: impl PgExecutor<'e>,
    f: &ListFilter,
) -> AppResult<Vec<ScanEventRow>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM scan.scan_events WHERE true"));
    if let Some(user_id) = f.user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(qr) = &f.qr {
        q.push(" AND (parent_qr = ")
            .push_bind(qr.clone())
            .push(" OR child_qr = ")
            .push_bind(qr.clone())
            .push(")");
    }
    if let Some(from) = f.from {
        q.push(" AND occurred_at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND occurred_at < ").push_bind(to);
    }
    if let Some(area) = &f.area {
        q.push(" AND area = ").push_bind(area.clone());
    }
    if let Some((at, id)) = f.after {
        q.push(" AND (occurred_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(f.limit);
    Ok(q.build_query_as().fetch_all(db).await?)
}
