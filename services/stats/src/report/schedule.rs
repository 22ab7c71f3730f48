//! The end-of-day report, sent once per business day across every stats replica.
//!
//! Each replica, every `tick_ms`: works out the last day whose cut-off has passed (on the
//! injectable clock), inserts that day's row (`INSERT … ON CONFLICT DO NOTHING`: one row per day
//! whoever gets there first), then tries to take the day's lease (a conditional UPDATE: one
//! holder at a time, only while the day is pending or failed and its retry time has come). The
//! holder builds the report, skips a day without activity, sends it with the day's deterministic
//! Message-ID, and records the result; a failed send is retried with exponential backoff.
//!
//! The one window left: a crash (or a lost connection to Postgres) after the SMTP server accepted
//! the message and before the `sent` row committed. The lease then runs out and another replica
//! sends the report again, with the same Message-ID, so a receiving server or client that drops
//! duplicates by Message-ID shows it once.

use chrono::NaiveDate;
use tokio::sync::watch;
use tracetrack_common::mail::{Attachment, Mail, MailError};
use tracetrack_common::AppResult;
use tracetrack_proto::stats::v1 as pb;

use super::{collect, render};
use crate::state::Stats;
use crate::store;

/// Runs until `stop`; never fails (each tick's error is logged and the next tick tries again).
pub async fn run(stats: Stats, mut stop: watch::Receiver<bool>) {
    let reports = &stats.0.reports;
    if reports.mailer.is_none() || reports.settings.recipients().is_empty() {
        tracing::info!("no SMTP server or no recipients: end-of-day reports are only previewed");
        return;
    }
    let every = std::time::Duration::from_millis(reports.settings.tick_ms.max(50));
    loop {
        if let Err(e) = tick(&stats).await {
            tracing::warn!(error = %e, "end-of-day report: tick failed");
        }
        metrics::counter!("reports_ticks_total").increment(1);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One look: claim the due day, and send it if this replica gets its lease.
pub async fn tick(stats: &Stats) -> AppResult<()> {
    let reports = &stats.0.reports;
    let now = reports.now();
    let day = store::due_day(
        stats.pool(),
        now,
        &reports.settings.send_at,
        stats.time_zone(),
    )
    .await?;
    let (from, to) = collect::window(stats, day).await?;
    store::claim_day(stats.pool(), day, from, to, &reports.message_id(day)).await?;
    // The day before too, in case its last retry is still due (a failed send at 23:59).
    for d in [day.pred_opt(), Some(day)].into_iter().flatten() {
        if let Some(row) = store::lease_day(
            stats.pool(),
            d,
            &reports.holder,
            reports.settings.lease_ms as i64,
        )
        .await?
        {
            deliver(stats, d, &row.message_id, row.attempts).await?;
        }
    }
    Ok(())
}

/// Builds, sends and records one leased day.
async fn deliver(stats: &Stats, day: NaiveDate, message_id: &str, attempts: i32) -> AppResult<()> {
    let reports = &stats.0.reports;
    let recipients = reports.settings.recipients();
    let holder = &reports.holder;
    let retry = || {
        let exp = attempts.clamp(1, 20) as u32 - 1;
        (reports
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exp.min(30)))
        .min(reports.settings.retry_max_ms) as i64
    };
    let report = match collect::daily(stats, None, day).await {
        Ok(r) => r,
        Err(e) => {
            store::record_result(
                stats.pool(),
                day,
                holder,
                "failed",
                "",
                &e.to_string(),
                retry(),
            )
            .await?;
            return Err(e);
        }
    };
    if !report.has_activity {
        store::record_result(stats.pool(), day, holder, "skipped", "", "", 0).await?;
        tracing::info!(%day, "end-of-day report skipped: no activity");
        return Ok(());
    }
    let joined = recipients.join(", ");
    match send(stats, &report, &recipients, message_id).await {
        Ok(()) => {
            let recorded =
                store::record_result(stats.pool(), day, holder, "sent", &joined, "", 0).await?;
            metrics::counter!("reports_sent_total").increment(1);
            tracing::info!(%day, message_id, recorded, "end-of-day report sent");
        }
        Err(e) => {
            let permanent = matches!(
                e,
                MailError::Smtp {
                    permanent: true,
                    ..
                } | MailError::Invalid(_)
            );
            metrics::counter!("reports_send_failures_total").increment(1);
            tracing::warn!(%day, error = %e, permanent, attempts, "end-of-day report not sent; will retry");
            store::record_result(
                stats.pool(),
                day,
                holder,
                "failed",
                &joined,
                &e.to_string(),
                retry(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Sends `report` (HTML body, text alternative, XLSX attached) under `message_id`.
pub async fn send(
    stats: &Stats,
    report: &pb::DailyReport,
    recipients: &[String],
    message_id: &str,
) -> Result<(), MailError> {
    let reports = &stats.0.reports;
    let Some(mailer) = reports.mailer.as_ref() else {
        return Err(MailError::Invalid("no SMTP server is configured".into()));
    };
    let link = tracetrack_common::mail::link(
        &reports.public_base_url,
        &format!("/#/reports?day={}", report.day),
    );
    let xlsx = render::daily_xlsx(report).map_err(|e| MailError::Invalid(e.to_string()))?;
    let totals = report.totals.unwrap_or_default();
    let mail = Mail {
        to: recipients.to_vec(),
        subject: format!(
            "TraceTrack end-of-day report {}: {} bills, {} scans",
            report.day, totals.bills, totals.scans
        ),
        text: render::daily_text(report, &link),
        html: render::daily_html(report, super::lang(&reports.settings.lang), &link),
        attachments: vec![Attachment {
            filename: format!("end-of-day-{}.xlsx", report.day),
            content_type: render::XLSX.into(),
            body: xlsx,
        }],
        message_id: message_id.to_owned(),
    };
    mailer.send(&mail).await
}
