//! Layered, typed configuration: struct defaults → `config/<env>.yaml` (optional; `TRACETRACK_ENV`,
//! default `local`, in `TRACETRACK_CONFIG_DIR`, default `config`) → environment variables with the
//! `TRACETRACK_` prefix and `__` for nesting (`TRACETRACK_DATABASE__URL`).

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Loads a service's settings. `defaults` are (key, value) pairs applied before the file and
/// the environment, for the service's own ports and names.
pub fn load<T: DeserializeOwned>(defaults: &[(&str, &str)]) -> anyhow::Result<T> {
    let env = std::env::var("TRACETRACK_ENV").unwrap_or_else(|_| "local".into());
    let dir = std::env::var("TRACETRACK_CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let mut builder = config::Config::builder();
    for (k, v) in defaults {
        builder = builder.set_default(*k, *v)?;
    }
    let settings = builder
        .add_source(config::File::with_name(&format!("{dir}/{env}")).required(false))
        .add_source(
            config::Environment::with_prefix("TRACETRACK")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("areas")
                .try_parsing(true),
        )
        .build()?;
    Ok(settings.try_deserialize()?)
}

/// What every service has. Services embed it with `#[serde(flatten)]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CommonSettings {
    /// gRPC listener, `host:port` (port 0 picks a free one).
    pub grpc_addr: String,
    /// Admin listener for `/metrics` and `/healthz`, never the public port.
    pub admin_addr: String,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthClientSettings,
    pub shutdown: ShutdownSettings,
    pub events: EventSettings,
    pub limits: LimitSettings,
    pub upstreams: UpstreamSettings,
    /// TLS of our own gRPC (`tls.grpc`), off by default.
    pub tls: TlsSettings,
}

/// TLS of our own traffic (`tracetrack_base::app_tls`), one section for every process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// When set, every service serves gRPC over TLS only, and every call to one of our services
    /// (the gateway's included) is made over TLS, `http://` upstream URLs dialled as `https://`,
    /// the server's certificate verified against `ca_file` and the host name the URL names.
    /// The files are read again when they change (a rotated Secret), without a restart.
    pub grpc: Option<GrpcTlsSettings>,
}

/// `tls.grpc` (`TRACETRACK_TLS__GRPC__CERT_FILE`, `…__KEY_FILE`, `…__CA_FILE`).
#[derive(Debug, Clone, Deserialize)]
pub struct GrpcTlsSettings {
    /// PEM certificate chain the service presents (leaf first); it must name every host name
    /// callers dial (the Service's names). Not needed by the gateway, which serves no gRPC.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<String>,
    /// PEM CA certificate(s) that sign our services' certificates; calls trust only these.
    pub ca_file: String,
}

/// A certificate and its key, in PEM files (the gateway's `http.tls`).
#[derive(Debug, Clone, Deserialize)]
pub struct CertKeyFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// How calls to our other services find their replicas (`tracetrack_base::client`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UpstreamSettings {
    /// An upstream URL whose host is a name (a headless Service's) is resolved again this often,
    /// and after a call fails in transport, and calls are balanced over every address it
    /// returns: a scale-out's new pods get calls within one period, removed ones are drained.
    /// 0: resolved once per connection, as a plain channel does.
    pub resolve_interval_ms: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            resolve_interval_ms: crate::client::DEFAULT_RESOLVE_INTERVAL_MS,
        }
    }
}

/// Overload protection (`tracetrack_common::shed`): calls beyond `max_concurrent_rpcs` are refused at once
/// with `overloaded`; each call gets at most `request_timeout_ms` (0: none).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub max_concurrent_rpcs: usize,
    pub request_timeout_ms: u64,
    /// Streaming exports running at once per replica (each holds a connection and a snapshot
    /// for its whole length); more are refused with `overloaded`, so exports cannot take the
    /// connections the scan path needs.
    pub max_concurrent_exports: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_concurrent_rpcs: 512,
            request_timeout_ms: 15_000,
            max_concurrent_exports: 2,
        }
    }
}

