//! The transactional outbox: events are written as rows in the same transaction as the change
//! they describe, and a relay (one leader per service, elected with a Postgres advisory lock held
//! on a dedicated connection) publishes unpublished rows to a Redis Stream.
//!
//! The event contract (SPEC §2): the leader gives each row it publishes the next number of a
//! gap-free **publish sequence** (`outbox_sequence`, in the same statement that marks the rows
//! published), and the row's stream entry id is `<seq>-0`. Redis is not the system of record: it
//! may lose what it held, wholly (restarted empty) or partly (restored from a stale snapshot).
//! The relay compares the stream's last generated id with the sequence in Postgres — when it
//! becomes leader, after any error, and twice a second — and re-publishes every row after the
//! stream's last id with the same ids, so consumers see each event under one id (and deduplicate
//! by event id besides). Rows are selected by `published_at IS NULL`, never by an id high-water
//! mark (ids commit out of order). Outbox rows are deleted, and the stream trimmed, only below
//! what every consumer group has acknowledged and past the re-publication window; the stream's
//! `MAXLEN` is the hard cap. `outbox_group_lag{service,group}` says from the publishing side how
//! far each consumer group is behind, so an alert fires while a consumer is down.
//!
//! Wake-up (issue 18, direction 5): a mutation that committed an outbox row calls [`wake`], so
//! the relay of this process publishes at once instead of at its next poll. The leader may be
//! another replica, which still finds the row at its poll (`events.poll_interval_ms`): the poll
//! is the fallback, the wake-up only shortens the wait on the leader's own writes. A wake-up
//! within `events.publish_gap_ms` of the previous publish waits out the rest of that gap, so at
//! moderate rates the commits of those milliseconds share one publish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use prost::Message;
use redis::aio::ConnectionManager;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tracetrack_proto::events::v1::{Actor, EventEnvelope};
use uuid::Uuid;

use crate::config::{EventSettings, RedisSettings};
use crate::error::AppResult;

/// The in-process wake-up of `schema`'s relay (one per schema and process).
fn waker(schema: &str) -> Arc<Notify> {
    static WAKERS: OnceLock<Mutex<HashMap<String, Arc<Notify>>>> = OnceLock::new();
    let mut map = WAKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(schema.to_owned()).or_default().clone()
}

/// Wakes `schema`'s relay in this process, if it runs here: call it right AFTER a commit that
/// wrote an outbox row (a wake-up before the commit finds nothing to publish). Cheap and never
/// blocks; a wake-up while the relay is busy is kept (one permit), so none is lost.
pub fn wake(schema: &str) {
    waker(schema).notify_one();
}

/// The Redis stream a service's events go to. (`events-v2`: entry ids are publish sequences;
/// the streams before them had Redis-made ids, which sequences cannot follow.)
pub fn stream_key(prefix: &str, service: &str) -> String {
    format!("{prefix}:events-v2:{service}")
}

/// An event about to be written.
pub struct NewEvent<'a> {
    pub event_type: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_version: i64,
    pub actor: Actor,
    pub payload: serde_json::Value,
}

/// An outbox row, ready to be written by a statement of the caller's (see [`prepare`]).
pub struct Prepared {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_id: String,
    pub envelope: Vec<u8>,
    pub created_at: chrono::DateTime<Utc>,
}

/// The columns of an outbox row, in [`Prepared`]'s order, for callers that write the row inside
/// a statement of their own (one round trip for a change and its event).
pub const OUTBOX_COLUMNS: &str = "event_id, event_type, aggregate_id, envelope, created_at";

