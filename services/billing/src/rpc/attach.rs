//! Parents on a bill: AttachParent and DetachParent, the request side of the attach and detach
//! sagas (see [`crate::saga`]).

use tonic::Request;
use tracetrack_common::caller::{Caller, UserIdentity};
use tracetrack_common::client;
use tracetrack_common::AppResult;
use tracetrack_domain::qr;
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
            // 1. Reserve (committed at once).
            match store::reserve(self.pool(), &bill_id, parent, Some(user.id)).await? {
                Reservation::Reserved => {}
                Reservation::Existing { bill_id: other, .. } if other != bill_id => {
                    return Err(on_other_bill(&other));
                }
                // Confirmed here: answered below. Pending here: settled by this request below.
                Reservation::Existing { .. } => {}
                Reservation::Vanished => continue,
            }
            // 2. Claim, holding the row's lock.
            let mut tx = self.pool().begin().await?;
            match store::lock_attachment(&mut tx, &bill_id, parent)
                .await?
                .as_deref()
            {
                None => continue,
                Some("pending") => {}
                Some("confirmed") => {
                    if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
                        return Ok(first);
                    }
                    let row = store::bill_by_id(&mut tx, &bill_id)
                        .await?
                        .ok_or_else(bill_not_found)?;
                    let resp = pb::AttachParentResponse {
                        bill: Some(to_pb(&row)),
                        already_attached: true,
                    };
                    MUTATIONS.remember(&mut tx, caller, &resp).await?;
                    tx.commit().await?;
                    metrics::counter!("billing_attach_total", "outcome" => "already_attached")
                        .increment(1);
                    return Ok(resp);
                }
                Some(_) => {
                    return Err(conflict(
                        "this parent is being detached from this bill; try again",
                    ))
                }
            }
            // Idempotent (its key): retried once on a transport failure.
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
            // 3. Confirm, or undo on a refusal.
            let bag = match claim {
                Ok(r) => r.into_inner().parent.unwrap_or_default(),
                Err(status) => {
                    let err = registry_error(&status);
                    if maybe_applied(err.code) {
                        // The claim may have happened: the reservation stays pending for a
                        // retry or the sweeper, which ask bag-registry.
                        tx.rollback().await?;
                    } else {
                        store::remove(&mut tx, &bill_id, parent, "pending").await?;
                        tx.commit().await?;
                    }
                    metrics::counter!("billing_attach_total", "outcome" => err.code.as_str())
                        .increment(1);
                    return Err(err);
                }
            };
            if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
                // A concurrent request with this key answered first; this claim stands and the
                // sweeper confirms the reservation.
                tx.rollback().await?;
                return Ok(first);
            }
            let row = self
                .confirm_locked(&mut tx, &who, &bill_id, parent, &bag, "request")
                .await?;
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
        // 1. The intent, committed: confirmed → detaching (the trigger refuses a closed bill).
        if !store::mark_detaching(self.pool(), &bill_id, parent).await? {
            match store::attachment(self.pool(), parent).await? {
                Some(a) if a.bill_id == bill_id && a.state == "detaching" => {}
                Some(a) if a.bill_id == bill_id => {
                    return Err(conflict(
                        "this parent is being attached to this bill; try again",
                    ))
                }
                _ => return Err(not_on_bill(parent)),
            }
        }
        // 2. Release in bag-registry holding the row's lock, then delete the row.
        let mut tx = self.pool().begin().await?;
        match store::lock_attachment(&mut tx, &bill_id, parent)
            .await?
            .as_deref()
        {
            Some("detaching") => {}
            // Finished meanwhile by a concurrent detach or the sweeper: detached.
            None => {
                tx.rollback().await?;
                return self
                    .answer_current(caller, RPC, req, &bill_id, |b| pb::DetachParentResponse {
                        bill: Some(b),
                    })
                    .await;
            }
            Some(_) => return Err(conflict("the parent's attachment changed; try again")),
        }
        let row = match self
            .release_locked(&mut tx, &who, &bill_id, parent, who.key("ReleaseParent"))
            .await?
        {
            Ok(row) => row,
            Err(refused) => {
                tx.commit().await?;
                return Err(refused);
            }
        };
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = pb::DetachParentResponse {
            bill: Some(to_pb(&row)),
        };
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}
