//! Event consumers: Redis Streams consumer groups with at-least-once delivery, made exactly-once
//! in effect by recording each applied event id in the same transaction as its effect.
//!
//! - Groups are created on start (reading from the beginning) and re-created on NOGROUP (Redis
//!   restarted empty; the relays then re-publish their recent window, and duplicates are skipped).
//! - Entries a crashed consumer left pending are claimed with XAUTOCLAIM after `claim_idle_ms`.
//! - A batch (up to `batch_size` entries, 100–500 recommended) is applied in one transaction.
//!   Handlers that can ([`Handler::apply_many`]) apply the whole batch with a few set-based
//!   statements, poison events left out by the handler; when that fails, or for other handlers,
//!   each event is applied in a savepoint, so a poison event is parked (with its reason) without
//!   failing the others. Parked events are listed and replayed by the service's CLI.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tracetrack_proto::events::v1::EventEnvelope;
use uuid::Uuid;

use crate::config::RedisSettings;

/// What applying one event can end in.
#[derive(Debug)]
pub enum ApplyError {
    /// The event can never be applied as it is: park it with this reason.
    Poison(String),
    /// Something passing (database trouble): roll the batch back and try again later.
    Transient(anyhow::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        ApplyError::Transient(e.into())
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies one event's effect inside the consumer's transaction.
    async fn apply(&self, conn: &mut PgConnection, event: &EventEnvelope)
        -> Result<(), ApplyError>;

    /// Whether [`Handler::apply_many`] is implemented.
    fn applies_many(&self) -> bool {
        false
    }

    /// Applies many events at once (all new: the consumer has recorded their ids), a fast path
    /// for batches. Returns the events that are poison, by index, with their reasons; those must
    /// have left no effect. An error rolls the whole attempt back and the consumer applies the
    /// batch one event at a time instead.
    async fn apply_many(
        &self,
        _conn: &mut PgConnection,
        _events: &[&EventEnvelope],
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        Err(ApplyError::Transient(anyhow::anyhow!(
            "this handler applies one event at a time"
        )))
    }

    /// Called after each committed batch (e.g. to push fresh figures to watchers).
    async fn after_batch(&self, _applied: usize) {}

    /// For a handler that keeps every event it applies under the event's id anyway (stats: the
    /// audit trail is the event store): records `events` there and says which are new, so the
    /// consumer writes no `applied_events` row per event (issue 18: each fact written once).
    /// `Ok(None)`, the default: the consumer records ids in `applied_events`. An event the
    /// handler cannot record (it will turn out poison) counts as new; a batch holding the same
    /// event twice has it new once. Must run in the consumer's transaction, before the effect.
    async fn record_new(
        &self,
        _conn: &mut PgConnection,
        _events: &[&EventEnvelope],
    ) -> Result<Option<Vec<bool>>, ApplyError> {
        Ok(None)
    }

    /// Undoes [`Handler::record_new`] for an event that turned out poison (parked, not applied).
    async fn forget(
        &self,
        _conn: &mut PgConnection,
        _event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}

/// Records the ids of `events` as applied; returns which of them (by index) are new. An event
/// whose id is not a UUID is returned apart, as poison.
async fn claim_ids(
    conn: &mut PgConnection,
    schema: &str,
    handler: &dyn Handler,
    events: &[&EventEnvelope],
) -> Result<(Vec<usize>, Vec<usize>), ApplyError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut bad = Vec::new();
    let mut good = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        match e.event_id.parse::<Uuid>() {
            Ok(id) => {
                ids.push(id);
                good.push(i);
            }
            Err(_) => bad.push(i),
        }
    }
    let good_events: Vec<&EventEnvelope> = good.iter().map(|&i| events[i]).collect();
    if let Some(new) = handler.record_new(conn, &good_events).await? {
        let new = good
            .into_iter()
            .zip(new)
            .filter_map(|(i, n)| n.then_some(i))
            .collect();
        return Ok((new, bad));
    }
    let fresh: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO "{schema}".applied_events (event_id) SELECT DISTINCT unnest($1::uuid[])
           ON CONFLICT DO NOTHING RETURNING event_id"#
    )))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut fresh: std::collections::HashSet<Uuid> = fresh.into_iter().collect();
    // The first occurrence of each new id (a batch may hold the same event twice).
    let new = good
        .into_iter()
        .zip(ids)
        .filter_map(|(i, id)| fresh.remove(&id).then_some(i))
        .collect();
    Ok((new, bad))
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The consumer group (one per consuming service).
    pub group: String,
    /// This process's name within the group.
    pub consumer: String,
    /// Stream keys to read.
    pub streams: Vec<String>,
    pub batch_size: usize,
    pub block_ms: u64,
    /// Entries pending longer than this on a silent consumer are claimed.
    pub claim_idle_ms: u64,
}

