//! Scans per hour, and a user's activity (admins).

use tonic::Request;
use tracetrack_common::time::ts;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::Role;
use tracetrack_proto::stats::v1 as pb;
use uuid::Uuid;

use crate::state::{scope, Stats};
use crate::store;

impl Stats {
    pub(crate) async fn get_scans_per_hour(
        &self,
        req: Request<pb::GetScansPerHourRequest>,
    ) -> AppResult<pb::GetScansPerHourResponse> {
        let caller = self.caller(&req).await?;
        let scoped = scope(&caller)?;
        let req = req.into_inner();
        let area = scoped.or(Some(req.area).filter(|a| !a.is_empty()));
        let days = req.days.clamp(1, 14) as i32;
        let rows = store::scans_per_hour(self.pool(), self.time_zone(), days, area).await?;
        Ok(pb::GetScansPerHourResponse {
            buckets: rows
                .into_iter()
                .map(|r| pb::HourBucket {
                    hour: r.hour_local.format("%Y-%m-%dT%H:00").to_string(),
                    scans: r.scans,
                })
                .collect(),
            time_zone: self.time_zone().to_owned(),
        })
    }

    pub(crate) async fn get_user_activity(
        &self,
        req: Request<pb::GetUserActivityRequest>,
    ) -> AppResult<pb::GetUserActivityResponse> {
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let user: Uuid = req
            .get_ref()
            .user_id
            .parse()
            .map_err(|_| AppError::invalid("user_id must be a UUID"))?;
        let row = store::user_activity(self.pool(), user).await?;
        let days = store::user_scans_daily(self.pool(), user, self.time_zone()).await?;
        let row = row.unwrap_or_default();
        Ok(pb::GetUserActivityResponse {
            user_id: user.to_string(),
            username: row.username,
            total_scans: row.total_scans,
            last_scan_at: row.last_scan_at.map(ts),
            last_login_at: row.last_login_at.map(ts),
            scans_per_day: days
                .into_iter()
                .map(|d| pb::DayCount {
                    day: d.day.to_string(),
                    scans: d.scans,
                })
                .collect(),
        })
    }
}