impl Default for CommonSettings {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            database: DatabaseSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
            auth: AuthClientSettings::default(),
            shutdown: ShutdownSettings::default(),
            events: EventSettings::default(),
            limits: LimitSettings::default(),
            upstreams: UpstreamSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    /// Per-statement limit set on every connection.
    pub statement_timeout_ms: u64,
    /// Run migrations at start-up (local runs, tests); production runs the `migrate` subcommand.
    pub migrate_on_start: bool,
    /// TLS: `disable`, `prefer` (TLS when the server offers it, unverified), `require`
    /// (encrypted, unverified), `verify-ca` (the certificate chains to a trusted CA) or
    /// `verify-full` (and names the URL's host). Unset: the URL's `sslmode`, default `prefer`.
    pub ssl_mode: Option<String>,
    /// A PEM file of CA certificates (RDS: the region's bundle) trusted besides the webpki
    /// roots; read when the pool is built. Needs `require`, `verify-ca` or `verify-full`
    /// (`require` then verifies the chain, as libpq does).
    pub ca_file: Option<String>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:55432/tracetrack"),
            max_connections: 16,
            min_connections: 0,
            // Well inside a request's budget (the gateway gives each upstream call 5 s, and a
            // scan waits for a connection in scan and in bag-registry): a request that cannot get
            // a connection within a second is shed as `overloaded` rather than left to run past
            // its caller's deadline.
            acquire_timeout_ms: 1000,
            statement_timeout_ms: 10_000,
            migrate_on_start: false,
            ssl_mode: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// `redis://…`, or `rediss://…` for TLS (the certificate is always verified, host name
    /// included, against the webpki roots or `ca_file`).
    pub url: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// A PEM file of the CA certificates that sign the server's certificate, trusted instead
    /// of the webpki roots; only with a `rediss://` URL.
    pub ca_file: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:56379".into(),
            response_timeout_ms: 2000,
            connect_timeout_ms: 1000,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `RUST_LOG`-style filter.
    pub log_filter: String,
    /// One JSON object per line instead of human-readable logs.
    pub log_json: bool,
    /// OTLP/gRPC endpoint (e.g. `http://otel-collector:4317`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: "info,sqlx=warn,h2=warn,tower=warn,hyper=warn".into(),
            log_json: false,
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthClientSettings {
    /// The auth service's gRPC endpoint.
    pub url: String,
    /// This service's own service-account token, sent as `x-service-token` on every call.
    pub service_token: Option<SecretString>,
    /// How long a verified token is trusted locally (capped at 30 s).
    pub cache_ttl_secs: u64,
    /// Deadline of calls to auth.
    pub timeout_ms: u64,
}

impl Default for AuthClientSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:50051".into(),
            service_token: None,
            cache_ttl_secs: 30,
            timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ShutdownSettings {
    /// After SIGTERM, report NOT_SERVING this long before refusing new RPCs (lets load balancers
    /// notice).
    pub grace_ms: u64,
    /// Longest wait for in-flight RPCs to finish.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_ms: 0,
            drain_timeout_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// Prefix of every Redis key (streams, rate limits); tests give each run its own.
    pub key_prefix: String,
    /// How often the relay looks for unpublished rows.
    pub poll_interval_ms: u64,
    /// Woken by a commit, the relay publishes no sooner than this long after its previous
    /// publish began, so the commits in between share one publish (one statement, one pipeline)
    /// instead of one each. 0: at once.
    pub publish_gap_ms: u64,
    pub batch_size: i64,
    /// Approximate cap of each stream (XADD MAXLEN ~).
    pub stream_max_len: usize,
    /// Stream entries of this last window are kept (not trimmed) for re-publication, and rows
    /// published before publish sequences existed are published again if this recent.
    pub republish_window_secs: u64,
    /// Published outbox rows are deleted after this long.
    pub retention_secs: u64,
    /// Run the relay in this process (one leader per service is elected among replicas).
    pub relay_enabled: bool,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            key_prefix: "tracetrack".into(),
            poll_interval_ms: 100,
            publish_gap_ms: 10,
            batch_size: 500,
            stream_max_len: 1_000_000,
            republish_window_secs: 24 * 3600,
            retention_secs: 7 * 24 * 3600,
            relay_enabled: true,
        }
    }
}