/// Builds an event's outbox row without writing it.
pub fn prepare(source: &str, event: NewEvent<'_>) -> Prepared {
    let event_id = Uuid::now_v7();
    let now = Utc::now();
    let envelope = EventEnvelope {
        event_id: event_id.to_string(),
        event_type: event.event_type.to_owned(),
        source: source.to_owned(),
        aggregate_type: event.aggregate_type.to_owned(),
        aggregate_id: event.aggregate_id.to_owned(),
        aggregate_version: event.aggregate_version,
        actor: Some(event.actor),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        payload_json: event.payload.to_string(),
        traceparent: crate::telemetry::current_traceparent().unwrap_or_default(),
    };
    Prepared {
        event_id,
        event_type: event.event_type.to_owned(),
        aggregate_id: event.aggregate_id.to_owned(),
        envelope: envelope.encode_to_vec(),
        created_at: now,
    }
}

/// Writes an event in the caller's transaction. Returns its id.
pub async fn enqueue(
    conn: &mut PgConnection,
    schema: &str,
    source: &str,
    event: NewEvent<'_>,
) -> AppResult<Uuid> {
    let row = prepare(source, event);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO "{schema}".outbox (event_id, event_type, aggregate_id, envelope, created_at)
           VALUES ($1, $2, $3, $4, $5)"#
    )))
    .bind(row.event_id)
    .bind(&row.event_type)
    .bind(&row.aggregate_id)
    .bind(&row.envelope)
    .bind(row.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(row.event_id)
}

/// seq, event id, type, aggregate id, envelope, created_at.
type PublishedRow = (i64, Uuid, String, String, Vec<u8>, chrono::DateTime<Utc>);

/// The entry id of publish sequence `seq`.
pub fn entry_id(seq: i64) -> String {
    format!("{seq}-0")
}

/// The sequence part of a stream entry id (`<seq>-<n>`).
fn seq_of(id: &str) -> Option<i64> {
    id.split_once('-')
        .map_or(Some(id), |(ms, _)| Some(ms))?
        .parse()
        .ok()
}

/// Publishes a service's outbox to Redis.
pub struct Relay {
    pub pool: PgPool,
    pub schema: String,
    pub service: String,
    pub events: EventSettings,
    pub redis: RedisSettings,
}

