//! Scan's settings: the common ones plus where bag-registry is and how the live feed behaves.

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
    /// Events the live feed buffers per subscriber before a slow one starts skipping.
    pub watch_buffer: usize,
    /// The live feed drops events older than this (a Redis that restarted empty makes the
    /// outbox relay re-publish a whole window; those are history, not live scans) and
    /// remembers delivered event ids this long to drop re-published duplicates.
    pub watch_max_age_secs: u64,
    /// How often an open WatchScans stream re-checks its caller's session (logout,
    /// deactivation, role or area changes end or re-filter the stream).
    pub watch_recheck_secs: u64,
    /// How often the monthly partitions of the scan log are ensured.
    pub partition_check_secs: u64,
    /// Group commit of recorded scans (issue 18): concurrent records share one statement and
    /// one commit.
    pub record_batch: tracetrack_common::batch::BatchSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonSettings::default(),
            registry_url: "http://127.0.0.1:50052".into(),
            registry_timeout_ms: 3000,
            watch_buffer: 1024,
            watch_max_age_secs: 120,
            watch_recheck_secs: 30,
            partition_check_secs: 3600,
            record_batch: Default::default(),
        }
    }
}

/// Defaults of a local run: fixed ports.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50053"),
    ("admin_addr", "127.0.0.1:9103"),
];
