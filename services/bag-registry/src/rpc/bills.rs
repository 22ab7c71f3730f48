//! A parent's bill, for billing alone: ClaimParent, ClaimParents, ReleaseParent, FreezeParents,
//! UnfreezeParents, GetBillFigures.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use tonic::Request;
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;

use crate::convert::qr_err;
use crate::state::Registry;
use crate::store;

/// Most items in one ClaimParents call.
pub const MAX_CLAIMS: usize = 1_000;

impl Registry {
    pub(crate) async fn claim_parent(
        &self,
        req: Request<pb::ClaimParentRequest>,
    ) -> AppResult<pb::ClaimParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        if req.bill_id.is_empty() {
            return Err(AppError::invalid("bill_id is required"));
        }
        let mut tx = self.pool().begin().await?;
        let existing = store::bag(&mut tx, &id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
        if !existing.is_parent() {
            return Err(AppError::new(
                ErrorCode::NotAParent,
                "only parent bags go on bills",
            ));
        }
        let claimed = store::claim(&mut tx, &id, &req.bill_id).await?;
        let (row, already) = match claimed {
            Some(row) => (row, false),
            None => {
                let now = store::bag(&mut tx, &id).await?.ok_or_else(|| {
                    AppError::new(ErrorCode::BagNotFound, "no bag with that code")
                })?;
                match now.bill_id.as_deref() {
                    Some(b) if b == req.bill_id => (now, true),
                    Some(other) => {
                        return Err(AppError::new(
                            ErrorCode::OnOtherBill,
                            "this parent is on another bill",
                        )
                        .with_detail("other_bill_id", other));
                    }
                    None => {
                        return Err(AppError::new(
                            ErrorCode::Conflict,
                            "the parent changed, retry",
                        ))
                    }
                }
            }
        };
        if !already {
            self.event(
                &mut tx,
                &caller,
                "registry.parent_claimed",
                &id,
                json!({"parent_qr": id, "bill_id": req.bill_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pb::ClaimParentResponse {
            parent: Some(row.to_pb()),
            already_claimed: already,
        })
    }

    /// ClaimParent for many items in one transaction: one result per item, each with its own
    /// code, the same outcomes and events as ClaimParent gives one by one.
    pub(crate) async fn claim_parents(
        &self,
        req: Request<pb::ClaimParentsRequest>,
    ) -> AppResult<pb::ClaimParentsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let items = req.into_inner().items;
        if items.len() > MAX_CLAIMS {
            return Err(AppError::invalid(format!(
                "at most {MAX_CLAIMS} parents per call"
            )));
        }
        let refused = |code: ErrorCode, message: &str| pb::ClaimParentResult {
            code: code.as_str().to_owned(),
            message: message.to_owned(),
            ..Default::default()
        };
        // Each item's QR, or its refusal.
        let mut results: Vec<Option<pb::ClaimParentResult>> = vec![None; items.len()];
        let mut ids: Vec<Option<String>> = vec![None; items.len()];
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if item.bill_id.is_empty() {
                results[i] = Some(refused(ErrorCode::InvalidArgument, "bill_id is required"));
                continue;
            }
            match qr::normalize(&item.parent_qr) {
                Err(e) => results[i] = Some(refused(e.code, e.message)),
                Ok(id) if !seen.insert(id.clone()) => {
                    results[i] = Some(refused(
                        ErrorCode::InvalidArgument,
                        "this parent is listed twice in the request",
                    ))
                }
                Ok(id) => ids[i] = Some(id),
            }
        }
        let (qrs, bills): (Vec<String>, Vec<String>) = ids
            .iter()
            .zip(&items)
            .filter_map(|(id, item)| id.clone().map(|id| (id, item.bill_id.clone())))
            .unzip();
        let mut tx = self.pool().begin().await?;
        let claimed: HashSet<String> = store::claim_many(&mut tx, &qrs, &bills)
            .await?
            .into_iter()
            .collect();
        let now: HashMap<String, store::BagRow> = store::bags(&mut tx, &qrs)
            .await?
            .into_iter()
            .map(|b| (b.qr.clone(), b))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let Some(id) = &ids[i] else { continue };
            let result = match now.get(id) {
                None => refused(ErrorCode::BagNotFound, "no bag with that code"),
                Some(b) if !b.is_parent() => {
                    refused(ErrorCode::NotAParent, "only parent bags go on bills")
                }
                Some(b) if b.bill_id.as_deref() == Some(item.bill_id.as_str()) => {
                    let fresh = claimed.contains(id);
                    if fresh {
                        self.event(
                            &mut tx,
                            &caller,
                            "registry.parent_claimed",
                            id,
                            json!({"parent_qr": id, "bill_id": item.bill_id}),
                        )
                        .await?;
                    }
                    pb::ClaimParentResult {
                        parent: Some(b.to_pb()),
                        already_claimed: !fresh,
                        ..Default::default()
                    }
                }
                Some(b) => match b.bill_id.as_deref() {
                    Some(other) => pb::ClaimParentResult {
                        other_bill_id: other.to_owned(),
                        ..refused(ErrorCode::OnOtherBill, "this parent is on another bill")
                    },
                    None => refused(ErrorCode::Conflict, "the parent changed, retry"),
                },
            };
            results[i] = Some(result);
        }
        tx.commit().await?;
        Ok(pb::ClaimParentsResponse {
            results: results.into_iter().map(Option::unwrap_or_default).collect(),
        })
    }

