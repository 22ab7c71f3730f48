//! A bill's status: CompleteBill and ReopenBill, the request side of the freeze and unfreeze
//! sagas (see [`crate::saga`]). Both run the same steps, told apart by [`Settle`].

use tonic::Request;
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;

use crate::convert::to_pb;
use crate::rules::{bill_not_found, conflict, named_bill, MANAGERS};
use crate::saga::Settle;
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, BillState};

/// What tells CompleteBill and ReopenBill apart on the request side.
struct Rpc<M> {
    name: &'static str,
    settle: Settle,
    make: fn(pb::Bill) -> M,
    bill: fn(&mut M) -> &mut Option<pb::Bill>,
}

impl Settle {
    /// The statuses the intent may start from; those it may start from only once their lease
    /// expired (an intent nobody works on); whether the bill must be full.
    fn from(self) -> (&'static [&'static str], &'static [&'static str], bool) {
        match self {
            Settle::Complete => (&["new", "processing"], &["completing", "reopening"], true),
            Settle::Reopen => (&["completed"], &["completing", "reopening"], false),
        }
    }

    /// Whether a bill in `status` is already where this settlement leads (answer it as it is).
    fn done(self, status: &str) -> bool {
        match self {
            Settle::Complete => status == "completed",
            Settle::Reopen => status == "new" || status == "processing",
        }
    }

    /// The refusal when the bill went the other way after this request's lease was taken over.
    fn overtaken(self) -> AppError {
        conflict(match self {
            Settle::Complete => "the bill was reopened meanwhile; try again",
            Settle::Reopen => "the bill was completed meanwhile; try again",
        })
    }
}

impl Billing {
    pub(crate) async fn complete_bill(
        &self,
        req: Request<pb::CompleteBillRequest>,
    ) -> AppResult<pb::CompleteBillResponse> {
        let rpc = Rpc {
            name: "CompleteBill",
            settle: Settle::Complete,
            make: |b| pb::CompleteBillResponse { bill: Some(b) },
            bill: |r| &mut r.bill,
        };
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        self.settle_bill(&caller, &req, &req.bill_id, rpc).await
    }

    pub(crate) async fn reopen_bill(
        &self,
        req: Request<pb::ReopenBillRequest>,
    ) -> AppResult<pb::ReopenBillResponse> {
        let rpc = Rpc {
            name: "ReopenBill",
            settle: Settle::Reopen,
            make: |b| pb::ReopenBillResponse { bill: Some(b) },
            bill: |r| &mut r.bill,
        };
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        self.settle_bill(&caller, &req, &req.bill_id, rpc).await
    }

    async fn settle_bill<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        req: &impl prost::Message,
        bill_id: &str,
        rpc: Rpc<M>,
    ) -> AppResult<M> {
        caller.require_role(MANAGERS)?;
        let id = named_bill(bill_id)?;
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), caller, rpc.name, req)
            .await?
        {
            Some(first) => first,
            None => self.settle(caller, req, &id, &rpc).await?,
        };
        self.with_figures(caller, (rpc.bill)(&mut resp)).await?;
        Ok(resp)
    }

    async fn settle<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        req: &impl prost::Message,
        id: &str,
        rpc: &Rpc<M>,
    ) -> AppResult<M> {
        let settle = rpc.settle;
        // 1. The intent (completing: only a full bill with nothing in flight). A bill whose
        //    completion or reopening is under way (a live lease) is waited for.
        let (from, expired_from, full) = settle.from();
        let waiting = self.lease_wait();
        let intent = loop {
            if let Some(intent) = store::begin_intent(
                self.pool(),
                id,
                settle.intent(),
                from,
                expired_from,
                full,
                self.lease_ms(),
            )
            .await?
            {
                break intent;
            }
            match store::bill_lease(self.pool(), id, self.lease_ms()).await? {
                None => return Err(bill_not_found()),
                Some(l) if l.status == "deleting" => return Err(bill_not_found()),
                Some(l) if l.live && (l.status == "completing" || l.status == "reopening") => {
                    waiting.next("the bill's status is changing").await?
                }
                Some(l) if settle.done(&l.status) || settle == Settle::Reopen => {
                    return self
                        .answer_current(caller, rpc.name, req, &l.bill_id, rpc.make)
                        .await;
                }
                Some(_) => return Err(self.incomplete(id).await?),
            }
        };
        let bill_id = intent.bill_id;
        // 2. Freeze (unfreeze) in bag-registry, no lock held.
        let who = Who::Request(caller);
        let moved = self.settle_call(&who, &bill_id, settle).await?;
        // 3. Finish, conditional on the lease.
        let mut tx = self.pool().begin().await?;
        let Some(row) = self
            .finish_settle(&mut tx, &who, &bill_id, intent.stamp, settle, moved)
            .await?
        else {
            tx.rollback().await?;
            return match store::bill_status(self.pool(), &bill_id).await? {
                Some(BillState { status: s, .. }) if settle.done(&s) => {
                    self.answer_current(caller, rpc.name, req, &bill_id, rpc.make)
                        .await
                }
                Some(BillState { status: s, .. }) if s != "deleting" => Err(settle.overtaken()),
                _ => Err(bill_not_found()),
            };
        };
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, rpc.name, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = (rpc.make)(to_pb(&row));
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// Why a bill cannot be completed now.
    async fn incomplete(&self, id: &str) -> AppResult<AppError> {
        let row = store::find_bill(self.pool(), id)
            .await?
            .ok_or_else(bill_not_found)?;
        let message = if row.unsettled_count > 0 {
            "a parent is being attached or detached; try again"
        } else {
            "a bill is completed only when it holds as many parents as its capacity"
        };
        Ok(AppError::new(ErrorCode::BillIncomplete, message)
            .with_detail("parent_count", row.confirmed())
            .with_detail("capacity", row.capacity))
    }
}
