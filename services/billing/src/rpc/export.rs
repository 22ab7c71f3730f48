//! ExportBills: every bill matching ListBills' filters, streamed in chunks.

use futures::StreamExt;
use tonic::{Request, Status};
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::AppResult;
use tracetrack_domain::Role;
use tracetrack_proto::billing::v1 as pb;

use crate::convert::list_filter;
use crate::state::Billing;
use crate::store::{self, BillRow};

impl Billing {
    /// Admin: every bill matching ListBills' filters, newest first, in chunks read from one
    /// snapshot (see `tracetrack_common::export`), each chunk with its figures from one
    /// GetBillFigures call. The filters are checked and the first page read before the stream
    /// starts, so those errors are the call's own.
    pub(crate) async fn export_bills(
        &self,
        req: Request<pb::ExportBillsRequest>,
    ) -> AppResult<ExportStream<pb::ExportBillsChunk>> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let token = caller.user_token.clone();
        let req = req.into_inner();
        let limit = export::chunk_size(req.chunk_size);
        let mut filter = list_filter(&req.filter.unwrap_or_default())?;
        filter.limit = limit;
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::list_bills(&mut *tx, &filter).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |b: &BillRow| (b.created_at, b.bill_id.clone()),
            move |conn, after| {
                let mut filter = filter.clone();
                filter.after = Some(after);
                Box::pin(async move { store::list_bills(conn, &filter).await })
            },
            "bills",
        );
        let billing = self.clone();
        Ok(pages
            .then(move |page| {
                let billing = billing.clone();
                let token = token.clone();
                async move {
                    let rows = page?;
                    Ok(pb::ExportBillsChunk {
                        bills: billing.with_figures_all(token.as_deref(), &rows).await?,
                    })
                }
            })
            .map(|chunk: AppResult<_>| chunk.map_err(Status::from))
            .boxed())
    }
}
