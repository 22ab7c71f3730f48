//! WatchScans: the live feed, filtered to what the caller may see.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use tracetrack_common::caller::AreaView as View;
use tracetrack_common::AppResult;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::scan::v1 as pb;

use crate::feed;
use crate::state::Scan;

/// Events a WatchScans stream holds for a slow client before it skips.
const STREAM_BUFFER: usize = 256;

impl Scan {
    /// Subscribes to the live feed. A task per stream forwards the events the caller may see,
    /// skips what a slow client cannot take, re-checks the caller's session every
    /// `watch_recheck_secs` (a logged-out or deactivated user's stream ends; a changed area
    /// re-filters it), and ends at shutdown or when the client goes away.
    pub(crate) async fn watch_scans(
        &self,
        req: Request<pb::WatchScansRequest>,
    ) -> AppResult<ReceiverStream<Result<pb::ScanEvent, Status>>> {
        let caller = self.caller(&req).await?;
        // The gateway holds one stream for all its browsers (it filters per viewer itself): a
        // service-only call from it sees every area and has no session to re-check.
        let service_feed = caller.user.is_none() && caller.require_service(&["gateway"]).is_ok();
        let mut view = if service_feed {
            View::All
        } else {
            View::of(caller.user()?)
        };
        let metadata = req.metadata().clone();
        let mut events = self.0.feed.subscribe();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let inner = self.0.clone();
        let mut stop = self.0.stop.clone();
        let period = Duration::from_secs(self.0.settings.watch_recheck_secs.max(1));
        tokio::spawn(async move {
            let mut recheck =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = feed::stopped(&mut stop) => break,
                    _ = tx.closed() => break,
                    _ = recheck.tick(), if !service_feed => {
                        match inner.callers.resolve(&metadata).await.and_then(|c| c.user().map(View::of)) {
                            Ok(v) => view = v,
                            Err(e) if matches!(
                                e.code,
                                ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::Internal
                            ) => {}
                            Err(e) => {
                                let _ = tx.try_send(Err(e.into()));
                                break;
                            }
                        }
                    }
                    received = events.recv() => match received {
                        Ok(event) => {
                            if view.sees(&event.area) {
                                match tx.try_send(Ok((*event).clone())) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        metrics::counter!("scan_watch_skipped_total").increment(1);
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            metrics::counter!("scan_watch_skipped_total").increment(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_filter_by_area() {
        assert!(View::All.sees("indore"));
        assert!(View::Area("indore".into()).sees("indore"));
        assert!(!View::Area("indore".into()).sees("jaipur"));
        assert!(!View::Area("indore".into()).sees(""));
        assert!(!View::Nothing.sees(""));
    }
}
