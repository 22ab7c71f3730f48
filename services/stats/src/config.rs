//! stats settings: the common ones, the business time zone, the streams it consumes.

use serde::Deserialize;
use tracetrack_common::config::CommonSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub common: CommonSettings,
    /// "Today" and the daily figures use this IANA time zone.
    pub business_time_zone: String,
    /// Services whose event streams feed the read models.
    pub sources: Vec<String>,
    pub consumer_batch_size: usize,
    pub consumer_block_ms: u64,
    pub consumer_claim_idle_ms: u64,
    /// Run the consumer in this process.
    pub consumer_enabled: bool,
    /// WatchDashboard re-reads the figures at most this often.
    pub watch_interval_ms: u64,
    /// bag-registry's gRPC endpoint(s), comma-separated (`TRACETRACK_REGISTRY_URL`): a
    /// dispatcher's bag history needs the bag's current area, which stats does not keep.
    pub registry_url: String,
    /// Deadline of every call to bag-registry.
    pub registry_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonSettings::default(),
            business_time_zone: "Asia/Kolkata".into(),
            sources: ["auth", "bag-registry", "scan", "billing"]
                .map(String::from)
                .to_vec(),
            consumer_batch_size: 300,
            consumer_block_ms: 1000,
            consumer_claim_idle_ms: 15_000,
            consumer_enabled: true,
            watch_interval_ms: 300,
            registry_url: "http://127.0.0.1:50052".into(),
            registry_timeout_ms: 3000,
        }
    }
}

pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50055"),
    ("admin_addr", "127.0.0.1:9105"),
];
