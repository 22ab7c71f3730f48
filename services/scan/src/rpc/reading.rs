//! Reading the scan log: ListScans (keyset pages, a dispatcher's own area) and ExportScans
//! (admins, every matching event in chunks from one snapshot).

use futures::StreamExt;
use tonic::{Request, Status};
use tracetrack_common::caller::AreaView as View;
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::{page, time, AppError, AppResult};
use tracetrack_proto::scan::v1 as pb;
use uuid::Uuid;

use crate::attempt::logged_qr;
use crate::state::Scan;
use crate::store::{self, ListFilter, ScanEventRow};

/// ListScans' filters (shared with ExportScans), without the page; `area` limits a dispatcher.
fn list_filter(req: &pb::ListScansRequest, area: Option<String>) -> AppResult<ListFilter> {
    let user_id = match req.user_id.trim() {
        "" => None,
        id => Some(
            id.parse::<Uuid>()
                .map_err(|_| AppError::invalid("user_id must be a UUID"))?,
        ),
    };
    Ok(ListFilter {
        user_id,
        qr: Some(req.qr.trim()).filter(|q| !q.is_empty()).map(logged_qr),
        from: req
            .from
            .as_ref()
            .map(|t| time::from_ts(t, "from"))
            .transpose()?,
        to: req
            .to
            .as_ref()
            .map(|t| time::from_ts(t, "to"))
            .transpose()?,
        area,
        after: None,
        limit: 0,
    })
}

impl Scan {
    pub(crate) async fn list_scans(
        &self,
        req: Request<pb::ListScansRequest>,
    ) -> AppResult<pb::ListScansResponse> {
        let caller = self.caller(&req).await?;
        let view = View::of(caller.user()?);
        let req = req.into_inner();
        let area = match view {
            View::All => None,
            View::Area(a) => Some(a),
            View::Nothing => return Ok(pb::ListScansResponse::default()),
        };
        let size = page::size(req.page_size);
        let mut filter = list_filter(&req, area)?;
        filter.after = match req.page_token.as_str() {
            "" => None,
            t => {
                let (at, id) = page::decode_at(t)?;
                let id = id
                    .parse()
                    .map_err(|_| AppError::invalid("bad page_token"))?;
                Some((at, id))
            }
        };
        filter.limit = size + 1;
        let rows = store::list_events(self.pool(), &filter).await?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => page::encode_at(last.occurred_at, &last.id.to_string()),
            _ => String::new(),
        };
        Ok(pb::ListScansResponse {
            events: page.iter().map(ScanEventRow::to_pb).collect(),
            next_page_token,
        })
    }

    /// Admin: every scan event matching ListScans' filters, newest first, in chunks read from
    /// one snapshot (see `tracetrack_common::export`). The filters are checked and the first
    /// page read before the stream starts, so those errors are the call's own.
    pub(crate) async fn export_scans(
        &self,
        req: Request<pb::ExportScansRequest>,
    ) -> AppResult<ExportStream<pb::ExportScansChunk>> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[tracetrack_domain::Role::Admin])?;
        let req = req.into_inner();
        let limit = export::chunk_size(req.chunk_size);
        let mut filter = list_filter(&req.filter.unwrap_or_default(), None)?;
        filter.limit = limit;
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::list_events(&mut *tx, &filter).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |e: &ScanEventRow| (e.occurred_at, e.id),
            move |conn, after| {
                let mut filter = filter.clone();
                filter.after = Some(after);
                Box::pin(async move { store::list_events(conn, &filter).await })
            },
            "scans",
        );
        Ok(pages
            .map(|page| {
                page.map(|rows| pb::ExportScansChunk {
                    events: rows.iter().map(ScanEventRow::to_pb).collect(),
                })
                .map_err(Status::from)
            })
            .boxed())
    }
}
