//! Parents on a bill: AttachParent and DetachParent, the request side of the attach and detach
//! sagas (see [`crate::saga`]).

use tonic::Request;
use tracetrack_common::caller::{Caller, UserIdentity};
use tracetrack_common::client;
use tracetrack_common::AppResult;
use tracetrack_domain::qr;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;

use crate::convert::to_pb;
use crate::registry::{maybe_applied, registry_error};
use crate::rules::{bill_not_found, conflict, not_on_bill, on_other_bill, qr_err, MANAGERS};
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, Reservation};

/// Rounds of reserve-then-claim before giving up with `conflict` (a round repeats only when the
/// row it was about to settle was settled by someone else in between).
const MAX_ATTACH_ROUNDS: usize = 5;

impl Billing {
    pub(crate) async fn attach_parent(
        &self,
        req: Request<pb::AttachParentRequest>,
    ) -> AppResult<pb::AttachParentResponse> {
        const RPC: &str = "AttachParent";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let parent = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            Some(first) => first,
            None => self.attach(&caller, &user, &req, &parent).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn attach(
        &self,
        caller: &Caller,
        user: &UserIdentity,
        req: &pb::AttachParentRequest,
        parent: &str,
    ) -> AppResult<pb::AttachParentResponse> {
        const RPC: &str = "AttachParent";
        let bill_id = self.visible(&req.bill_id).await?.bill_id;
        let who = Who::Request(caller);
        let key = who.key("ClaimParent");
        for _ in 0..MAX_ATTACH_ROUNDS {
            // 1. Reserve (committed at once), or take over this bill's reservation of the
            //    parent once nobody holds it.
            let stamp = match store::reserve(self.pool(), &bill_id, parent, Some(user.id)).await? {
                Reservation::Reserved(stamp) => stamp,
                Reservation::Existing { bill_id: other, .. } if other != bill_id => {
                    return Err(on_other_bill(&other));
                }
                Reservation::Existing { .. } => {
                    match self.take_over(&bill_id, parent, "pending").await? {
                        Some(stamp) => stamp,
                        None => match self.attached_already(caller, req, &bill_id, parent).await? {
                            Some(resp) => return Ok(resp),
                            None => continue,
                        },
                    }
                }
                Reservation::Vanished => continue,
            };
            // 2. Claim, no lock held. Idempotent (its key): retried once on a transport failure.
            let claim = client::retry_transport(|| {
                let mut registry = self.registry();
                let req = client::request(
                    reg::ClaimParentRequest {
                        parent_qr: parent.to_owned(),
                        bill_id: bill_id.clone(),
                    },
                    who.token(),
                    key.as_deref(),
                );
                async move { registry.claim_parent(req).await }
            })
            .await;
            // 3. Confirm, or undo on a refusal: one statement conditional on the lease.
            let bag = match claim {
                Ok(r) => r.into_inner().parent.unwrap_or_default(),
                Err(status) => {
                    let err = registry_error(&status);
                    // When the claim may have happened, the reservation stays pending for a
                    // retry or the sweeper, which ask bag-registry.
                    if !maybe_applied(err.code) {
                        store::remove(self.pool(), &bill_id, parent, "pending", stamp).await?;
                    }
                    metrics::counter!("billing_attach_total", "outcome" => err.code.as_str())
                        .increment(1);
                    return Err(err);
                }
            };
            let mut tx = self.pool().begin().await?;
            if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
                // A concurrent request with this key answered first; this claim stands and the
                // sweeper confirms the reservation.
                tx.rollback().await?;
                return Ok(first);
            }
            let Some(row) = self
                .confirm_leased(&mut tx, &who, &bill_id, parent, &bag, stamp, "request")
                .await?
            else {
                // Taken over meanwhile (this request outlived its lease): answer from the row.
                tx.rollback().await?;
                continue;
            };
            let resp = pb::AttachParentResponse {
                bill: Some(to_pb(&row)),
                already_attached: false,
            };
            MUTATIONS.remember(&mut tx, caller, &resp).await?;
            tx.commit().await?;
            metrics::counter!("billing_attach_total", "outcome" => "attached").increment(1);
            return Ok(resp);
        }
        Err(conflict("the parent's attachment kept changing; try again"))
    }

    /// Waits until nobody holds the lease of the parent's row on this bill in `state`, then
    /// takes it over: its stamp, or None when the row left that state meanwhile (settled).
    pub(super) async fn take_over(
        &self,
        bill_id: &str,
        parent: &str,
        state: &str,
    ) -> AppResult<Option<store::Stamp>> {
        let waiting = self.lease_wait();
        loop {
            match store::attachment_lease(self.pool(), bill_id, parent, self.lease_ms()).await? {
                Some(l) if l.state == state && l.live => {
                    waiting
                        .next(if state == "pending" {
                            "this parent is being attached to this bill"
                        } else {
                            "this parent is being detached from this bill"
                        })
                        .await?
                }
                Some(l) if l.state == state => {
                    if let Some(stamp) =
                        store::take_attachment(self.pool(), bill_id, parent, state, self.lease_ms())
                            .await?
                    {
                        return Ok(Some(stamp));
                    }
                    waiting.next("the bill is changing").await?;
                }
                _ => return Ok(None),
            }
        }
    }