impl Relay {
    /// Runs until `stop` turns true: competes for leadership, and publishes while leader.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        metrics::counter!("outbox_republished_total", "service" => self.service.clone())
            .increment(0);
        while !*stop.borrow() {
            match self.lead(&mut stop).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, service = %self.service, "outbox relay interrupted")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One term: take the lock (or return), then publish until an error or `stop`.
    async fn lead(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        // A dedicated connection holds the session-level lock; if it dies, the lock goes with it.
        let mut lock_conn = self.pool.acquire().await?.detach();
        let (leader,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("tracetrack.outbox-relay.{}", self.schema))
            .fetch_one(&mut lock_conn)
            .await?;
        if !leader {
            return Ok(());
        }
        tracing::info!(service = %self.service, "outbox relay is leader");
        let Some(mut redis) = crate::redis::connect_retrying(&self.redis, stop).await else {
            return Ok(());
        };
        let stream = stream_key(&self.events.key_prefix, &self.service);
        let wake = waker(&self.schema);
        self.requeue_unsequenced().await?;
        let mut last_gap_check = Instant::now() - Duration::from_secs(60);
        let mut last_lock_check = Instant::now();
        let mut last_cleanup = Instant::now() - Duration::from_secs(3600);
        let mut last_lag = Instant::now() - Duration::from_secs(60);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if last_lock_check.elapsed() > Duration::from_secs(2) {
                sqlx::query("SELECT 1").execute(&mut lock_conn).await?;
                last_lock_check = Instant::now();
            }
            // Every term starts here (and any error ends the term), so a publish that failed
            // half-way is always followed by this check before anything newer is published.
            if last_gap_check.elapsed() > Duration::from_millis(500) {
                self.fill_gap(&mut redis, &stream).await?;
                last_gap_check = Instant::now();
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                self.record_group_lag(&mut redis, &stream).await?;
                last_lag = Instant::now();
            }
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                self.cleanup(&mut redis, &stream).await?;
                last_cleanup = Instant::now();
            }
            let began = Instant::now();
            let published = self.publish_batch(&mut redis, &stream).await?;
            if published < self.events.batch_size as usize {
                let woken = tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.events.poll_interval_ms)) => false,
                    _ = wake.notified() => true,
                    _ = stop.changed() => false,
                };
                let rest = Duration::from_millis(self.events.publish_gap_ms)
                    .saturating_sub(began.elapsed());
                if woken && !rest.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    /// Rows published before publish sequences existed went to the old stream, which consumers
    /// no longer read: those of the re-publication window are published again, with sequences
    /// (consumers deduplicate by event id). A no-op once done.
    async fn requeue_unsequenced(&self) -> anyhow::Result<()> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"UPDATE "{}".outbox SET published_at = NULL
               WHERE seq IS NULL AND published_at IS NOT NULL
                 AND created_at > now() - make_interval(secs => $1)"#,
            self.schema
        )))
        .bind(self.events.republish_window_secs as f64)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            tracing::info!(service = %self.service, events = r.rows_affected(), "publishing the recent window again with sequences");
        }
        Ok(())
    }

    /// The stream's last generated id, as a sequence (0: no stream).
    async fn stream_top(redis: &mut ConnectionManager, stream: &str) -> anyhow::Result<i64> {
        let info: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(redis)
            .await;
        let info = match info {
            Ok(v) => v,
            Err(e) if e.to_string().to_lowercase().contains("no such key") => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let map: std::collections::HashMap<String, redis::Value> =
            redis::FromRedisValue::from_redis_value(&info)?;
        let last: String = match map.get("last-generated-id") {
            Some(v) => redis::FromRedisValue::from_redis_value(v)?,
            None => "0-0".to_owned(),
        };
        seq_of(&last).ok_or_else(|| anyhow::anyhow!("stream {stream}: odd last id {last}"))
    }

    async fn last_seq(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            r#"SELECT last_seq FROM "{}".outbox_sequence"#,
            self.schema
        )))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Re-publishes, with their own ids, the rows Redis does not have: every sequence after the
    /// stream's last generated id (all of them after an empty restart; the tail after a restore
    /// from a stale snapshot; the rest of a publish that failed half-way).
    async fn fill_gap(&self, redis: &mut ConnectionManager, stream: &str) -> anyhow::Result<()> {
        let top = Self::stream_top(redis, stream).await?;
        let last = self.last_seq().await?;
        if top > last {
            self.skip_to(top, last, stream).await?;
            return Ok(());
        }
        let mut cursor = top;
        let mut again = 0u64;
        while cursor < last {
            let rows: Vec<PublishedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"SELECT seq, event_id, event_type, aggregate_id, envelope, created_at FROM "{}".outbox
                   WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"#,
                self.schema
            )))
            .bind(cursor)
            .bind(last)
            .bind(self.events.batch_size)
            .fetch_all(&self.pool)
            .await?;
            let Some(end) = rows.last().map(|r| r.0) else {
                break;
            };
            self.xadd(redis, stream, &rows).await?;
            again += rows.len() as u64;
            cursor = end;
        }
        if again > 0 {
            tracing::warn!(service = %self.service, stream, from = top + 1, to = last, events = again, "redis was missing events; published them again with their ids");
            metrics::counter!("outbox_republished_total", "service" => self.service.clone())
                .increment(again);
        }
        Ok(())
    }

    /// The stream is ahead of the outbox: the schema was restored from a backup taken before
    /// sequences `last + 1 ..= top` were published (or the relay points at another database's
    /// stream). Those ids are taken — Redis refuses an `XADD` at or below the stream's top, and
    /// consumers have seen them — so the sequence moves past them: new events (and rows the
    /// restore made unpublished again, which consumers deduplicate by event id) get ids after
    /// `top`. What the lost sequences described is gone from this schema (docs/operations.md § 6:
    /// reconcile after a restore).
    async fn skip_to(&self, top: i64, last: i64, stream: &str) -> anyhow::Result<()> {
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"UPDATE "{}".outbox_sequence SET last_seq = $1 WHERE last_seq < $1"#,
            self.schema
        )))
        .bind(top)
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() > 0 {
            tracing::warn!(service = %self.service, stream, top, last, "the stream is ahead of the outbox's sequence (a restored schema?): new events continue after the stream's last id");
            metrics::counter!("outbox_sequence_skipped_total", "service" => self.service.clone())
                .increment((top - last) as u64);
        }
        Ok(())
    }

    async fn xadd(
        &self,
        redis: &mut ConnectionManager,
        stream: &str,
        rows: &[PublishedRow],
    ) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for (seq, event_id, event_type, aggregate_id, envelope, _) in rows {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.events.stream_max_len)
                .arg(entry_id(*seq))
                .arg("event_id")
                .arg(event_id.to_string())
                .arg("type")
                .arg(event_type)
                .arg("aggregate_id")
                .arg(aggregate_id)
                .arg("envelope")
                .arg(envelope.as_slice())
                .ignore();
        }
        let _: () = pipe.query_async(redis).await?;
        Ok(())
    }

    /// Gives the next unpublished rows their sequences and marks them published (one statement,
    /// committed), then adds them to the stream under those ids. If the adding fails, the next
    /// term's gap check publishes them.
    async fn publish_batch(
        &self,
        redis: &mut ConnectionManager,
        stream: &str,
    ) -> anyhow::Result<usize> {
        let mut rows: Vec<PublishedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"WITH batch AS (
                   SELECT id FROM "{s}".outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE),
               numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM batch),
               bump AS (
                   UPDATE "{s}".outbox_sequence SET last_seq = last_seq + (SELECT count(*) FROM batch)
                   WHERE EXISTS (SELECT FROM batch)
                   RETURNING last_seq - (SELECT count(*) FROM batch) AS base)
               UPDATE "{s}".outbox o SET seq = bump.base + numbered.n, published_at = now()
               FROM numbered, bump WHERE o.id = numbered.id
               RETURNING o.seq, o.event_id, o.event_type, o.aggregate_id, o.envelope, o.created_at"#,
            s = self.schema
        )))
        .bind(self.events.batch_size)
        .fetch_all(&self.pool)
        .await?;
        // The batch holds the oldest unpublished rows (lowest ids), so its oldest is the
        // outbox's oldest; an empty batch means nothing waits.
        let oldest_age = rows
            .iter()
            .map(|r| r.5)
            .min()
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("outbox_oldest_unpublished_age_seconds", "service" => self.service.clone())
            .set(oldest_age);
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_by_key(|r| r.0);
        self.xadd(redis, stream, &rows).await?;
        metrics::counter!("outbox_published_total", "service" => self.service.clone())
            .increment(rows.len() as u64);
        Ok(rows.len())
    }

    /// Per consumer group: the last sequence it acknowledged (the one before its oldest pending
    /// entry, or the last delivered when nothing is pending), and its lag.
    async fn groups(
        redis: &mut ConnectionManager,
        stream: &str,
    ) -> anyhow::Result<Vec<(String, i64, Option<i64>)>> {
        let groups: redis::RedisResult<Vec<std::collections::HashMap<String, redis::Value>>> =
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(redis)
                .await;
        let groups = match groups {
            Ok(g) => g,
            Err(e) if e.to_string().to_lowercase().contains("no such key") => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for g in groups {
            let get = |k: &str| g.get(k).cloned().unwrap_or(redis::Value::Nil);
            let name: String = redis::FromRedisValue::from_redis_value(&get("name"))?;
            let delivered: String =
                redis::FromRedisValue::from_redis_value(&get("last-delivered-id"))?;
            let pending: i64 =
                redis::FromRedisValue::from_redis_value(&get("pending")).unwrap_or(0);
            let lag: Option<i64> = redis::FromRedisValue::from_redis_value(&get("lag")).ok();
            let mut acked = seq_of(&delivered).unwrap_or(0);
            if pending > 0 {
                // XPENDING's summary: [count, smallest id, greatest id, consumers].
                let summary: redis::Value = redis::cmd("XPENDING")
                    .arg(stream)
                    .arg(&name)
                    .query_async(redis)
                    .await?;
                if let redis::Value::Array(parts) = summary {
                    if let Some(Ok(first)) = parts
                        .get(1)
                        .map(<String as redis::FromRedisValue>::from_redis_value)
                    {
                        acked = acked.min(seq_of(&first).unwrap_or(1) - 1);
                    }
                }
            }
            out.push((name, acked, lag));
        }
        Ok(out)
    }

    /// How far each consumer group is behind, from the publishing side.
    async fn record_group_lag(
        &self,
        redis: &mut ConnectionManager,
        stream: &str,
    ) -> anyhow::Result<()> {
        let last = self.last_seq().await?;
        for (group, acked, lag) in Self::groups(redis, stream).await? {
            let behind = lag.unwrap_or(last - acked).max(0);
            metrics::gauge!("outbox_group_lag", "service" => self.service.clone(), "group" => group)
                .set(behind as f64);
        }
        Ok(())
    }

    /// Deletes published rows past the retention that every consumer group has acknowledged
    /// (rows without a sequence, from before sequences, by age alone), and trims the stream below
    /// what every group acknowledged and before the re-publication window. With no group yet,
    /// nothing is acknowledged: rows stay until the retention's double, the stream until its cap.
    async fn cleanup(&self, redis: &mut ConnectionManager, stream: &str) -> anyhow::Result<()> {
        let groups = Self::groups(redis, stream).await?;
        let acked = groups.iter().map(|g| g.1).min();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"DELETE FROM "{}".outbox
               WHERE published_at IS NOT NULL
                 AND ((seq IS NULL AND created_at < now() - make_interval(secs => $1))
                   OR (seq <= $2 AND created_at < now() - make_interval(secs => $1))
                   OR created_at < now() - make_interval(secs => $1 * 2))"#,
            self.schema
        )))
        .bind(self.events.retention_secs as f64)
        .bind(acked.unwrap_or(0))
        .execute(&self.pool)
        .await?;
        if let Some(acked) = acked {
            let window_start: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                r#"SELECT min(seq) FROM "{}".outbox
                   WHERE seq IS NOT NULL AND created_at > now() - make_interval(secs => $1)"#,
                self.schema
            )))
            .bind(self.events.republish_window_secs as f64)
            .fetch_one(&self.pool)
            .await?;
            let keep_from = window_start.unwrap_or(i64::MAX).min(acked + 1);
            if keep_from > 1 && keep_from < i64::MAX {
                let _: i64 = redis::cmd("XTRIM")
                    .arg(stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(entry_id(keep_from))
                    .query_async(redis)
                    .await?;
            }
        }
        crate::idempotency::purge_expired(&self.pool, &self.schema).await?;
        Ok(())
    }
}

/// Decodes an envelope read back from a stream entry's `envelope` field.
pub fn decode_envelope(bytes: &[u8]) -> Result<EventEnvelope, prost::DecodeError> {
    EventEnvelope::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_sequences() {
        assert_eq!(entry_id(42), "42-0");
        assert_eq!(seq_of("42-0"), Some(42));
        assert_eq!(seq_of("0-0"), Some(0));
        assert_eq!(seq_of("7"), Some(7));
        assert_eq!(seq_of("x-0"), None);
    }

    /// A wake-up sent while the relay is not waiting (it is publishing) is kept for its next
    /// wait, and reaches only the relay of its own schema.
    #[tokio::test]
    async fn a_wake_up_is_kept_until_the_relay_waits_and_stays_in_its_schema() {
        let (a, b) = (waker("wake_test_a"), waker("wake_test_b"));
        wake("wake_test_a");
        assert!(futures::FutureExt::now_or_never(a.notified()).is_some());
        assert!(futures::FutureExt::now_or_never(a.notified()).is_none());
        assert!(futures::FutureExt::now_or_never(b.notified()).is_none());
    }
}
