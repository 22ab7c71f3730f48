//! GetBillSummary, PreviewDailyReport and SendDailyReport: admin and biller (SPEC's role table).

use tonic::Request;
use tracetrack_common::{time, AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::stats::v1 as pb;

use crate::report::{self, collect, render, schedule};
use crate::state::Stats;
use crate::store;

const REPORTERS: &[Role] = &[Role::Admin, Role::Biller];

impl Stats {
    pub(crate) async fn get_bill_summary(
        &self,
        req: Request<pb::GetBillSummaryRequest>,
    ) -> AppResult<pb::GetBillSummaryResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(REPORTERS)?;
        let r = req.get_ref();
        let from = report::parse_day(&r.from_day, "from_day")?;
        let to = report::parse_day(&r.to_day, "to_day")?;
        let mut summary = collect::summary(self, caller.user_token.as_deref(), from, to).await?;
        let name = format!("bill-summary-{from}-{to}");
        summary.document = match pb::ReportFormat::try_from(r.format) {
            Ok(pb::ReportFormat::Html) => Some(pb::ReportDocument {
                content_type: "text/html; charset=utf-8".into(),
                filename: format!("{name}.html"),
                body: render::summary_html(&summary, report::lang(&r.lang)).into_bytes(),
            }),
            Ok(pb::ReportFormat::Csv) => Some(pb::ReportDocument {
                content_type: "text/csv; charset=utf-8".into(),
                filename: format!("{name}.csv"),
                body: render::summary_csv(&summary)?,
            }),
            Ok(pb::ReportFormat::Xlsx) => Some(pb::ReportDocument {
                content_type: render::XLSX.into(),
                filename: format!("{name}.xlsx"),
                body: render::summary_xlsx(&summary)?,
            }),
            Ok(pb::ReportFormat::Unspecified) => None,
            Err(_) => return Err(AppError::invalid("unknown report format")),
        };
        Ok(summary)
    }

    /// The day asked for, or the last one whose cut-off has passed.
    async fn report_day(&self, day: &str) -> AppResult<chrono::NaiveDate> {
        if day.trim().is_empty() {
            let r = &self.0.reports;
            store::due_day(self.pool(), r.now(), &r.settings.send_at, self.time_zone()).await
        } else {
            report::parse_day(day, "day")
        }
    }

    pub(crate) async fn preview_daily_report(
        &self,
        req: Request<pb::PreviewDailyReportRequest>,
    ) -> AppResult<pb::DailyReport> {
        let caller = self.caller(&req).await?;
        caller.require_role(REPORTERS)?;
        let r = req.get_ref();
        let day = self.report_day(&r.day).await?;
        let mut report = collect::daily(self, caller.user_token.as_deref(), day).await?;
        let link = tracetrack_common::mail::link(
            &self.0.reports.public_base_url,
            &format!("/#/reports?day={day}"),
        );
        report.html = render::daily_html(&report, report::lang(&r.lang), &link);
        if r.with_xlsx {
            report.xlsx = Some(pb::ReportDocument {
                content_type: render::XLSX.into(),
                filename: format!("end-of-day-{day}.xlsx"),
                body: render::daily_xlsx(&report)?,
            });
        }
        report.delivery =
            store::daily_report(self.pool(), day)
                .await?
                .map(|d| pb::ReportDelivery {
                    status: d.status,
                    attempts: d.attempts,
                    sent_at: d.sent_at.map(time::ts),
                    last_error: d.last_error,
                    message_id: d.message_id,
                });
        report.mail_enabled = self.0.reports.mailer.is_some();
        Ok(report)
    }

    pub(crate) async fn send_daily_report(
        &self,
        req: Request<pb::SendDailyReportRequest>,
    ) -> AppResult<pb::SendDailyReportResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(REPORTERS)?;
        let reports = &self.0.reports;
        if reports.mailer.is_none() {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "no SMTP server is configured: reports can only be previewed",
            ));
        }
        let recipients = reports.settings.recipients();
        if recipients.is_empty() {
            return Err(AppError::invalid("no report recipients are configured"));
        }
        let day = self.report_day(&req.get_ref().day).await?;
        // A replayed request (same idempotency key) sends under the same Message-ID, so the
        // duplicate can be dropped by the receiving side; without a key every send is new.
        let key = req
            .metadata()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|k| {
                use sha1::Digest;
                hex_prefix(&sha1::Sha1::digest(format!("{}:{k}", caller.scope())))
            })
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let message_id = format!("eod-{day}-now-{key}@{}", reports.settings.message_id_domain);
        let report = collect::daily(self, caller.user_token.as_deref(), day).await?;
        schedule::send(self, &report, &recipients, &message_id)
            .await
            .map_err(|e| {
                AppError::new(
                    ErrorCode::Unavailable,
                    format!("the report was not sent: {e}"),
                )
            })?;
        tracing::info!(%day, message_id, "end-of-day report sent on request");
        Ok(pb::SendDailyReportResponse {
            message_id,
            recipients,
        })
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(12).map(|b| format!("{b:02x}")).collect()
}
