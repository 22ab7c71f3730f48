//! stats settings: the common ones, the business time zone, the streams it consumes, billing
//! (the reports' bill figures), SMTP and the end-of-day report.

use serde::Deserialize;
use tracetrack_common::config::CommonSettings;
use tracetrack_common::mail::SmtpSettings;

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
    /// billing's gRPC endpoint(s), comma-separated (`TRACETRACK_BILLING_URL`): the reports' bill
    /// figures come from its ListBills and GetBill.
    pub billing_url: String,
    pub billing_timeout_ms: u64,
    /// Where users open the web client (`TRACETRACK_PUBLIC_BASE_URL`); links in mail are made
    /// from it, never from a request's Host header.
    pub public_base_url: String,
    /// The SMTP server (`TRACETRACK_SMTP__*`); no host: reports are only previewed.
    pub smtp: SmtpSettings,
    /// The end-of-day report (`TRACETRACK_REPORTS__*`).
    pub reports: ReportSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReportSettings {
    /// Run the daily scheduler in this process (every replica may: one sends).
    pub enabled: bool,
    /// The local cut-off ("HH:MM" or "HH:MM:SS", business time zone): the report of day D covers
    /// [cut-off of D-1, cut-off of D) and is sent once the cut-off of D has passed.
    pub send_at: String,
    /// Recipients, comma-separated.
    pub recipients: String,
    /// The e-mail's language: "en" (default) or "hi".
    pub lang: String,
    /// How often each replica looks for a due report.
    pub tick_ms: u64,
    /// A sender holds a day for this long; a crashed sender's day is taken over after it.
    pub lease_ms: u64,
    /// Retry after a failed send: base × 2^(attempts-1), at most `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The domain of the Message-IDs (`eod-<day>@<domain>`).
    pub message_id_domain: String,
    /// Test hook: the scheduler's clock is the real one shifted by this much (ms, may be
    /// negative), so a test can stand just after a cut-off without waiting for it.
    pub clock_offset_ms: i64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            send_at: "22:00".into(),
            recipients: String::new(),
            lang: "en".into(),
            tick_ms: 30_000,
            lease_ms: 120_000,
            retry_base_ms: 30_000,
            retry_max_ms: 1_800_000,
            message_id_domain: "tracetrack.local".into(),
            clock_offset_ms: 0,
        }
    }
}

impl ReportSettings {
    pub fn recipients(&self) -> Vec<String> {
        self.recipients
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect()
    }
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
            billing_url: "http://127.0.0.1:50054".into(),
            billing_timeout_ms: 10_000,
            public_base_url: "http://127.0.0.1:8080".into(),
            smtp: SmtpSettings::default(),
            reports: ReportSettings::default(),
        }
    }
}

pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50055"),
    ("admin_addr", "127.0.0.1:9105"),
];
