//! Billing's settings: the common ones plus where bag-registry is and how the sweeper behaves.

use serde::Deserialize;
use tracetrack_common::config::CommonSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub common: CommonSettings,
    /// bag-registry's gRPC endpoint (`TRACETRACK_REGISTRY_URL`); several replicas may be listed,
    /// comma-separated, and calls are balanced across them.
    pub registry_url: String,
    /// Deadline of every call to bag-registry.
    pub registry_timeout_ms: u64,
    /// How often the sweeper looks for unsettled work (a reservation or detach left pending, a
    /// bill left completing, reopening or deleting by a crash or a failed call).
    pub sweeper_interval_ms: u64,
    /// The sweeper settles only what has been unsettled at least this long, well past the
    /// registry deadline, so it never races a request that is still working.
    pub sweeper_settle_after_ms: u64,
    /// Most rows the sweeper settles per round.
    pub sweeper_batch: i64,
    /// Run the sweeper in this process (safe in every replica: rows are taken with
    /// `FOR UPDATE SKIP LOCKED`).
    pub sweeper_enabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonSettings::default(),
            registry_url: "http://127.0.0.1:50052".into(),
            registry_timeout_ms: 3000,
            sweeper_interval_ms: 2000,
            sweeper_settle_after_ms: 10_000,
            sweeper_batch: 100,
            sweeper_enabled: true,
        }
    }
}

/// Defaults of a local run: fixed ports.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50054"),
    ("admin_addr", "127.0.0.1:9104"),
];
