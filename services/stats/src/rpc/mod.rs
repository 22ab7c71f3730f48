//! stats' RPCs, one module per capability: the dashboard (read and watch), scans per hour and
//! user activity, the audit trail and bag history, the EPCIS export. Each handler is an
//! inherent `async fn` on [`Stats`] that answers `AppResult<T>`; the tonic service below only
//! calls it.

mod activity;
mod audit;
mod dashboard;
mod epcis;
mod reports;

use chrono::{DateTime, Utc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracetrack_common::time;
use tracetrack_proto::stats::v1 as pb;

pub use epcis::EpcisStream;

use crate::state::Stats;

/// A time filter: absent (or not a valid time) means no bound.
fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| time::from_ts(t, "").ok())
}

tracetrack_common::service! {
    Stats: pb::stats_service_server::StatsService {
        type WatchDashboardStream = ReceiverStream<Result<pb::Dashboard, Status>>;
        type ExportEpcisEventsStream = EpcisStream;
        fn get_dashboard(pb::GetDashboardRequest) -> pb::Dashboard;
        fn watch_dashboard(pb::WatchDashboardRequest) -> Self::WatchDashboardStream;
        fn get_scans_per_hour(pb::GetScansPerHourRequest) -> pb::GetScansPerHourResponse;
        fn get_user_activity(pb::GetUserActivityRequest) -> pb::GetUserActivityResponse;
        fn list_audit_events(pb::ListAuditEventsRequest) -> pb::ListAuditEventsResponse;
        fn get_bag_history(pb::GetBagHistoryRequest) -> pb::GetBagHistoryResponse;
        fn export_epcis_events(pb::ExportEpcisEventsRequest) -> Self::ExportEpcisEventsStream;
        fn get_bill_summary(pb::GetBillSummaryRequest) -> pb::GetBillSummaryResponse;
        fn preview_daily_report(pb::PreviewDailyReportRequest) -> pb::DailyReport;
        fn send_daily_report(pb::SendDailyReportRequest) -> pb::SendDailyReportResponse;
    }
}
