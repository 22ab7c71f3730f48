//! GetDashboard, and WatchDashboard (the gateway's one stream of changes).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::stats::v1 as pb;

use crate::dashboard::{dashboard, same_figures};
use crate::state::{scope, Stats};

impl Stats {
    pub(crate) async fn get_dashboard(
        &self,
        req: Request<pb::GetDashboardRequest>,
    ) -> AppResult<pb::Dashboard> {
        let caller = self.caller(&req).await?;
        let area = scope(&caller)?;
        dashboard(self.pool(), self.time_zone(), area.as_deref()).await
    }

    pub(crate) async fn watch_dashboard(
        &self,
        req: Request<pb::WatchDashboardRequest>,
    ) -> AppResult<ReceiverStream<Result<pb::Dashboard, Status>>> {
        // For the gateway alone: it holds one stream for all its browsers, filters per viewer
        // and re-checks each viewer's session itself. A user's stream here would keep the view
        // it started with (no session re-check), so users are refused.
        let caller = self.caller(&req).await?;
        if caller.user.is_some() {
            return Err(AppError::new(
                ErrorCode::CallerNotAllowed,
                "WatchDashboard is for the gateway; users read GetDashboard or /api/v1/stats/live",
            ));
        }
        caller.require_service(&["gateway"])?;
        let area: Option<String> = None;
        let (tx, rx) = mpsc::channel(16);
        let inner = self.0.clone();
        tokio::spawn(async move {
            let mut changed = inner.changed.clone();
            let mut stop = inner.stop.clone();
            let mut last: Option<pb::Dashboard> = None;
            let coalesce = Duration::from_millis(inner.settings.watch_interval_ms.max(50));
            loop {
                match dashboard(
                    &inner.pool,
                    &inner.settings.business_time_zone,
                    area.as_deref(),
                )
                .await
                {
                    Ok(d) => {
                        if last.as_ref().is_none_or(|l| !same_figures(l, &d)) {
                            if tx.send(Ok(d.clone())).await.is_err() {
                                return;
                            }
                            last = Some(d);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "dashboard read failed"),
                }
                // Wake on a local batch, or re-read periodically (other replicas, time windows);
                // then wait a moment so bursts are coalesced into a few updates a second.
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                    _ = stop.wait_for(|s| *s) => return,
                }
                tokio::time::sleep(coalesce).await;
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