/// The consumer's own tables, in the consuming service's schema (created by `migrate`).
pub fn ddl(schema: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{schema}".applied_events (
               event_id uuid PRIMARY KEY,
               applied_at timestamptz NOT NULL DEFAULT now());
           CREATE INDEX IF NOT EXISTS applied_events_at ON "{schema}".applied_events (applied_at);
           CREATE TABLE IF NOT EXISTS "{schema}".parked_events (
               event_id uuid PRIMARY KEY,
               stream text NOT NULL,
               entry_id text NOT NULL,
               event_type text NOT NULL,
               envelope bytea NOT NULL,
               reason text NOT NULL,
               parked_at timestamptz NOT NULL DEFAULT now());"#
    )
}

/// Applies one decoded event exactly once: records its id, then its effect, in a savepoint.
/// Returns Ok(true) if applied, Ok(false) if it had been applied before.
pub async fn apply_once(
    conn: &mut PgConnection,
    schema: &str,
    handler: &dyn Handler,
    event: &EventEnvelope,
) -> Result<bool, ApplyError> {
    event
        .event_id
        .parse::<Uuid>()
        .map_err(|_| ApplyError::Poison(format!("bad event id {:?}", event.event_id)))?;
    sqlx::query("SAVEPOINT apply_one")
        .execute(&mut *conn)
        .await?;
    let fresh = match claim_ids(conn, schema, handler, &[event]).await {
        Ok((new, _)) => !new.is_empty(),
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT apply_one")
                .execute(&mut *conn)
                .await?;
            return Err(e);
        }
    };
    if !fresh {
        sqlx::query("RELEASE SAVEPOINT apply_one")
            .execute(&mut *conn)
            .await?;
        return Ok(false);
    }
    match handler.apply(conn, event).await {
        Ok(()) => {
            sqlx::query("RELEASE SAVEPOINT apply_one")
                .execute(&mut *conn)
                .await?;
            Ok(true)
        }
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT apply_one")
                .execute(&mut *conn)
                .await?;
            Err(e)
        }
    }
}

/// A poison event on its way to the parking lot.
struct Parked<'a> {
    stream: &'a str,
    entry: &'a str,
    event_id: Uuid,
    event_type: &'a str,
    envelope: &'a [u8],
    reason: &'a str,
}

