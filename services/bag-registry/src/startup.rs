//! Build, then run (as in auth): listeners, pool, migrations when configured, then the product
//! lines and areas from configuration are written to the database with the SPEC's refusals.

use std::sync::Arc;

use sqlx::migrate::Migrator;
use tonic::service::Routes;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier};
use tracetrack_common::server::ServiceRuntime;
use tracetrack_proto::registry::v1 as pb;

use crate::config::Settings;
use crate::state::{Inner, Registry, SCHEMA, SERVICE};
use crate::store::sync_configuration;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/registry");

pub struct Application {
    runtime: ServiceRuntime,
    registry: Registry,
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let lines = settings.lines()?;
        let areas: Vec<String> = settings
            .areas
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect();
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        tracetrack_common::db::wait_until_ready(&runtime.pool, std::time::Duration::from_secs(60))
            .await?;
        sync_configuration(&runtime.pool, &lines, &areas).await?;
        let verifier = RemoteVerifier::new(&settings.common.auth)?;
        let registry = Registry(Arc::new_cyclic(|inner| Inner {
            pool: runtime.pool.clone(),
            exports: tracetrack_common::export::Limiter::new(
                settings.common.limits.max_concurrent_exports,
            ),
            lines,
            areas,
            callers: CallerResolver::new(Arc::new(verifier)),
            links: tracetrack_common::batch::Batcher::start(inner.clone(), &settings.link_batch),
        }));
        Ok(Self { runtime, registry })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let routes = Routes::new(
            pb::bag_registry_service_server::BagRegistryServiceServer::new(self.registry),
        );
        self.runtime
            .serve(
                routes,
                &["tracetrack.registry.v1.BagRegistryService"],
                shutdown,
            )
            .await
    }
}
