//! stats' state (pool, bag-registry client, caller resolver, settings, the consumer's change
//! signal) and which areas a caller sees.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::watch;
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::client::Intercepted;
use tracetrack_common::AppResult;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;

use crate::config::Settings;

pub const SCHEMA: &str = "stats";
pub const SERVICE: &str = "stats";

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    /// bag-registry, for a bag's current area (a dispatcher's history view).
    pub registry: BagRegistryServiceClient<Intercepted>,
    pub settings: Settings,
    /// Reports: billing, the mailer, their settings.
    pub reports: crate::report::Reports,
    pub callers: CallerResolver,
    pub changed: watch::Receiver<u64>,
    pub stop: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Stats(pub Arc<Inner>);

impl Stats {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    /// The business time zone the figures are counted in.
    pub(crate) fn time_zone(&self) -> &str {
        &self.0.settings.business_time_zone
    }

    pub(crate) async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }
}

/// Which areas a caller sees: all, or a dispatcher's own.
pub(crate) fn scope(caller: &Caller) -> AppResult<Option<String>> {
    if caller.user.is_none() && caller.require_service(&["gateway"]).is_ok() {
        return Ok(None);
    }
    let user = caller.user()?;
    Ok(if user.role.is_area_scoped() {
        Some(user.area.clone().unwrap_or_default())
    } else {
        None
    })
}