async fn park(conn: &mut PgConnection, schema: &str, p: Parked<'_>) -> Result<(), sqlx::Error> {
    tracing::warn!(event_id = %p.event_id, event_type = p.event_type, reason = p.reason, "parking a poison event");
    metrics::counter!("consumer_parked_total").increment(1);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO "{schema}".parked_events (event_id, stream, entry_id, event_type, envelope, reason)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO UPDATE SET reason = EXCLUDED.reason"#
    )))
    .bind(p.event_id)
    .bind(p.stream)
    .bind(p.entry)
    .bind(p.event_type)
    .bind(p.envelope)
    .bind(p.reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub struct Consumer {
    pub pool: PgPool,
    pub schema: String,
    pub redis: RedisSettings,
    pub settings: ConsumerSettings,
}

fn bytes_field(entry: &StreamId, field: &str) -> Option<Vec<u8>> {
    match entry.map.get(field)? {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

impl Consumer {
    /// Runs until `stop` turns true, reconnecting to Redis and re-creating groups as needed.
    pub async fn run(self, handler: std::sync::Arc<dyn Handler>, mut stop: watch::Receiver<bool>) {
        crate::metrics::zero(&["consumer_parked_total", "consumer_duplicates_total"]);
        while !*stop.borrow() {
            let Some(mut redis) = crate::redis::connect_retrying(&self.redis, &mut stop).await
            else {
                return;
            };
            if let Err(e) = self.consume(&mut redis, handler.as_ref(), &mut stop).await {
                tracing::warn!(error = %e, group = %self.settings.group, "consumer interrupted");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn ensure_groups(&self, redis: &mut ConnectionManager) -> redis::RedisResult<()> {
        for stream in &self.settings.streams {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(&self.settings.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(redis)
                .await;
            match r {
                Ok(()) => {
                    tracing::info!(stream, group = %self.settings.group, "consumer group created")
                }
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn consume(
        &self,
        redis: &mut ConnectionManager,
        handler: &dyn Handler,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.ensure_groups(redis).await?;
        let mut claim_cursor: HashMap<String, String> = HashMap::new();
        let mut last_claim = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            // Take over what a crashed consumer left pending.
            if last_claim.elapsed()
                > Duration::from_millis(self.settings.claim_idle_ms.max(1000) / 2)
            {
                last_claim = std::time::Instant::now();
                for stream in &self.settings.streams {
                    let cursor = claim_cursor
                        .get(stream)
                        .cloned()
                        .unwrap_or_else(|| "0-0".into());
                    let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                        .arg(stream)
                        .arg(&self.settings.group)
                        .arg(&self.settings.consumer)
                        .arg(self.settings.claim_idle_ms)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(self.settings.batch_size)
                        .query_async(redis)
                        .await;
                    match reply {
                        Ok(r) => {
                            claim_cursor.insert(stream.clone(), r.next_stream_id.clone());
                            if !r.claimed.is_empty() {
                                tracing::info!(
                                    stream,
                                    claimed = r.claimed.len(),
                                    "claimed pending entries"
                                );
                                self.apply_batch(redis, handler, &[(stream.clone(), r.claimed)])
                                    .await?;
                            }
                        }
                        Err(e) if e.code() == Some("NOGROUP") => {
                            self.ensure_groups(redis).await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.settings.group)
                .arg(&self.settings.consumer)
                .arg("COUNT")
                .arg(self.settings.batch_size)
                .arg("BLOCK")
                .arg(self.settings.block_ms)
                .arg("STREAMS");
            for s in &self.settings.streams {
                cmd.arg(s);
            }
            for _ in &self.settings.streams {
                cmd.arg(">");
            }
            let reply: redis::RedisResult<Option<StreamReadReply>> = cmd.query_async(redis).await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => {
                    tracing::warn!("consumer group missing (redis restarted?); re-creating");
                    self.ensure_groups(redis).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(reply) = reply else { continue };
            let batches: Vec<(String, Vec<StreamId>)> =
                reply.keys.into_iter().map(|k| (k.key, k.ids)).collect();
            self.apply_batch(redis, handler, &batches).await?;
        }
    }

    /// Applies entries in one transaction (poison events parked), then acknowledges them.
    async fn apply_batch(
        &self,
        redis: &mut ConnectionManager,
        handler: &dyn Handler,
        batches: &[(String, Vec<StreamId>)],
    ) -> anyhow::Result<()> {
        let total: usize = batches.iter().map(|(_, ids)| ids.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut applied = 0usize;
        match self.apply_fast(&mut tx, handler, batches).await {
            Ok(Some(n)) => {
                applied = n;
                return self.finish(tx, redis, handler, batches, applied).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = ?e, "applying the batch at once failed; one event at a time");
                tx.rollback().await?;
                tx = self.pool.begin().await?;
            }
        }
        for (stream, entries) in batches {
            for entry in entries {
                let Some(bytes) = bytes_field(entry, "envelope") else {
                    tracing::warn!(stream, entry = %entry.id, "stream entry without an envelope; skipped");
                    continue;
                };
                // What to park it as (id, type, reason), if it cannot be applied.
                let poison = match EventEnvelope::decode(bytes.as_slice()) {
                    Err(e) => Some((
                        Uuid::new_v4(),
                        "undecodable".to_owned(),
                        format!("cannot decode: {e}"),
                    )),
                    Ok(envelope) => match apply_once(&mut tx, &self.schema, handler, &envelope)
                        .await
                    {
                        Ok(true) => {
                            applied += 1;
                            None
                        }
                        Ok(false) => {
                            metrics::counter!("consumer_duplicates_total").increment(1);
                            None
                        }
                        Err(ApplyError::Poison(reason)) => {
                            let id = envelope.event_id.parse().unwrap_or_else(|_| Uuid::new_v4());
                            Some((id, envelope.event_type, reason))
                        }
                        Err(ApplyError::Transient(e)) => return Err(e),
                    },
                };
                if let Some((event_id, event_type, reason)) = poison {
                    let p = Parked {
                        stream,
                        entry: &entry.id,
                        event_id,
                        event_type: &event_type,
                        envelope: &bytes,
                        reason: &reason,
                    };
                    park(&mut tx, &self.schema, p).await?;
                }
            }
        }
        self.finish(tx, redis, handler, batches, applied).await
    }

    /// The fast path: every entry decoded, ids recorded in one statement, the new events applied
    /// by [`Handler::apply_many`], poison and undecodable ones parked. Ok(None) when the handler
    /// has no fast path; an error when the batch must be applied one event at a time.
    async fn apply_fast(
        &self,
        tx: &mut PgConnection,
        handler: &dyn Handler,
        batches: &[(String, Vec<StreamId>)],
    ) -> anyhow::Result<Option<usize>> {
        struct Decoded<'a> {
            stream: &'a str,
            entry: &'a str,
            bytes: Vec<u8>,
            event: EventEnvelope,
        }
        impl Decoded<'_> {
            fn parked<'s>(&'s self, event_id: Uuid, reason: &'s str) -> Parked<'s> {
                Parked {
                    stream: self.stream,
                    entry: self.entry,
                    event_id,
                    event_type: &self.event.event_type,
                    envelope: &self.bytes,
                    reason,
                }
            }
        }
        let mut decoded = Vec::new();
        let mut undecodable = Vec::new();
        for (stream, entries) in batches {
            for entry in entries {
                let Some(bytes) = bytes_field(entry, "envelope") else {
                    tracing::warn!(stream, entry = %entry.id, "stream entry without an envelope; skipped");
                    continue;
                };
                match EventEnvelope::decode(bytes.as_slice()) {
                    Ok(event) => decoded.push(Decoded {
                        stream,
                        entry: &entry.id,
                        bytes,
                        event,
                    }),
                    Err(e) => undecodable.push((stream, &entry.id, bytes, e.to_string())),
                }
            }
        }
        if !handler.applies_many() {
            return Ok(None);
        }
        let events: Vec<&EventEnvelope> = decoded.iter().map(|d| &d.event).collect();
        let (new, bad_ids) = match claim_ids(tx, &self.schema, handler, &events).await {
            Ok(c) => c,
            Err(ApplyError::Transient(e)) => return Err(e),
            Err(ApplyError::Poison(reason)) => anyhow::bail!("the batch as a whole: {reason}"),
        };
        let duplicates = events.len() - new.len() - bad_ids.len();
        let new_events: Vec<&EventEnvelope> = new.iter().map(|&i| events[i]).collect();
        let poison = match handler.apply_many(tx, &new_events).await {
            Ok(p) => p,
            Err(ApplyError::Transient(e)) => return Err(e),
            Err(ApplyError::Poison(reason)) => anyhow::bail!("the batch as a whole: {reason}"),
        };
        let mut parked = 0usize;
        for (i, reason) in poison {
            let d = &decoded[new[i]];
            let id: Uuid = d.event.event_id.parse()?;
            // Not applied after all: a replay may apply it later.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                r#"DELETE FROM "{}".applied_events WHERE event_id = $1"#,
                self.schema
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if let Err(e) = handler.forget(tx, &d.event).await {
                anyhow::bail!("forgetting a poison event: {e:?}");
            }
            park(tx, &self.schema, d.parked(id, &reason)).await?;
            parked += 1;
        }
        for i in bad_ids {
            let d = &decoded[i];
            let reason = format!("bad event id {:?}", d.event.event_id);
            park(tx, &self.schema, d.parked(Uuid::new_v4(), &reason)).await?;
        }
        for (stream, entry, bytes, e) in undecodable {
            park(
                tx,
                &self.schema,
                Parked {
                    stream,
                    entry,
                    event_id: Uuid::new_v4(),
                    event_type: "undecodable",
                    envelope: &bytes,
                    reason: &format!("cannot decode: {e}"),
                },
            )
            .await?;
        }
        metrics::counter!("consumer_duplicates_total").increment(duplicates as u64);
        Ok(Some(new.len() - parked))
    }

    /// Commits the batch, then acknowledges its entries.
    async fn finish(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        redis: &mut ConnectionManager,
        handler: &dyn Handler,
        batches: &[(String, Vec<StreamId>)],
        applied: usize,
    ) -> anyhow::Result<()> {
        tx.commit().await?;
        for (stream, entries) in batches {
            if entries.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("XACK");
            cmd.arg(stream).arg(&self.settings.group);
            for e in entries {
                cmd.arg(&e.id);
            }
            let _: i64 = cmd.query_async(redis).await?;
        }
        metrics::counter!("consumer_applied_total", "group" => self.settings.group.clone())
            .increment(applied as u64);
        handler.after_batch(applied).await;
        Ok(())
    }
}

/// Parked events, oldest first.
pub async fn list_parked(
    pool: &PgPool,
    schema: &str,
) -> sqlx::Result<Vec<(Uuid, String, String, chrono::DateTime<chrono::Utc>)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT event_id, event_type, reason, parked_at FROM "{schema}".parked_events ORDER BY parked_at"#
    )))
    .fetch_all(pool)
    .await
}

/// Replays parked events (all, or one) through `handler`; those that now apply leave the parking
/// lot. Returns (replayed, still parked).
pub async fn replay_parked(
    pool: &PgPool,
    schema: &str,
    handler: &dyn Handler,
    only: Option<Uuid>,
) -> anyhow::Result<(usize, usize)> {
    let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT event_id, envelope FROM "{schema}".parked_events WHERE $1::uuid IS NULL OR event_id = $1 ORDER BY parked_at"#
    )))
    .bind(only)
    .fetch_all(pool)
    .await?;
    let (mut replayed, mut still) = (0, 0);
    for (id, bytes) in rows {
        let mut tx = pool.begin().await?;
        let outcome = match EventEnvelope::decode(bytes.as_slice()) {
            Ok(env) => apply_once(&mut tx, schema, handler, &env).await,
            Err(e) => Err(ApplyError::Poison(format!("cannot decode: {e}"))),
        };
        match outcome {
            Ok(_) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    r#"DELETE FROM "{schema}".parked_events WHERE event_id = $1"#
                )))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                replayed += 1;
            }
            Err(ApplyError::Poison(reason)) => {
                tx.rollback().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    r#"UPDATE "{schema}".parked_events SET reason = $2 WHERE event_id = $1"#
                )))
                .bind(id)
                .bind(reason)
                .execute(pool)
                .await?;
                still += 1;
            }
            Err(ApplyError::Transient(e)) => return Err(e),
        }
    }
    Ok((replayed, still))
}

/// Consumer lag per group and stream (Redis ≥ 7: XINFO GROUPS `lag`), exported as a gauge.
pub async fn record_lag(
    redis: &mut ConnectionManager,
    group: &str,
    streams: &[String],
) -> redis::RedisResult<i64> {
    let mut total = 0i64;
    for stream in streams {
        let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(redis)
            .await?;
        for g in groups {
            let name: Option<String> = g.get("name").and_then(|v| redis::from_redis_value(v).ok());
            if name.as_deref() == Some(group) {
                let lag: i64 = g
                    .get("lag")
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or(0);
                metrics::gauge!("consumer_lag_events", "group" => group.to_owned(), "stream" => stream.clone()).set(lag as f64);
                total += lag;
            }
        }
    }
    Ok(total)
}
