//! scan's state (pool, bag-registry client, caller resolver, live feed, settings) and the
//! idempotency answers of its mutations.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::watch;
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::client::Intercepted;
use tracetrack_common::mutation::Mutations;
use tracetrack_common::AppResult;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;

use crate::config::Settings;
use crate::feed::Feed;

pub const SCHEMA: &str = "scan";
pub const SERVICE: &str = "scan";
/// The idempotency answers of scan's mutations (its events are written with the scan itself).
pub(crate) const MUTATIONS: Mutations = Mutations {
    schema: SCHEMA,
    service: SERVICE,
};

pub type RegistryClient = BagRegistryServiceClient<Intercepted>;

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub callers: CallerResolver,
    /// One shared channel to bag-registry (with scan's service token on every call).
    pub registry: RegistryClient,
    pub feed: Feed,
    pub settings: Settings,
    /// Turns true at shutdown: open WatchScans streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
    /// Records' group commit.
    pub recorder: tracetrack_common::batch::Batcher<Inner>,
}

#[derive(Clone)]
pub struct Scan(pub Arc<Inner>);

impl Scan {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    pub(crate) async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    pub(crate) fn registry(&self) -> RegistryClient {
        self.0.registry.clone()
    }
}
