//! ExportEpcisEvents (admins): the event store as GS1 EPCIS 2.0 events (see [`crate::epcis`]).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tonic::{Request, Status};
use tracetrack_common::export::{self, Permit};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::Role;
use tracetrack_proto::stats::v1 as pb;
use uuid::Uuid;

use super::from_ts;
use crate::state::Stats;
use crate::store;

/// Source events per page of the EPCIS export when the request says 0, and at most.
const EPCIS_PAGE: u32 = 500;
const EPCIS_MAX_PAGE: u32 = 5_000;
/// A response message holds about this many bytes of events (far below gRPC's 4 MiB limit).
const EPCIS_CHUNK_BYTES: usize = 256 * 1024;

pub type EpcisStream =
    futures::stream::BoxStream<'static, Result<pb::ExportEpcisEventsResponse, Status>>;

impl Stats {
    /// The EPCIS export: source events in (time, id) order, read by keyset a page at a time from
    /// one snapshot (a read-only REPEATABLE READ transaction), each page only when the caller has
    /// taken the previous one, so memory stays bounded at any size.
    pub(crate) async fn export_epcis_events(
        &self,
        req: Request<pb::ExportEpcisEventsRequest>,
    ) -> AppResult<EpcisStream> {
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let to = from_ts(&req.to).unwrap_or_else(Utc::now);
        let from = match from_ts(&req.from) {
            Some(f) if f > to => return Err(AppError::invalid("from must not be after to")),
            Some(f) => f,
            // Every event is after 1970; an earlier `to` just gives an empty window.
            None => DateTime::UNIX_EPOCH.min(to),
        };
        let permit = self.0.exports.acquire()?;
        let tx = export::snapshot(self.pool()).await?;
        let mut pages = EpcisPages {
            _permit: permit,
            tx: Some(tx),
            time_zone: self.time_zone().to_owned(),
            from,
            to,
            limit: i64::from(match req.page_size {
                0 => EPCIS_PAGE,
                n => n.min(EPCIS_MAX_PAGE),
            }),
            // No event has the nil id, so (from, nil) starts the keyset at `from`.
            cursor: Some((from, Uuid::nil())),
            ready: Default::default(),
        };
        // The first page is read now, so its errors answer the call instead of ending a stream.
        pages.next_page().await?;
        Ok(futures::stream::try_unfold(pages, |mut st| async move {
            loop {
                if let Some(msg) = st.ready.pop_front() {
                    return Ok(Some((msg, st)));
                }
                if st.cursor.is_none() {
                    if let Some(tx) = st.tx.take() {
                        tx.rollback().await.map_err(AppError::from)?;
                    }
                    return Ok(None);
                }
                st.next_page().await?;
            }
        })
        .map(|r: AppResult<_>| r.map_err(Status::from))
        .boxed())
    }
}

struct EpcisPages {
    _permit: Permit,
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    time_zone: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
    /// The last source event read (keyset cursor); None once the last page has been read.
    cursor: Option<(DateTime<Utc>, Uuid)>,
    /// Messages built from the last page, not yet sent.
    ready: VecDeque<pb::ExportEpcisEventsResponse>,
}

impl EpcisPages {
    /// Reads the next page of source events after the cursor and turns it into messages.
    async fn next_page(&mut self) -> AppResult<()> {
        let (Some(tx), Some(after)) = (self.tx.as_mut(), self.cursor) else {
            return Ok(());
        };
        let rows = store::epcis_sources(tx, &self.time_zone, self.from, self.to, after, self.limit)
            .await?;
        self.cursor = if rows.len() as i64 >= self.limit {
            rows.last().map(|r| (r.occurred_at, r.event_id))
        } else {
            None
        };
        let mut msg = pb::ExportEpcisEventsResponse::default();
        let mut bytes = 0;
        for row in &rows {
            for event in crate::epcis::events(row) {
                let json = event.to_json();
                bytes += json.len();
                msg.events_json.push(json);
                if bytes >= EPCIS_CHUNK_BYTES {
                    self.ready.push_back(std::mem::take(&mut msg));
                    bytes = 0;
                }
            }
        }
        if !msg.events_json.is_empty() {
            self.ready.push_back(msg);
        }
        metrics::counter!("export_rows_total", "export" => "epcis").increment(rows.len() as u64);
        Ok(())
    }
}
