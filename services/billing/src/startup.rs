//! Build, then run: `Application::build` binds the listeners (port 0 works), prepares the pool,
//! migrates when configured, connects the registry client and starts the sweeper;
//! `run_until_stopped` serves until the shutdown future resolves. Tests use the same entry.

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use tonic::service::Routes;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier};
use tracetrack_common::client;
use tracetrack_common::server::{Background, ServiceRuntime};
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;

use crate::config::Settings;
use crate::state::{Billing, Inner, SCHEMA, SERVICE};

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/billing");

pub struct Application {
    runtime: ServiceRuntime,
    billing: Billing,
    /// The sweeper.
    background: Background,
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        let callers = CallerResolver::new(Arc::new(RemoteVerifier::new(&settings.common.auth)?));
        // One shared channel; `registry_url` may list several replicas, comma-separated.
        let registry = BagRegistryServiceClient::new(client::upstream(
            &settings.registry_url,
            settings.registry_timeout_ms,
            &settings.common.auth,
        )?);
        let mut background = Background::default();
        let every = Duration::from_millis(settings.sweeper_interval_ms.max(10));
        let sweeper_enabled = settings.sweeper_enabled;
        let billing = Billing(Arc::new(Inner {
            pool: runtime.pool.clone(),
            exports: tracetrack_common::export::Limiter::new(
                settings.common.limits.max_concurrent_exports,
            ),
            callers,
            registry,
            settings,
        }));
        if sweeper_enabled {
            background.spawn(crate::sweeper::run(
                billing.clone(),
                every,
                background.stopped(),
            ));
        }
        Ok(Self {
            runtime,
            billing,
            background,
        })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let routes = Routes::new(pb::billing_service_server::BillingServiceServer::new(
            self.billing,
        ));
        self.background
            .serve(
                self.runtime,
                routes,
                &["tracetrack.billing.v1.BillingService"],
                shutdown,
                Duration::from_secs(5),
            )
            .await
    }
}
