//! AttachParents: many parents onto one bill (a bill workbook import) through the attach saga of
//! [`crate::saga`] in bulk — the reservations (one statement, or one per parent when they do not
//! all fit), one ClaimParents call to bag-registry with no lock held, then the confirmations in
//! one transaction, each writing the `billing.parent_attached` event a single attach writes. Each
//! parent has its own outcome; a refusal of one never stops the others.

use std::collections::{HashMap, HashSet};

use tonic::Request;
use tracetrack_common::caller::{Caller, UserIdentity};
use tracetrack_common::client;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;

use crate::convert::to_pb;
use crate::registry::{maybe_applied, registry_error};
use crate::rules::{bill_not_found, MANAGERS};
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, Reservation, Stamp};

/// Most parents in one AttachParents request: a bill's largest capacity.
pub const MAX_PARENTS: usize = 500;

/// Rounds of reserve-claim-confirm for the parents a round could not settle (their row was
/// settled by someone else meanwhile), as AttachParent retries one parent.
const MAX_ROUNDS: usize = 5;

/// A parent reserved in this round, on its way to the claim.
struct Claim {
    index: usize,
    parent: String,
    stamp: Stamp,
}

impl Billing {
    pub(crate) async fn attach_parents(
        &self,
        req: Request<pb::AttachParentsRequest>,
    ) -> AppResult<pb::AttachParentsResponse> {
        const RPC: &str = "AttachParents";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        if req.parent_qrs.len() > MAX_PARENTS {
            return Err(AppError::invalid(format!(
                "at most {MAX_PARENTS} parents per request"
            )));
        }
        let mut resp = match MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            Some(first) => first,
            None => self.attach_many(&caller, &user, &req).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn attach_many(
        &self,
        caller: &Caller,
        user: &UserIdentity,
        req: &pb::AttachParentsRequest,
    ) -> AppResult<pb::AttachParentsResponse> {
        const RPC: &str = "AttachParents";
        let bill_id = self.visible(&req.bill_id).await?.bill_id;
        let who = Who::Request(caller);
        let mut results: Vec<pb::AttachParentResult> = req
            .parent_qrs
            .iter()
            .map(|q| pb::AttachParentResult {
                parent_qr: q.clone(),
                ..Default::default()
            })
            .collect();
        let refuse = |r: &mut pb::AttachParentResult, e: &AppError| {
            r.code = e.code.as_str().to_owned();
            r.message = e.message.clone();
            r.other_bill_id = e.detail("other_bill_id").unwrap_or_default().to_owned();
        };
        // The parents still to settle: (index in the request, normalised QR).
        let mut todo: Vec<(usize, String)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, raw) in req.parent_qrs.iter().enumerate() {
            match qr::normalize(raw) {
                Err(e) => refuse(&mut results[i], &AppError::new(e.code, e.message)),
                Ok(id) if !seen.insert(id.clone()) => refuse(
                    &mut results[i],
                    &AppError::invalid("this parent is listed twice in the request"),
                ),
                Ok(id) => todo.push((i, id)),
            }
        }

        for round in 0..MAX_ROUNDS {
            if todo.is_empty() {
                break;
            }
            let mut again = Vec::new();
            // 1. Reserve (committed at once). A parent refused `bill_full` waits for the end of
            //    the round: a place taken by a parent the registry then refuses comes back.
            let (reserved, refused) = self.reserve_all(&bill_id, &todo, user).await?;
            let mut full = Vec::new();
            for (i, e) in refused {
                if e.code == ErrorCode::BillFull {
                    full.push((i, e));
                } else {
                    refuse(&mut results[i], &e);
                }
            }
            let mut claims = Vec::new();
            let rest: Vec<(usize, String)> = todo
                .iter()
                .filter(|(_, p)| !reserved.contains_key(p))
                .filter(|(i, _)| results[*i].code.is_empty() && !full.iter().any(|(f, _)| f == i))
                .cloned()
                .collect();
            for (index, parent) in todo.iter().cloned() {
                if let Some(stamp) = reserved.get(&parent) {
                    claims.push(Claim {
                        index,
                        parent,
                        stamp: *stamp,
                    });
                }
            }
            // Those with a row already: where it is, as AttachParent looks.
            let held: HashMap<String, (String, String)> = store::holders(
                self.pool(),
                &rest.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
            )
            .await?
            .into_iter()
            .map(|(p, bill, state)| (p, (bill, state)))
            .collect();
            for (index, parent) in rest {
                match held.get(&parent) {
                    None => again.push((index, parent)),
                    Some((other, _)) if *other != bill_id => {
                        refuse(&mut results[index], &crate::rules::on_other_bill(other))
                    }
                    Some((_, state)) if state == "confirmed" => {
                        results[index].already_attached = true;
                    }
                    Some((_, state)) if state == "pending" => {
                        // A claim of it on its way (another request): wait for its lease,
                        // then take it over, or look again once it is settled.
                        match self.take_over(&bill_id, &parent, "pending").await? {
                            Some(stamp) => claims.push(Claim {
                                index,
                                parent,
                                stamp,
                            }),
                            None => again.push((index, parent)),
                        }
                    }
                    Some(_) => refuse(
                        &mut results[index],
                        &AppError::new(
                            ErrorCode::Conflict,
                            "this parent is being taken off this bill; try again",
                        ),
                    ),
                }
            }

            // 2. Claim them all in one call, no lock held (idempotent: a parent already this
            //    bill's is answered as claimed).
            let (confirmed, freed) = if claims.is_empty() {
                (Vec::new(), 0)
            } else {
                self.claim_all(&who, &bill_id, &claims, &mut results, &mut again)
                    .await?
            };
            for (i, e) in full {
                if freed > 0 && round + 1 < MAX_ROUNDS {
                    again.push((i, todo_parent(&todo, i)));
                } else {
                    refuse(&mut results[i], &e);
                }
            }

            // 3. Confirm, each conditional on its lease, in one transaction.
            if !confirmed.is_empty() {
                let mut tx = self.pool().begin().await?;
                for (claim, bag) in confirmed {
                    match self
                        .confirm_leased(
                            &mut tx,
                            &who,
                            &bill_id,
                            &claim.parent,
                            &bag,
                            claim.stamp,
                            "request",
                        )
                        .await?
                    {
                        Some(_) => results[claim.index].attached = true,
                        // Taken over meanwhile: look at its row again.
                        None => again.push((claim.index, claim.parent)),
                    }
                }
                tx.commit().await?;
            }
            todo = again;
        }
        for (i, _) in todo {
            refuse(
                &mut results[i],
                &AppError::new(
                    ErrorCode::Conflict,
                    "the parent's attachment kept changing; try again",
                ),
            );
        }
        for r in &results {
            let outcome = if r.attached {
                "attached"
            } else if r.already_attached {
                "already_attached"
            } else {
                r.code.as_str()
            };
            metrics::counter!("billing_attach_total", "outcome" => outcome.to_owned()).increment(1);
        }

        let mut tx = self.pool().begin().await?;
        if let Some(first) = MUTATIONS.replay(&mut tx, caller, RPC, req).await? {
            // A concurrent request with this key answered first; what this one did stands.
            tx.rollback().await?;
            return Ok(first);
        }
        let row = store::bill_by_id(&mut tx, &bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        let resp = pb::AttachParentsResponse {
            bill: Some(to_pb(&row)),
            results,
        };
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// Step 1 for many parents: one statement when they all fit, else one per parent (in the
    /// request's order, so the first ones take the free places). The parents reserved with
    /// their leases, and those refused (`bill_full`, `bill_completed`, `bill_not_found`).
    async fn reserve_all(
        &self,
        bill_id: &str,
        todo: &[(usize, String)],
        user: &UserIdentity,
    ) -> AppResult<(HashMap<String, Stamp>, Vec<(usize, AppError)>)> {
        let parents: Vec<String> = todo.iter().map(|(_, p)| p.clone()).collect();
        match store::reserve_many(self.pool(), bill_id, &parents, Some(user.id)).await {
            Ok(rows) => return Ok((rows.into_iter().collect(), Vec::new())),
            Err(e) if is_bill_refusal(&e) => {}
            Err(e) => return Err(e),
        }
        let mut reserved = HashMap::new();
        let mut refused = Vec::new();
        for (index, parent) in todo {
            match store::reserve(self.pool(), bill_id, parent, Some(user.id)).await {
                Ok(Reservation::Reserved(stamp)) => {
                    reserved.insert(parent.clone(), stamp);
                }
                Ok(_) => {}
                Err(e) if is_bill_refusal(&e) => refused.push((*index, e)),
                Err(e) => return Err(e),
            }
        }
        Ok((reserved, refused))
    }

    /// Step 2: ClaimParents for this round's reservations. Refused parents have their
    /// reservation undone and their code recorded; the claimed ones are returned with the
    /// registry's view of them, with how many places came back. With no answer at all, the reservations stay pending for a retry
    /// or the sweeper (as AttachParent leaves its one) and the request fails.
    async fn claim_all(
        &self,
        who: &Who<'_>,
        bill_id: &str,
        claims: &[Claim],
        results: &mut [pb::AttachParentResult],
        again: &mut Vec<(usize, String)>,
    ) -> AppResult<(Vec<(Claim, reg::Bag)>, usize)> {
        let key = who.key("ClaimParents");
        let items: Vec<reg::ClaimParentRequest> = claims
            .iter()
            .map(|c| reg::ClaimParentRequest {
                parent_qr: c.parent.clone(),
                bill_id: bill_id.to_owned(),
            })
            .collect();
        let answer = client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(
                reg::ClaimParentsRequest {
                    items: items.clone(),
                },
                who.token(),
                key.as_deref(),
            );
            async move { registry.claim_parents(req).await }
        })
        .await;
        let answer = match answer {
            Ok(r) => r.into_inner().results,
            Err(status) => {
                let err = registry_error(&status);
                if !maybe_applied(err.code) {
                    for c in claims {
                        store::remove(self.pool(), bill_id, &c.parent, "pending", c.stamp).await?;
                    }
                }
                return Err(err);
            }
        };
        let mut confirmed = Vec::new();
        let mut freed = 0;
        for (c, r) in claims.iter().zip(answer) {
            let claim = Claim {
                index: c.index,
                parent: c.parent.clone(),
                stamp: c.stamp,
            };
            if r.code.is_empty() {
                confirmed.push((claim, r.parent.unwrap_or_default()));
                continue;
            }
            if store::remove(self.pool(), bill_id, &c.parent, "pending", c.stamp).await? {
                freed += 1;
            }
            if r.code == ErrorCode::Conflict.as_str() {
                again.push((c.index, c.parent.clone()));
                continue;
            }
            let out = &mut results[c.index];
            out.code = r.code;
            out.message = r.message;
            out.other_bill_id = r.other_bill_id;
        }
        Ok((confirmed, freed))
    }
}

/// The QR of the request's parent `index` among those to settle.
fn todo_parent(todo: &[(usize, String)], index: usize) -> String {
    todo.iter()
        .find(|(i, _)| *i == index)
        .map(|(_, p)| p.clone())
        .unwrap_or_default()
}

/// A reservation refused for the bill's sake (full, closed, gone): that parent's outcome.
fn is_bill_refusal(e: &AppError) -> bool {
    matches!(
        e.code,
        ErrorCode::BillFull | ErrorCode::BillCompleted | ErrorCode::BillNotFound
    )
}
