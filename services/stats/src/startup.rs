//! Build, then run (as every service): listeners, pool, migrations when configured; then the
//! consumer that feeds the read models, the maintenance task, and the gRPC service.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Months, NaiveDate, Utc};
use prost::Message;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::sync::watch;
use tonic::service::Routes;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier};
use tracetrack_common::consumer::{Consumer, ConsumerSettings, Handler};
use tracetrack_common::server::ServiceRuntime;
use tracetrack_proto::events::v1::EventEnvelope;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::stats::v1 as pb;

use crate::apply::StatsHandler;
use crate::config::Settings;
use crate::state::{Inner, Stats, SCHEMA, SERVICE};
use crate::store;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/stats");

pub struct Application {
    runtime: ServiceRuntime,
    stats: Stats,
    handler: Arc<StatsHandler>,
    settings: Settings,
    stop_tx: watch::Sender<bool>,
}

pub fn handler(settings: &Settings) -> (Arc<StatsHandler>, watch::Receiver<u64>) {
    let (changed, changed_rx) = watch::channel(0u64);
    (
        Arc::new(StatsHandler {
            time_zone: settings.business_time_zone.clone(),
            changed,
        }),
        changed_rx,
    )
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        // stats publishes nothing: no outbox relay.
        settings.common.events.relay_enabled = false;
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        if settings.common.database.migrate_on_start {
            ensure_partitions(&runtime.pool).await?;
        }
        let (handler, changed) = handler(&settings);
        let (stop_tx, stop) = watch::channel(false);
        let verifier = RemoteVerifier::new(&settings.common.auth)?;
        let registry = BagRegistryServiceClient::new(tracetrack_common::client::upstream(
            &settings.registry_url,
            settings.registry_timeout_ms,
            &settings.common.auth,
        )?);
        let stats = Stats(Arc::new(Inner {
            registry,
            exports: tracetrack_common::export::Limiter::new(
                settings.common.limits.max_concurrent_exports,
            ),
            pool: runtime.pool.clone(),
            reports: crate::report::Reports::new(&settings)?,
            settings: settings.clone(),
            callers: CallerResolver::new(Arc::new(verifier)),
            changed,
            stop,
        }));
        Ok(Self {
            runtime,
            stats,
            handler,
            settings,
            stop_tx,
        })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let pool = self.runtime.pool.clone();
        let stop_rx = self.stop_tx.subscribe();
        let consumer = self.settings.consumer_enabled.then(|| {
            let c = Consumer {
                pool: pool.clone(),
                schema: SCHEMA.to_owned(),
                redis: self.settings.common.redis.clone(),
                settings: consumer_settings(&self.settings),
            };
            tokio::spawn(c.run(self.handler.clone() as Arc<dyn Handler>, stop_rx.clone()))
        });
        let reports = self.settings.reports.enabled.then(|| {
            tokio::spawn(crate::report::schedule::run(
                self.stats.clone(),
                stop_rx.clone(),
            ))
        });
        let maintenance = tokio::spawn(maintain(pool, self.settings.clone(), stop_rx));
        let routes = Routes::new(pb::stats_service_server::StatsServiceServer::new(
            self.stats,
        ));
        let stop_tx = self.stop_tx;
        let result = self
            .runtime
            .serve(routes, &["tracetrack.stats.v1.StatsService"], async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        if let Some(c) = consumer {
            let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), maintenance).await;
        if let Some(r) = reports {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        result
    }
}

pub fn consumer_settings(settings: &Settings) -> ConsumerSettings {
    let prefix = &settings.common.events.key_prefix;
    ConsumerSettings {
        group: "stats".into(),
        consumer: format!(
            "stats-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
            std::process::id()
        ),
        streams: settings
            .sources
            .iter()
            .map(|s| tracetrack_common::outbox::stream_key(prefix, s))
            .collect(),
        batch_size: settings.consumer_batch_size.clamp(1, 500),
        block_ms: settings.consumer_block_ms,
        claim_idle_ms: settings.consumer_claim_idle_ms,
    }
}

/// Monthly audit partitions for the previous, current and next two months.
pub async fn ensure_partitions(pool: &PgPool) -> anyhow::Result<()> {
    let today = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    for offset in -1i32..=2 {
        let start = if offset < 0 {
            first.checked_sub_months(Months::new(offset.unsigned_abs()))
        } else {
            first.checked_add_months(Months::new(offset as u32))
        }
        .ok_or_else(|| anyhow::anyhow!("date"))?;
        let end = start
            .checked_add_months(Months::new(1))
            .ok_or_else(|| anyhow::anyhow!("date"))?;
        let name = format!("audit_events_{}", start.format("%Y_%m"));
        // Only missing partitions are created, so a runtime role without DDL rights stays quiet
        // once the migration role (or an earlier run) has made them.
        if store::partition_exists(pool, &name).await? {
            continue;
        }
        let (from, to) = (start.to_string(), end.to_string());
        if let Err(e) = store::create_audit_partition(pool, &name, &from, &to).await {
            tracing::warn!(error = %e, partition = %name, "cannot create audit partition (rows already in the default one?)");
        }
    }
    Ok(())
}

/// Retention and partitions, every ten minutes; consumer lag every few seconds.
async fn maintain(pool: PgPool, settings: Settings, mut stop: watch::Receiver<bool>) {
    let mut last_retention = std::time::Instant::now() - Duration::from_secs(3600);
    let mut redis = None;
    let consumer = consumer_settings(&settings);
    loop {
        if last_retention.elapsed() > Duration::from_secs(600) {
            last_retention = std::time::Instant::now();
            let _ = ensure_partitions(&pool).await;
            store::retention(&pool).await;
        }
        if redis.is_none() {
            redis = tracetrack_common::redis::connect(&settings.common.redis)
                .await
                .ok();
        }
        if let Some(r) = redis.as_mut() {
            if tracetrack_common::consumer::record_lag(r, &consumer.group, &consumer.streams)
                .await
                .is_err()
            {
                redis = None;
            }
        }
        if let Ok(n) = store::parked_count(&pool).await {
            metrics::gauge!("consumer_parked_events").set(n as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Rebuilds every read model from the stored events (the audit trail), in one transaction.
pub async fn rebuild(pool: &PgPool, handler: &StatsHandler) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    store::truncate_read_models(&mut tx).await?;
    let rows = store::stored_envelopes(&mut tx).await?;
    let mut n = 0u64;
    // In chunks, as the consumer applies them; every stored event was applied once, so none is
    // poison now (one that is would fail the rebuild rather than be skipped silently).
    for chunk in rows.chunks(500) {
        let mut events = Vec::with_capacity(chunk.len());
        for bytes in chunk {
            events.push(EventEnvelope::decode(bytes.as_slice())?);
        }
        let mut with_payloads = Vec::with_capacity(events.len());
        for env in &events {
            let p = crate::apply::payload(env).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            with_payloads.push((env, p));
        }
        let poisoned = handler
            .project_many(&mut tx, &with_payloads)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if let Some((_, reason)) = poisoned.first() {
            anyhow::bail!("a stored event cannot be applied: {reason}");
        }
        n += events.len() as u64;
    }
    tx.commit().await?;
    Ok(n)
}
