//! billing's RPCs, one module per capability; each handler is an inherent `async fn` on
//! [`Billing`] that answers `AppResult<T>`. The tonic service below only calls it and wraps the
//! answer.

mod attach;
mod attach_many;
mod bills;
mod export;
mod returns;
mod settle;

use tracetrack_common::caller::Caller;
use tracetrack_common::export::ExportStream;
use tracetrack_common::AppResult;
use tracetrack_proto::billing::v1 as pb;

use crate::convert::to_pb;
use crate::rules::{bill_not_found, named_bill};
use crate::state::{Billing, MUTATIONS};
use crate::store::{self, BillRow};

impl Billing {
    /// A bill readers may see, or `bill_not_found`.
    pub(crate) async fn visible(&self, raw_id: &str) -> AppResult<BillRow> {
        let id = named_bill(raw_id)?;
        store::find_bill(self.pool(), &id)
            .await?
            .ok_or_else(bill_not_found)
    }

    /// Answers a bill as it is now, storing the answer under the client's key (for RPCs whose
    /// request changed nothing, e.g. completing a completed bill).
    pub(crate) async fn answer_current<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
        bill_id: &str,
        make: impl FnOnce(pb::Bill) -> M,
    ) -> AppResult<M> {
        let mut tx = self.pool().begin().await?;
        if let Some(first) = MUTATIONS.replay::<M>(&mut tx, caller, rpc, req).await? {
            return Ok(first);
        }
        let row = store::bill_by_id(&mut tx, bill_id)
            .await?
            .filter(|r| r.status != "deleting")
            .ok_or_else(bill_not_found)?;
        let resp = make(to_pb(&row));
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}

tracetrack_common::service! {
    Billing: pb::billing_service_server::BillingService {
        type ExportBillsStream = ExportStream<pb::ExportBillsChunk>;
        fn create_bill(pb::CreateBillRequest) -> pb::CreateBillResponse;
        fn get_bill(pb::GetBillRequest) -> pb::GetBillResponse;
        fn get_bill_document(pb::GetBillRequest) -> pb::GetBillResponse;
        fn list_bills(pb::ListBillsRequest) -> pb::ListBillsResponse;
        fn export_bills(pb::ExportBillsRequest) -> Self::ExportBillsStream;
        fn update_bill(pb::UpdateBillRequest) -> pb::UpdateBillResponse;
        fn attach_parent(pb::AttachParentRequest) -> pb::AttachParentResponse;
        fn attach_parents(pb::AttachParentsRequest) -> pb::AttachParentsResponse;
        fn detach_parent(pb::DetachParentRequest) -> pb::DetachParentResponse;
        fn complete_bill(pb::CompleteBillRequest) -> pb::CompleteBillResponse;
        fn reopen_bill(pb::ReopenBillRequest) -> pb::ReopenBillResponse;
        fn delete_bill(pb::DeleteBillRequest) -> pb::DeleteBillResponse;
        fn create_return_ticket(pb::CreateReturnTicketRequest) -> pb::CreateReturnTicketResponse;
        fn get_return_ticket(pb::GetReturnTicketRequest) -> pb::GetReturnTicketResponse;
        fn list_return_tickets(pb::ListReturnTicketsRequest) -> pb::ListReturnTicketsResponse;
        fn return_parent(pb::ReturnParentRequest) -> pb::ReturnParentResponse;
        fn commit_return_ticket(pb::CommitReturnTicketRequest) -> pb::CommitReturnTicketResponse;
        fn cancel_return_ticket(pb::CancelReturnTicketRequest) -> pb::CancelReturnTicketResponse;
    }
}
