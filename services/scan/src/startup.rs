//! Build, then run: `Application::build` binds the listeners (port 0 works), prepares the pool,
//! migrates when configured, ensures the scan log's monthly partitions, connects the registry
//! client and starts the live feed's reader; `run_until_stopped` serves until the shutdown
//! future resolves. Tests use the same entry.

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tonic::service::Routes;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier};
use tracetrack_common::client;
use tracetrack_common::server::{Background, ServiceRuntime};
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::scan::v1 as pb;

use crate::config::Settings;
use crate::feed::{self, Reader};
use crate::state::{Inner, Scan, SCHEMA, SERVICE};
use crate::store;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/scan");

pub struct Application {
    runtime: ServiceRuntime,
    scan: Scan,
    /// The partition upkeep and the live feed's reader; stopping them ends open WatchScans
    /// streams.
    background: Background,
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        let pool = runtime.pool.clone();
        let mut background = Background::default();

        // The monthly partitions: now when migrations ran at start-up (the database answered),
        // then periodically; in production (schema from the migrate Job) the first run retries
        // until the database answers.
        let ready = settings.common.database.migrate_on_start;
        if ready {
            store::ensure_partitions(&pool, chrono::Utc::now()).await?;
        }
        background.spawn(maintain_partitions(
            pool.clone(),
            Duration::from_secs(settings.partition_check_secs.max(1)),
            ready,
            background.stopped(),
        ));

        let callers = CallerResolver::new(Arc::new(RemoteVerifier::new(&settings.common.auth)?));
        // One shared channel; `registry_url` may list several replicas, comma-separated, and
        // calls are then balanced across them.
        let registry = BagRegistryServiceClient::new(client::upstream(
            &settings.registry_url,
            settings.registry_timeout_ms,
            &settings.common.auth,
        )?);

        let (feed_tx, _) = broadcast::channel(settings.watch_buffer.max(16));
        let stream =
            tracetrack_common::outbox::stream_key(&settings.common.events.key_prefix, SERVICE);
        let start = feed::tail_id(&settings.common.redis, &stream).await;
        background.spawn(
            Reader {
                redis: settings.common.redis.clone(),
                stream,
                max_age: Duration::from_secs(settings.watch_max_age_secs),
                feed: feed_tx.clone(),
            }
            .run(start, background.stopped()),
        );

        let scan = Scan(Arc::new_cyclic(|inner| Inner {
            recorder: crate::recorder::Recorder::start(inner.clone(), &settings.record_batch),
            pool,
            exports: tracetrack_common::export::Limiter::new(
                settings.common.limits.max_concurrent_exports,
            ),
            callers,
            registry,
            feed: feed_tx,
            settings,
            stop: background.stopped(),
        }));
        Ok(Self {
            runtime,
            scan,
            background,
        })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let routes = Routes::new(pb::scan_service_server::ScanServiceServer::new(self.scan));
        // The live streams end as shutdown begins, so draining in-flight RPCs does not wait.
        self.background
            .serve(
                self.runtime,
                routes,
                &["tracetrack.scan.v1.ScanService"],
                shutdown,
                Duration::from_secs(2),
            )
            .await
    }
}

/// Ensures the scan log's partitions every `every`; until the first success (when `ready` is
/// false) it retries every 2 seconds.
async fn maintain_partitions(
    pool: PgPool,
    every: Duration,
    mut ready: bool,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let pause = if ready { every } else { Duration::from_secs(2) };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = feed::stopped(&mut stop) => return,
        }
        match store::ensure_partitions(&pool, chrono::Utc::now()).await {
            Ok(_) => ready = true,
            Err(e) => tracing::warn!(error = %e, "scan log partitions not checked, retrying"),
        }
    }
}