    pub(crate) async fn release_parent(
        &self,
        req: Request<pb::ReleaseParentRequest>,
    ) -> AppResult<pb::ReleaseParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        let released = store::release(&mut tx, &id, &req.bill_id).await?;
        if !released {
            if let Some(b) = store::bag(&mut tx, &id).await? {
                if b.frozen && b.bill_id.as_deref() == Some(req.bill_id.as_str()) {
                    return Err(AppError::new(
                        ErrorCode::BillCompleted,
                        "the bill is completed; reopen it first",
                    ));
                }
            }
        } else {
            self.event(
                &mut tx,
                &caller,
                "registry.parent_released",
                &id,
                json!({"parent_qr": id, "bill_id": req.bill_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pb::ReleaseParentResponse { released })
    }

    async fn set_frozen(&self, caller: &Caller, bill_id: &str, frozen: bool) -> AppResult<u32> {
        let mut tx = self.pool().begin().await?;
        let n = store::set_frozen(&mut tx, bill_id, frozen).await?;
        let kind = if frozen {
            "registry.parents_frozen"
        } else {
            "registry.parents_unfrozen"
        };
        self.event(
            &mut tx,
            caller,
            kind,
            bill_id,
            json!({"bill_id": bill_id, "parents": n}),
        )
        .await?;
        tx.commit().await?;
        Ok(n as u32)
    }

    pub(crate) async fn freeze_parents(
        &self,
        req: Request<pb::FreezeParentsRequest>,
    ) -> AppResult<pb::FreezeParentsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let frozen = self
            .set_frozen(&caller, &req.get_ref().bill_id, true)
            .await?;
        Ok(pb::FreezeParentsResponse { frozen })
    }

    pub(crate) async fn unfreeze_parents(
        &self,
        req: Request<pb::UnfreezeParentsRequest>,
    ) -> AppResult<pb::UnfreezeParentsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let unfrozen = self
            .set_frozen(&caller, &req.get_ref().bill_id, false)
            .await?;
        Ok(pb::UnfreezeParentsResponse { unfrozen })
    }

    pub(crate) async fn get_bill_figures(
        &self,
        req: Request<pb::GetBillFiguresRequest>,
    ) -> AppResult<pb::GetBillFiguresResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let rows = store::bill_figures(self.pool(), &req.get_ref().bill_ids).await?;
        Ok(pb::GetBillFiguresResponse {
            figures: rows
                .into_iter()
                .map(|f| pb::BillFigures {
                    bill_id: f.bill_id,
                    parent_count: f.parent_count as i32,
                    child_count: f.child_count,
                    actual_weight_kg: f.actual_weight_kg,
                    expected_weight_kg: f.expected_weight_kg,
                })
                .collect(),
        })
    }

    pub(crate) async fn return_parent(
        &self,
        req: Request<pb::ReturnParentRequest>,
    ) -> AppResult<pb::ReturnParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        if req.bill_id.is_empty() {
            return Err(AppError::invalid("bill_id is required"));
        }
        let area = self.known_area(&req.area)?;
        let mut tx = self.pool().begin().await?;
        let before = store::bag(&mut tx, &id).await?;
        let returned = store::return_parent(&mut tx, &id, &req.bill_id, &area).await?;
        let row = store::bag(&mut tx, &id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
        if returned {
            self.event(
                &mut tx,
                &caller,
                "registry.parent_returned",
                &id,
                json!({
                    "parent_qr": id,
                    "bill_id": req.bill_id,
                    "area": area,
                    "from_area": before.map(|b| b.area).unwrap_or_default(),
                    "child_count": row.child_count,
                }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pb::ReturnParentResponse {
            parent: Some(row.to_pb()),
            returned,
        })
    }
}
