//! Build, then run: `Application::build` binds the listeners (port 0 works), prepares the pool,
//! migrates when configured, ensures the scan log's monthly partitions, connects the registry
//! client and starts the live feed's reader; `run_until_stopped` serves until the shutdown
//! future resolves. Tests use the same entry.

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier};
use tracetrack_common::client;
use tracetrack_common::server::ServiceRuntime;
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
    /// Stops the background tasks and ends open WatchScans streams.
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        let pool = runtime.pool.clone();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        // The monthly partitions: now when migrations ran at start-up (the database answered),
        // then periodically; in production (schema from the migrate Job) the first run retries
        // until the database answers.
        let ready = settings.common.database.migrate_on_start;
        if ready {
            store::ensure_partitions(&pool, chrono::Utc::now()).await?;
        }
        tasks.push(tokio::spawn(maintain_partitions(
            pool.clone(),
            Duration::from_secs(settings.partition_check_secs.max(1)),
            ready,
            stop_rx.clone(),
        )));

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
        tasks.push(tokio::spawn(
            Reader {
                redis: settings.common.redis.clone(),
                stream,
                max_age: Duration::from_secs(settings.watch_max_age_secs),
                feed: feed_tx.clone(),
            }
            .run(start, stop_rx.clone()),
        ));

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
            stop: stop_rx,
        }));
        Ok(Self {
            runtime,
            scan,
            stop,
            tasks,
        })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let routes = Routes::new(pb::scan_service_server::ScanServiceServer::new(self.scan));
        let stop = self.stop;
        let result = self
            .runtime
            .serve(routes, &["tracetrack.scan.v1.ScanService"], async {
                shutdown.await;
                // End the live streams now, so draining in-flight RPCs does not wait for them.
                let _ = stop.send(true);
            })
            .await;
        let _ = stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        result
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
