//! Gateway settings: listeners, upstream services, cookies, rate limits, live streams.

use serde::Deserialize;
use tracetrack_base::config::{
    AuthClientSettings, CertKeyFiles, RedisSettings, ShutdownSettings, TelemetrySettings,
    TlsSettings, UpstreamSettings,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Public HTTP listener.
    pub http_addr: String,
    /// Admin listener (`/metrics`), never the public port.
    pub admin_addr: String,
    pub telemetry: TelemetrySettings,
    pub redis: RedisSettings,
    /// auth's URL and the gateway's own service token.
    pub auth: AuthClientSettings,
    /// Upstreams; each may list several endpoints, comma-separated, balanced per request.
    pub registry_url: String,
    pub scan_url: String,
    pub stats_url: String,
    pub billing_url: String,
    /// Deadline of every upstream call.
    pub upstream_timeout_ms: u64,
    /// How often upstream names are resolved again (`TRACETRACK_UPSTREAMS__RESOLVE_INTERVAL_MS`,
    /// as in the services; README § Deploy, "gRPC load balancing").
    pub upstreams: UpstreamSettings,
    /// The public listener's own TLS (`http.tls`), for an install without a proxy in front.
    pub http: HttpSettings,
    /// TLS of the calls to our services (`tls.grpc`: its `ca_file`), as in the services.
    pub tls: TlsSettings,
    /// Mark the session cookie `Secure` (set when served over TLS, directly or behind a proxy).
    pub cookie_secure: bool,
    /// The gateway's immediate peer is a proxy that appends the address it saw to
    /// `X-Forwarded-For` (an ingress controller or load balancer). The client is then the
    /// right-most address of that header that is not a trusted proxy (`trusted_proxies`); the
    /// entries left of it are the client's own words and never believed.
    pub trust_forwarded_for: bool,
    /// Further proxies in front of the gateway, as CIDRs or addresses, comma-separated
    /// (`10.0.0.0/8,192.168.1.7`): a peer in these is trusted too, and these are skipped when
    /// walking `X-Forwarded-For` from the right.
    pub trusted_proxies: String,
    pub rate_limits: RateLimits,
    /// SSE heartbeat interval.
    pub sse_heartbeat_secs: u64,
    /// How often an open live stream re-checks its viewer's session, role and area.
    pub sse_recheck_secs: u64,
    /// Live streams one user may hold open at once (tabs, phones), and all of them together.
    pub sse_max_per_user: usize,
    pub sse_max_total: usize,
    /// `GET /api/v1/stats/dashboard` answers from the snapshot the one upstream WatchDashboard
    /// stream keeps while that stream is connected and the snapshot arrived less than this long
    /// ago; otherwise it asks stats. 0: always ask stats.
    pub dashboard_snapshot_max_age_ms: u64,
    /// Requests handled at once; past it a request is refused at once with 429 `overloaded`
    /// (with `Retry-After`) instead of queueing without bound.
    pub max_concurrent_requests: usize,
    /// Longest a request may take before it is answered 503 `deadline_exceeded` (exports and
    /// imports, which run as long as they need, excepted).
    pub request_timeout_ms: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest label workbook `POST /api/v1/imports/labels` accepts (that route only).
    pub max_import_bytes: usize,
    /// Deadline of an import's ImportBags call (a large workbook takes minutes).
    pub import_timeout_secs: u64,
    /// Prefix of the gateway's Redis keys (rate-limit windows).
    pub redis_key_prefix: String,
    /// After SIGTERM: `/readyz` answers 503 and live streams end for `grace_ms` while new
    /// requests are still served (so load balancers stop sending), then the listener closes and
    /// in-flight requests get at most `drain_timeout_ms`.
    pub shutdown: ShutdownSettings,
    /// Who issues the dispatch documents: printed at their head.
    pub organisation: Organisation,
}

/// `http.tls`: when set, the public listener serves HTTPS only (HTTP/2 and HTTP/1.1 by ALPN)
/// with this certificate and key (`TRACETRACK_HTTP__TLS__CERT_FILE`, `…__KEY_FILE`), read again
/// when the files change. Set `cookie_secure` with it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub tls: Option<CertKeyFiles>,
}

