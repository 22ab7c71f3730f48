//! Shared state: one channel per upstream (multiplexed, lazily connected, with deadlines), the
//! token verifier (auth, cached ≤ 30 s), Redis for rate limits, and the live-scan fan-out.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::{broadcast, OnceCell};
use tracetrack_base::caller::RemoteVerifier;
use tracetrack_base::client::{self, Intercepted, Outgoing};
use tracetrack_proto::auth::v1::auth_service_client::AuthServiceClient;
use tracetrack_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use tracetrack_proto::billing::v1::billing_service_client::BillingServiceClient;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient;
use tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient;
use tracetrack_proto::stats::v1::Dashboard;

use crate::config::Settings;

pub struct Inner {
    pub settings: Settings,
    /// Who may say the client's address (`X-Forwarded-For`).
    pub proxies: crate::ctx::TrustedProxies,
    pub auth: AuthServiceClient<Intercepted>,
    pub users: UserAdminServiceClient<Intercepted>,
    pub registry: BagRegistryServiceClient<Intercepted>,
    /// bag-registry for label imports: a channel whose deadline is `import_timeout_secs` (a
    /// client stream is answered only when the whole workbook is written).
    pub registry_import: BagRegistryServiceClient<Intercepted>,
    pub scan: ScanServiceClient<Intercepted>,
    pub stats: StatsServiceClient<Intercepted>,
    pub billing: BillingServiceClient<Intercepted>,
    /// billing for bill workbook imports (AttachParents of up to 500 parents): deadline
    /// `import_timeout_secs`.
    pub billing_import: BillingServiceClient<Intercepted>,
    pub verifier: RemoteVerifier,
    redis: OnceCell<redis::aio::ConnectionManager>,
    /// Every scan, from the one upstream WatchScans stream this gateway holds.
    pub scans_live: broadcast::Sender<Arc<crate::routes::scans::LiveScan>>,
    /// The circuit in front of Redis and the per-replica rate-limit counters used while open.
    pub limits: crate::ratelimit::Limits,
    /// Open live streams, per user and in all (caps).
    pub streams: crate::live::Streams,
    /// Requests being handled now (`max_concurrent_requests`; past it: 429 `overloaded`).
    pub requests: Arc<tokio::sync::Semaphore>,
    /// The latest all-areas dashboard from the one upstream WatchDashboard stream.
    pub dashboard_live: tokio::sync::watch::Sender<Option<Arc<Dashboard>>>,
    /// The same dashboard with the moment it arrived, while that stream is connected (None
    /// otherwise): what `GET /api/v1/stats/dashboard` answers from while it is fresh.
    pub dashboard_memory: std::sync::RwLock<Option<(std::time::Instant, Arc<Dashboard>)>>,
    /// True once shutdown has begun: `/readyz` answers 503 and live streams end (browsers
    /// reconnect to another replica).
    pub stopping: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// Resolves once shutdown has begun (see [`Inner::stopping`]).
pub async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

impl AppState {
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.upstream_timeout_ms);
        client::set_resolve_interval(Duration::from_millis(
            settings.upstreams.resolve_interval_ms,
        ));
        tracetrack_base::app_tls::set_client_tls_from(&settings.tls)?;
        let token = settings
            .auth
            .service_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let outgoing = Outgoing::new(token.as_deref())?.with_deadline(timeout);
        let auth_channel = client::balanced_channel(&settings.auth.url, timeout)?;
        let registry = client::balanced_channel(&settings.registry_url, timeout)?;
        let registry_import = client::balanced_channel(
            &settings.registry_url,
            Duration::from_secs(settings.import_timeout_secs.max(1)),
        )?;
        let scan = client::balanced_channel(&settings.scan_url, timeout)?;
        let stats = client::balanced_channel(&settings.stats_url, timeout)?;
        let billing = client::balanced_channel(&settings.billing_url, timeout)?;
        let billing_import = client::balanced_channel(
            &settings.billing_url,
            Duration::from_secs(settings.import_timeout_secs.max(1)),
        )?;
        let (scans_live, _) = broadcast::channel(4096);
        let proxies = crate::ctx::TrustedProxies::parse(
            settings.trust_forwarded_for,
            &settings.trusted_proxies,
        )?;
        Ok(Self(Arc::new(Inner {
            proxies,
            auth: AuthServiceClient::with_interceptor(auth_channel.clone(), outgoing.clone()),
            users: UserAdminServiceClient::with_interceptor(auth_channel, outgoing.clone()),
            registry: BagRegistryServiceClient::with_interceptor(registry, outgoing.clone()),
            registry_import: BagRegistryServiceClient::with_interceptor(
                registry_import,
                outgoing
                    .clone()
                    .with_deadline(Duration::from_secs(settings.import_timeout_secs.max(1))),
            ),
            scan: ScanServiceClient::with_interceptor(scan, outgoing.clone()),
            stats: StatsServiceClient::with_interceptor(stats, outgoing.clone()),
            billing_import: BillingServiceClient::with_interceptor(
                billing_import,
                outgoing
                    .clone()
                    .with_deadline(Duration::from_secs(settings.import_timeout_secs.max(1))),
            ),
            billing: BillingServiceClient::with_interceptor(billing, outgoing),
            verifier: RemoteVerifier::new(&settings.auth)?,
            redis: OnceCell::new(),
            scans_live,
            streams: crate::live::Streams::default(),
            limits: crate::ratelimit::Limits::default(),
            requests: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_requests.max(1),
            )),
            dashboard_live: tokio::sync::watch::channel(None).0,
            dashboard_memory: std::sync::RwLock::new(None),
            stopping: tokio::sync::watch::channel(false).0,
            settings,
        })))
    }

    /// Redis, connected on first use; None while it is down (callers fail open).
    pub async fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        if let Some(c) = self.0.redis.get() {
            return Some(c.clone());
        }
        match tracetrack_base::redis::connect(&self.0.settings.redis).await {
            Ok(c) => Some(self.0.redis.get_or_init(|| async { c }).await.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable");
                None
            }
        }
    }
}