    /// The answer when the parent is confirmed on this bill already (`already_attached`), or
    /// None when its row is gone (try again); `conflict` while it is being detached.
    async fn attached_already(
        &self,
        caller: &Caller,
        req: &pb::AttachParentRequest,
        bill_id: &str,
        parent: &str,
    ) -> AppResult<Option<pb::AttachParentResponse>> {
        const RPC: &str = "AttachParent";
        let mut tx = self.pool().begin().await?;
        match store::attachment(&mut *tx, parent).await? {
            Some(a) if a.bill_id == bill_id && a.state == "confirmed" => {}
            Some(a) if a.bill_id == bill_id && a.state == "pending" => return Ok(None),
            Some(a) if a.bill_id == bill_id => {
                return Err(conflict(
                    "this parent is being detached from this bill; try again",
                ))
            }
            Some(a) => return Err(on_other_bill(&a.bill_id)),
            None => return Ok(None),
        }
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
            return Ok(Some(first));
        }
        let row = store::bill_by_id(&mut tx, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        let resp = pb::AttachParentResponse {
            bill: Some(to_pb(&row)),
            already_attached: true,
        };
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        metrics::counter!("billing_attach_total", "outcome" => "already_attached").increment(1);
        Ok(Some(resp))
    }

    pub(crate) async fn detach_parent(
        &self,
        req: Request<pb::DetachParentRequest>,
    ) -> AppResult<pb::DetachParentResponse> {
        const RPC: &str = "DetachParent";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let parent = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            Some(first) => first,
            None => self.detach(&caller, &req, &parent).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn detach(
        &self,
        caller: &Caller,
        req: &pb::DetachParentRequest,
        parent: &str,
    ) -> AppResult<pb::DetachParentResponse> {
        const RPC: &str = "DetachParent";
        let bill_id = self.visible(&req.bill_id).await?.bill_id;
        let who = Who::Request(caller);
        let answer = |b| pb::DetachParentResponse { bill: Some(b) };
        for _ in 0..MAX_ATTACH_ROUNDS {
            // 1. The intent, committed: confirmed → detaching (the trigger refuses a closed
            //    bill), or take over a detach of this parent once nobody holds it.
            let stamp = match store::mark_detaching(self.pool(), &bill_id, parent).await? {
                Some(stamp) => stamp,
                None => match store::attachment(self.pool(), parent).await? {
                    Some(a) if a.bill_id == bill_id && a.state == "detaching" => {
                        match self.take_over(&bill_id, parent, "detaching").await? {
                            Some(stamp) => stamp,
                            // Settled meanwhile: detached (row gone), or put back (look again).
                            None => match store::attachment(self.pool(), parent).await? {
                                Some(a) if a.bill_id == bill_id => continue,
                                _ => {
                                    return self
                                        .answer_current(caller, RPC, req, &bill_id, answer)
                                        .await
                                }
                            },
                        }
                    }
                    Some(a) if a.bill_id == bill_id && a.state == "confirmed" => continue,
                    Some(a) if a.bill_id == bill_id => {
                        return Err(conflict(
                            "this parent is being attached to this bill; try again",
                        ))
                    }
                    _ => return Err(not_on_bill(parent)),
                },
            };
            // 2. Release in bag-registry, no lock held.
            match self
                .release_parent(&who, &bill_id, parent, who.key("ReleaseParent"))
                .await
            {
                Ok(()) => {}
                Err(err) if err.code == ErrorCode::BillCompleted => {
                    // bag-registry refused (the parent is frozen): the row goes back.
                    store::unmark_detaching(self.pool(), &bill_id, parent, stamp).await?;
                    return Err(err);
                }
                // No answer: the row stays detaching for a retry or the sweeper.
                Err(err) => return Err(err),
            }
            // 3. Delete the row, conditional on the lease.
            let mut tx = self.pool().begin().await?;
            if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
                tx.rollback().await?;
                return Ok(first);
            }
            let Some(row) = self
                .finish_detach(&mut tx, &who, &bill_id, parent, stamp)
                .await?
            else {
                // Finished by whoever took the row over: the parent is released.
                tx.rollback().await?;
                return self
                    .answer_current(caller, RPC, req, &bill_id, answer)
                    .await;
            };
            let resp = answer(to_pb(&row));
            MUTATIONS.remember(&mut tx, caller, &resp).await?;
            tx.commit().await?;
            return Ok(resp);
        }
        Err(conflict("the parent's attachment kept changing; try again"))
    }
}
