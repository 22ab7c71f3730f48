//! A bill's status: CompleteBill and ReopenBill, the request side of the freeze and unfreeze
//! sagas (see [`crate::saga`]).

use tonic::Request;
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;

use crate::convert::to_pb;
use crate::rules::{bill_not_found, conflict, named_bill, MANAGERS};
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, BillState};

impl Billing {
    pub(crate) async fn complete_bill(
        &self,
        req: Request<pb::CompleteBillRequest>,
    ) -> AppResult<pb::CompleteBillResponse> {
        const RPC: &str = "CompleteBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let make = |b| pb::CompleteBillResponse { bill: Some(b) };
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            Some(first) => first,
            None => self.complete(&caller, &req, &id, make).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn complete(
        &self,
        caller: &Caller,
        req: &pb::CompleteBillRequest,
        id: &str,
        make: impl Fn(pb::Bill) -> pb::CompleteBillResponse,
    ) -> AppResult<pb::CompleteBillResponse> {
        const RPC: &str = "CompleteBill";
        // 1. The intent: only a full bill with nothing in flight.
        let moved = store::transition(
            self.pool(),
            id,
            "completing",
            &["new", "processing", "reopening"],
            true,
        )
        .await?;
        let bill_id = match moved {
            Some(bill_id) => bill_id,
            None => match store::bill_status(self.pool(), id).await? {
                None => return Err(bill_not_found()),
                Some(BillState { status: s, .. }) if s == "deleting" => {
                    return Err(bill_not_found())
                }
                Some(BillState { bill_id, status: s }) if s == "completing" => bill_id,
                Some(BillState { bill_id, status: s }) if s == "completed" => {
                    return self.answer_current(caller, RPC, req, &bill_id, make).await;
                }
                Some(_) => {
                    let row = store::find_bill(self.pool(), id)
                        .await?
                        .ok_or_else(bill_not_found)?;
                    let message = if row.unsettled_count > 0 {
                        "a parent is being attached or detached; try again"
                    } else {
                        "a bill is completed only when it holds as many parents as its capacity"
                    };
                    return Err(AppError::new(ErrorCode::BillIncomplete, message)
                        .with_detail("parent_count", row.confirmed())
                        .with_detail("capacity", row.capacity));
                }
            },
        };
        // 2. Freeze in bag-registry and finish, holding the bill's lock.
        let mut tx = self.pool().begin().await?;
        let who = Who::Request(caller);
        let Some(row) = self.complete_locked(&mut tx, &who, &bill_id, false).await? else {
            tx.rollback().await?;
            return match store::bill_status(self.pool(), &bill_id).await? {
                Some(BillState { status: s, .. }) if s == "completed" => {
                    self.answer_current(caller, RPC, req, &bill_id, make).await
                }
                Some(BillState { status: s, .. }) if s != "deleting" => {
                    Err(conflict("the bill was reopened meanwhile; try again"))
                }
                _ => Err(bill_not_found()),
            };
        };
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = make(to_pb(&row));
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    pub(crate) async fn reopen_bill(
        &self,
        req: Request<pb::ReopenBillRequest>,
    ) -> AppResult<pb::ReopenBillResponse> {
        const RPC: &str = "ReopenBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let make = |b| pb::ReopenBillResponse { bill: Some(b) };
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            Some(first) => first,
            None => self.reopen(&caller, &req, &id, make).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn reopen(
        &self,
        caller: &Caller,
        req: &pb::ReopenBillRequest,
        id: &str,
        make: impl Fn(pb::Bill) -> pb::ReopenBillResponse,
    ) -> AppResult<pb::ReopenBillResponse> {
        const RPC: &str = "ReopenBill";
        let moved = store::transition(
            self.pool(),
            id,
            "reopening",
            &["completing", "completed"],
            false,
        )
        .await?;
        let bill_id = match moved {
            Some(bill_id) => bill_id,
            None => match store::bill_status(self.pool(), id).await? {
                None => return Err(bill_not_found()),
                Some(BillState { status: s, .. }) if s == "deleting" => {
                    return Err(bill_not_found())
                }
                Some(BillState { bill_id, status: s }) if s == "reopening" => bill_id,
                // Not completed: already open, nothing to do.
                Some(BillState { bill_id, .. }) => {
                    return self.answer_current(caller, RPC, req, &bill_id, make).await;
                }
            },
        };
        let mut tx = self.pool().begin().await?;
        let who = Who::Request(caller);
        let Some(row) = self.reopen_locked(&mut tx, &who, &bill_id, false).await? else {
            tx.rollback().await?;
            return match store::bill_status(self.pool(), &bill_id).await? {
                Some(BillState { status: s, .. }) if s == "new" || s == "processing" => {
                    self.answer_current(caller, RPC, req, &bill_id, make).await
                }
                Some(BillState { status: s, .. }) if s != "deleting" => {
                    Err(conflict("the bill was completed meanwhile; try again"))
                }
                _ => Err(bill_not_found()),
            };
        };
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = make(to_pb(&row));
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}
