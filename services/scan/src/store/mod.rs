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

/// A scan to record in a batch ([`record_many`]): the event, its outbox row and the claim.
pub struct Record {
    pub ev: ScanEventRow,
    pub event: outbox::Prepared,
    pub claim: Option<OwnedClaim>,
}

/// A [`Claim`] that owns its parts (it waits in a batch).
pub struct OwnedClaim {
    pub scope: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub response: Vec<u8>,
}

impl Record {
    /// Records this scan alone ([`record`]).
    pub async fn alone(&self, pool: &sqlx::PgPool) -> AppResult<bool> {
        let claim = self.claim.as_ref().map(|c| Claim {
            scope: &c.scope,
            key: &c.key,
            request_hash: &c.request_hash,
            response: &c.response,
        });
        record(pool, &self.ev, &self.event, claim).await
    }
}

/// [`record`] for a batch in ONE statement and one commit (issue 18, group commit): for each
/// scan, whether it was recorded (false: an earlier request holds its key, and nothing of it
/// was written). Keys must be distinct within the batch.
pub async fn record_many(pool: &sqlx::PgPool, records: &[Record]) -> AppResult<Vec<bool>> {
    let oc = outbox::OUTBOX_COLUMNS;
    let claim = idempotency::claim_rows_sql(
        "scan",
        "SELECT scope, ckey, hash, response FROM r WHERE ckey IS NOT NULL",
        "k.scope, k.key",
    );
    let sql = format!(
        r#"WITH r AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[],
                        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::int[],
                        $13::text[], $14::uuid[], $15::text[], $16::text[], $17::bytea[], $18::timestamptz[],
                        $19::text[], $20::text[], $21::bytea[], $22::bytea[], $23::int[])
                      AS r(id, occurred_at, user_id, username, kind, area, parent_qr, child_qr, raw_input,
                           outcome, parent_child_count, parent_capacity, idempotency_key, event_id,
                           event_type, aggregate_id, envelope, created_at, scope, ckey, hash, response, i)),
           k AS ({claim}),
           ok AS (SELECT * FROM r WHERE r.ckey IS NULL
                     OR EXISTS (SELECT 1 FROM k WHERE k.scope = r.scope AND k.key = r.ckey)),
           e AS (INSERT INTO scan.scan_events ({COLUMNS})
                 SELECT {COLUMNS} FROM ok ORDER BY i),
           o AS (INSERT INTO scan.outbox ({oc})
                 SELECT event_id, event_type, aggregate_id, envelope, created_at FROM ok ORDER BY i)
         SELECT i FROM ok"#
    );
    let col = |f: &dyn Fn(&Record) -> Option<String>| records.iter().map(f).collect::<Vec<_>>();
    let recorded: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(records.iter().map(|r| r.ev.id).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.ev.occurred_at).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.ev.user_id).collect::<Vec<_>>())
        .bind(col(&|r| Some(r.ev.username.clone())))
        .bind(col(&|r| Some(r.ev.kind.clone())))
        .bind(col(&|r| Some(r.ev.area.clone())))
        .bind(col(&|r| Some(r.ev.parent_qr.clone())))
        .bind(col(&|r| r.ev.child_qr.clone()))
        .bind(col(&|r| Some(r.ev.raw_input.clone())))
        .bind(col(&|r| Some(r.ev.outcome.clone())))
        .bind(
            records
                .iter()
                .map(|r| r.ev.parent_child_count)
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.ev.parent_capacity)
                .collect::<Vec<_>>(),
        )
        .bind(col(&|r| r.ev.idempotency_key.clone()))
        .bind(records.iter().map(|r| r.event.event_id).collect::<Vec<_>>())
        .bind(col(&|r| Some(r.event.event_type.clone())))
        .bind(col(&|r| Some(r.event.aggregate_id.clone())))
        .bind(
            records
                .iter()
                .map(|r| r.event.envelope.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.event.created_at)
                .collect::<Vec<_>>(),
        )
        .bind(col(&|r| r.claim.as_ref().map(|c| c.scope.clone())))
        .bind(col(&|r| r.claim.as_ref().map(|c| c.key.clone())))
        .bind(
            records
                .iter()
                .map(|r| r.claim.as_ref().map(|c| c.request_hash.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.claim.as_ref().map(|c| c.response.clone()))
                .collect::<Vec<_>>(),
        )
        .bind((0..records.len() as i32).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
    let mut out = vec![false; records.len()];
    for i in recorded {
        out[i as usize] = true;
    }
    Ok(out)
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
