//! Reports: the bill summary over a range of business days and the end-of-day report.
//!
//! Bill figures come from billing (`ListBills`, whose child counts and weights billing reads from
//! bag-registry; `GetBill` for each bill's parents), never from a copy in stats (SPEC §2); scans
//! come from stats' own event store. [`collect`] gathers the figures, [`render`] turns them into
//! HTML (maud: escaped by construction), CSV and XLSX, and [`schedule`] sends each day's report
//! once across replicas.

pub mod collect;
pub mod render;
pub mod schedule;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tracetrack_common::client::{Intercepted, Outgoing};
use tracetrack_common::mail::Mailer;
use tracetrack_common::{AppError, AppResult};
use tracetrack_proto::billing::v1::billing_service_client::BillingServiceClient;

use crate::config::{ReportSettings, Settings};

/// What the reports need besides the pool: billing, the mailer (absent without SMTP) and their
/// settings.
pub struct Reports {
    pub billing: BillingServiceClient<Intercepted>,
    pub mailer: Option<Mailer>,
    pub settings: ReportSettings,
    pub public_base_url: String,
    /// This process, as the holder of a day's lease.
    pub holder: String,
}

impl Reports {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.billing_timeout_ms);
        let billing = BillingServiceClient::with_interceptor(
            tracetrack_common::client::balanced_channel(&settings.billing_url, timeout)?,
            Outgoing::new(
                settings
                    .common
                    .auth
                    .service_token
                    .as_ref()
                    .map(secrecy::ExposeSecret::expose_secret),
            )?
            .with_deadline(timeout),
        );
        let mailer = Mailer::new(&settings.smtp).map_err(|e| anyhow::anyhow!("smtp: {e}"))?;
        valid_time(&settings.reports.send_at)
            .map_err(|_| anyhow::anyhow!("reports.send_at must be HH:MM or HH:MM:SS"))?;
        Ok(Self {
            billing,
            mailer,
            settings: settings.reports.clone(),
            public_base_url: settings.public_base_url.clone(),
            holder: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
        })
    }

    /// The scheduler's clock: the real one, shifted by the test hook.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.settings.clock_offset_ms)
    }

    /// The deterministic Message-ID of a day's scheduled report.
    pub fn message_id(&self, day: NaiveDate) -> String {
        format!("eod-{day}@{}", self.settings.message_id_domain)
    }
}

/// A business day, `YYYY-MM-DD`.
pub fn parse_day(s: &str, what: &str) -> AppResult<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| AppError::invalid(format!("{what} must be a date YYYY-MM-DD")))
}

fn valid_time(s: &str) -> Result<(), chrono::ParseError> {
    chrono::NaiveTime::parse_from_str(s, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M"))
        .map(|_| ())
}

/// "hi" or "en".
pub fn lang(s: &str) -> &'static str {
    if s.eq_ignore_ascii_case("hi") {
        "hi"
    } else {
        "en"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_parse_strictly() {
        assert!(parse_day("2026-12-05", "day").is_ok());
        assert!(parse_day("05/12/2026", "day").is_err());
        assert!(valid_time("22:00").is_ok());
        assert!(valid_time("21:59:30").is_ok());
        assert!(valid_time("25:00").is_err());
    }
}
