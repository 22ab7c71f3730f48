//! ExportBags: every bag matching SearchBags' filters, streamed in chunks.

use futures::StreamExt;
use tonic::{Request, Status};
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::AppResult;
use tracetrack_domain::Role;
use tracetrack_proto::registry::v1 as pb;

use crate::state::Registry;
use crate::store::{self, BagRow};

impl Registry {
    /// Admin: every bag matching SearchBags' filters, in QR order, in chunks read from one
    /// snapshot (see `tracetrack_common::export`). The filters are checked and the first page
    /// read before the stream starts, so those errors are the call's own.
    pub(crate) async fn export_bags(
        &self,
        req: Request<pb::ExportBagsRequest>,
    ) -> AppResult<ExportStream<pb::ExportBagsChunk>> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(&[Role::Admin])?.clone();
        let req = req.into_inner();
        let filter = self.bag_filter(&user, &req.filter.unwrap_or_default())?;
        let limit = export::chunk_size(req.chunk_size);
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::bags_by_qr(&mut tx, &filter, None, limit).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |b: &BagRow| b.qr.clone(),
            move |conn, after| {
                let filter = filter.clone();
                Box::pin(async move { store::bags_by_qr(conn, &filter, Some(&after), limit).await })
            },
            "bags",
        );
        Ok(pages
            .map(|page| {
                page.map(|rows| pb::ExportBagsChunk {
                    bags: rows.iter().map(BagRow::to_pb).collect(),
                })
                .map_err(Status::from)
            })
            .boxed())
    }
}
