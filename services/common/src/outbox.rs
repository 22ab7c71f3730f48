//! The transactional outbox: events are written as rows in the same transaction as the change
//! they describe, and a relay (one leader per service, elected with a Postgres advisory lock held
//! on a dedicated connection) publishes unpublished rows to a Redis Stream and marks them.
//!
//! The relay selects rows by `published_at IS NULL`, never by an id high-water mark (ids commit
//! out of order). Redis may restart empty: the relay keeps an epoch key there, and when it finds
//! the key gone it re-publishes the last window of events (consumers deduplicate by event id).

use std::time::{Duration, Instant};

use chrono::Utc;
use prost::Message;
use redis::aio::ConnectionManager;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tracetrack_proto::events::v1::{Actor, EventEnvelope};
use uuid::Uuid;

use crate::config::{EventSettings, RedisSettings};
use crate::error::AppResult;

/// The Redis stream a service's events go to.
pub fn stream_key(prefix: &str, service: &str) -> String {
    format!("{prefix}:events:{service}")
}

fn epoch_key(prefix: &str, service: &str) -> String {
    format!("{prefix}:relay-epoch:{service}")
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

/// id, event id, type, aggregate id, envelope, created at.
type OutboxRow = (i64, Uuid, String, String, Vec<u8>, chrono::DateTime<Utc>);

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
        let epoch = epoch_key(&self.events.key_prefix, &self.service);
        let mut last_epoch_check = Instant::now() - Duration::from_secs(60);
        let mut last_lock_check = Instant::now();
        let mut last_cleanup = Instant::now() - Duration::from_secs(3600);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if last_lock_check.elapsed() > Duration::from_secs(2) {
                sqlx::query("SELECT 1").execute(&mut lock_conn).await?;
                last_lock_check = Instant::now();
            }
            if last_epoch_check.elapsed() > Duration::from_millis(500) {
                self.check_epoch(&mut redis, &epoch).await?;
                last_epoch_check = Instant::now();
            }
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                self.cleanup().await?;
                last_cleanup = Instant::now();
            }
            let published = self.publish_batch(&mut redis, &stream).await?;
            if published < self.events.batch_size as usize {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.events.poll_interval_ms)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// If Redis no longer holds our epoch key it restarted empty: re-publish the recent window.
    async fn check_epoch(&self, redis: &mut ConnectionManager, epoch: &str) -> anyhow::Result<()> {
        let present: bool = redis::cmd("EXISTS").arg(epoch).query_async(redis).await?;
        if present {
            return Ok(());
        }
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"UPDATE "{}".outbox SET published_at = NULL
               WHERE published_at IS NOT NULL AND created_at > now() - make_interval(secs => $1)"#,
            self.schema
        )))
        .bind(self.events.republish_window_secs as f64)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            tracing::warn!(
                service = %self.service,
                events = r.rows_affected(),
                "redis lost its streams; re-publishing the recent window"
            );
            metrics::counter!("outbox_republished_total", "service" => self.service.clone())
                .increment(r.rows_affected());
        }
        let _: () = redis::cmd("SET")
            .arg(epoch)
            .arg(Utc::now().to_rfc3339())
            .query_async(redis)
            .await?;
        Ok(())
    }

    async fn publish_batch(
        &self,
        redis: &mut ConnectionManager,
        stream: &str,
    ) -> anyhow::Result<usize> {
        let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT id, event_id, event_type, aggregate_id, envelope, created_at
                   FROM "{}".outbox WHERE published_at IS NULL ORDER BY id LIMIT $1"#,
            self.schema
        )))
        .bind(self.events.batch_size)
        .fetch_all(&self.pool)
        .await?;
        let oldest_age = rows
            .first()
            .map(|r| (Utc::now() - r.5).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("outbox_oldest_unpublished_age_seconds", "service" => self.service.clone())
            .set(oldest_age);
        if rows.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for (_, event_id, event_type, aggregate_id, envelope, _) in &rows {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.events.stream_max_len)
                .arg("*")
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
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"UPDATE "{}".outbox SET published_at = now() WHERE id = ANY($1)"#,
            self.schema
        )))
        .bind(&ids)
        .execute(&self.pool)
        .await?;
        metrics::counter!("outbox_published_total", "service" => self.service.clone())
            .increment(ids.len() as u64);
        Ok(ids.len())
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"DELETE FROM "{}".outbox
               WHERE published_at IS NOT NULL AND created_at < now() - make_interval(secs => $1)"#,
            self.schema
        )))
        .bind(self.events.retention_secs as f64)
        .execute(&self.pool)
        .await?;
        crate::idempotency::purge_expired(&self.pool, &self.schema).await?;
        Ok(())
    }
}

/// Decodes an envelope read back from a stream entry's `envelope` field.
pub fn decode_envelope(bytes: &[u8]) -> Result<EventEnvelope, prost::DecodeError> {
    EventEnvelope::decode(bytes)
}