/// The company on the dispatch document (`GET /api/v1/bills/{id}/document`), in one block:
///
/// ```yaml
/// organisation:
///   name: "Shree Agro Inputs Pvt. Ltd."
///   address: "Plot 14, MIDC, Nagpur 440016"
///   tax_id: "27AAACS1234F1Z5"            # GSTIN or a like id; printed as it is
///   depots: { nagpur: "Nagpur C&F", lucknow: "Lucknow depot" }   # area code → depot name
///   time_zone: "Asia/Kolkata"            # dispatch date and time are printed in it
///   public_base_url: "https://tt.example.in"   # if set, the QR code opens the bill's page
/// ```
///
/// The depot printed is the one of the area most of the bill's parents are in (its code when the
/// area has no depot name). Every field may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Organisation {
    pub name: String,
    pub address: String,
    pub tax_id: String,
    pub depots: std::collections::BTreeMap<String, String>,
    /// The business time zone (IANA name); an unknown name stops the gateway at start.
    #[serde(deserialize_with = "time_zone")]
    pub time_zone: chrono_tz::Tz,
    /// The web client's address as users reach it (no trailing slash). When set, the bill's QR
    /// code is `{public_base_url}/#/bills/{bill_id}` (a phone's camera opens the bill); when
    /// empty it is the bill id alone (the web client's search box and scan station find it).
    pub public_base_url: String,
}

impl Default for Organisation {
    fn default() -> Self {
        Self {
            name: "TraceTrack".into(),
            address: String::new(),
            tax_id: String::new(),
            depots: Default::default(),
            time_zone: chrono_tz::Asia::Kolkata,
            public_base_url: String::new(),
        }
    }
}

fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("unknown time zone {s:?}")))
}

/// Limits held in Redis, so they are shared by every gateway replica. Windows are one minute
/// (logins) and one second (per user).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub enabled: bool,
    /// Login attempts per account name per minute.
    pub login_per_account_per_minute: u64,
    /// Login attempts per client address per minute: a warehouse NAT with 50 workers logging in at
    /// shift start stays well under it.
    pub login_per_ip_per_minute: u64,
    /// Requests per logged-in user per second (a scanner firing 5 scans/s is far below).
    pub user_per_second: u64,
    /// Failed token checks (a bearer token or cookie auth does not know) per client address per
    /// minute; past it that address gets 429 before its tokens are checked again. Valid tokens
    /// are cached and never counted, so a warehouse behind one NAT is not throttled by them.
    pub bad_tokens_per_ip_per_minute: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_account_per_minute: 20,
            login_per_ip_per_minute: 600,
            user_per_second: 30,
            bad_tokens_per_ip_per_minute: 60,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8080".into(),
            admin_addr: "127.0.0.1:9100".into(),
            telemetry: TelemetrySettings::default(),
            redis: RedisSettings::default(),
            auth: AuthClientSettings::default(),
            registry_url: "http://127.0.0.1:50052".into(),
            scan_url: "http://127.0.0.1:50053".into(),
            stats_url: "http://127.0.0.1:50055".into(),
            billing_url: "http://127.0.0.1:50054".into(),
            upstream_timeout_ms: 5000,
            upstreams: UpstreamSettings::default(),
            http: HttpSettings::default(),
            tls: TlsSettings::default(),
            cookie_secure: false,
            trust_forwarded_for: false,
            trusted_proxies: String::new(),
            rate_limits: RateLimits::default(),
            sse_heartbeat_secs: 15,
            sse_recheck_secs: 30,
            sse_max_per_user: 8,
            sse_max_total: 4096,
            dashboard_snapshot_max_age_ms: 2000,
            max_concurrent_requests: 1024,
            request_timeout_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 50 * 1024 * 1024,
            import_timeout_secs: 600,
            redis_key_prefix: "tracetrack".into(),
            shutdown: ShutdownSettings::default(),
            organisation: Organisation::default(),
        }
    }
}

pub const DEFAULTS: &[(&str, &str)] = &[];
