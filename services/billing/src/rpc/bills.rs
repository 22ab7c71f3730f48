//! Bills themselves: CreateBill, GetBill, ListBills, UpdateBill, DeleteBill.

use serde_json::json;
use tonic::Request;
use tracetrack_common::caller::AreaView as View;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{bill, Role};
use tracetrack_proto::billing::v1 as pb;

use crate::convert::{list_filter, snapshot, to_pb, ts};
use crate::registry::apply_figures;
use crate::rules::{
    below_attached, bill_completed, bill_not_found, capacity, conflict, named_bill, phone, text,
    CLOSED, MANAGERS, MAX_DESCRIPTION, MAX_DESTINATION, MAX_DRIVER_NAME, MAX_SEAL, MAX_VEHICLE,
};
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, BillEdit, NewBill};
use tracetrack_common::page;

impl Billing {
    pub(crate) async fn create_bill(
        &self,
        req: Request<pb::CreateBillRequest>,
    ) -> AppResult<pb::CreateBillResponse> {
        const RPC: &str = "CreateBill";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let id = bill::normalize(&req.bill_id).map_err(|e| AppError::new(e.code, e.message))?;
        let capacity = capacity(if req.capacity == 0 { 1 } else { req.capacity })?;
        let description = text(&req.description, MAX_DESCRIPTION, "description")?;
        let destination = text(&req.destination, MAX_DESTINATION, "destination")?;
        let vehicle = text(&req.vehicle_number, MAX_VEHICLE, "vehicle_number")?;
        let mut tx = self.pool().begin().await?;
        if let Some(first) = MUTATIONS.replay(&mut tx, &caller, RPC, &req).await? {
            return Ok(first);
        }
        let row = store::insert_bill(
            &mut tx,
            &NewBill {
                bill_id: &id,
                capacity,
                description: &description,
                destination: &destination,
                vehicle_number: &vehicle,
                created_by: user.id,
                created_by_username: &user.username,
            },
        )
        .await?;
        self.event(
            &mut tx,
            &Who::Request(&caller),
            "billing.bill_created",
            &row.bill_id,
            row.version,
            json!({ "bill_id": row.bill_id, "status": row.status, "bill": snapshot(&row) }),
        )
        .await?;
        // A new bill has no parents: its figures are zero without asking bag-registry.
        let resp = pb::CreateBillResponse {
            bill: Some(to_pb(&row)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    pub(crate) async fn get_bill(
        &self,
        req: Request<pb::GetBillRequest>,
    ) -> AppResult<pb::GetBillResponse> {
        self.read_bill(req, false).await
    }

    /// GetBill for the dispatch document: every parent, whoever reads it.
    pub(crate) async fn get_bill_document(
        &self,
        req: Request<pb::GetBillRequest>,
    ) -> AppResult<pb::GetBillResponse> {
        self.read_bill(req, true).await
    }

    /// A bill with its parents: those the caller's area view sees, or all of them (`whole`: the
    /// document; their bags are then read under billing's own identity, as bag-registry narrows
    /// a user's batch lookup to their area).
    async fn read_bill(
        &self,
        req: Request<pb::GetBillRequest>,
        whole: bool,
    ) -> AppResult<pb::GetBillResponse> {
        let caller = self.caller(&req).await?;
        let view = match reader_view(&caller)? {
            _ if whole => View::All,
            v => v,
        };
        let row = self.visible(&req.get_ref().bill_id).await?;
        let attached = store::confirmed_parents(self.pool(), &row.bill_id).await?;
        let token = caller.user_token.as_deref();
        let qrs = attached.iter().map(|a| a.parent_qr.clone()).collect();
        let (bags, figures) = futures::try_join!(
            self.bags(if whole { None } else { token }, qrs),
            self.figures(token, vec![row.bill_id.clone()])
        )?;
        let parents = attached
            .into_iter()
            .filter_map(|a| {
                let bag = bags.get(&a.parent_qr);
                let area = bag.map(|b| b.area.clone()).unwrap_or_default();
                view.sees(&area).then(|| pb::BillParent {
                    product_line: bag
                        .map(|b| b.product_line.clone())
                        .filter(|l| !l.is_empty())
                        .unwrap_or_else(|| a.product_line.clone()),
                    child_count: bag.map(|b| b.child_count).unwrap_or(0),
                    weight_kg: bag.map(|b| b.weight_kg).unwrap_or(0.0),
                    expected_weight_kg: a.expected_weight_kg.unwrap_or(0.0),
                    area,
                    capacity: bag.map(|b| b.capacity).unwrap_or(0),
                    attached_at: a.attached_at.map(ts),
                    qr: a.parent_qr,
                })
            })
            .collect();
        let mut bill = to_pb(&row);
        apply_figures(&mut bill, figures.get(&row.bill_id));
        let returns = store::returns_of_bill(self.pool(), &row.bill_id).await?;
        Ok(pb::GetBillResponse {
            bill: Some(bill),
            parents,
            returns: returns.iter().map(super::returns::return_to_pb).collect(),
        })
    }

    pub(crate) async fn list_bills(
        &self,
        req: Request<pb::ListBillsRequest>,
    ) -> AppResult<pb::ListBillsResponse> {
        let caller = self.caller(&req).await?;
        reader_view(&caller)?;
        let req = req.into_inner();
        let size = page::size(req.page_size);
        let mut filter = list_filter(&req)?;
        filter.after = match req.page_token.as_str() {
            "" => None,
            t => Some(page::decode_at(t)?),
        };
        filter.limit = size + 1;
        let rows = store::list_bills(self.pool(), &filter).await?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let bills = self
            .with_figures_all(caller.user_token.as_deref(), page)
            .await?;
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => page::encode_at(last.created_at, &last.bill_id),
            _ => String::new(),
        };
        Ok(pb::ListBillsResponse {
            bills,
            next_page_token,
        })
    }

    pub(crate) async fn update_bill(
        &self,
        req: Request<pb::UpdateBillRequest>,
    ) -> AppResult<pb::UpdateBillResponse> {
        const RPC: &str = "UpdateBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let description = req
            .description
            .as_deref()
            .map(|d| text(d, MAX_DESCRIPTION, "description"))
            .transpose()?;
        let destination = req
            .destination
            .as_deref()
            .map(|d| text(d, MAX_DESTINATION, "destination"))
            .transpose()?;
        let vehicle = req
            .vehicle_number
            .as_deref()
            .map(|d| text(d, MAX_VEHICLE, "vehicle_number"))
            .transpose()?;
        let edit = BillEdit {
            description,
            destination,
            vehicle_number: vehicle,
            capacity: req.capacity.map(capacity).transpose()?,
            driver_name: req
                .driver_name
                .as_deref()
                .map(|d| text(d, MAX_DRIVER_NAME, "driver_name"))
                .transpose()?,
            driver_phone: req.driver_phone.as_deref().map(phone).transpose()?,
            seal_number: req
                .seal_number
                .as_deref()
                .map(|d| text(d, MAX_SEAL, "seal_number"))
                .transpose()?,
        };
        if let Some(mut first) = MUTATIONS
            .stored_answer::<pb::UpdateBillResponse>(self.pool(), &caller, RPC, &req)
            .await?
        {
            self.with_figures(&caller, &mut first.bill).await?;
            return Ok(first);
        }
        let mut tx = self.pool().begin().await?;
        if let Some(mut first) = MUTATIONS
            .replay::<pb::UpdateBillResponse>(&mut tx, &caller, RPC, &req)
            .await?
        {
            tx.rollback().await?;
            self.with_figures(&caller, &mut first.bill).await?;
            return Ok(first);
        }
        // The row as it was (locked, for the event's "before" and to explain a refusal); the
        // capacity rule itself is the UPDATE's condition.
        let before = store::lock_for_edit(&mut tx, &id)
            .await?
            .ok_or_else(bill_not_found)?;
        let capacity_changes = edit.capacity.is_some_and(|c| c != before.capacity);
        if capacity_changes && CLOSED.contains(&before.status.as_str()) {
            return Err(bill_completed());
        }
        let updated = store::update_bill(&mut tx, &before, &edit).await?;
        if updated.is_none() {
            return Err(if CLOSED.contains(&before.status.as_str()) {
                bill_completed()
            } else {
                below_attached(before.parent_count)
            });
        }
        let after = store::bill_by_id(&mut tx, &before.bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        let (mut was, mut now) = (serde_json::Map::new(), serde_json::Map::new());
        for (field, old, new) in [
            ("description", &before.description, &after.description),
            ("destination", &before.destination, &after.destination),
            (
                "vehicle_number",
                &before.vehicle_number,
                &after.vehicle_number,
            ),
            ("driver_name", &before.driver_name, &after.driver_name),
            ("driver_phone", &before.driver_phone, &after.driver_phone),
            ("seal_number", &before.seal_number, &after.seal_number),
        ] {
            if old != new {
                was.insert(field.into(), json!(old));
                now.insert(field.into(), json!(new));
            }
        }
        if before.capacity != after.capacity {
            was.insert("capacity".into(), json!(before.capacity));
            now.insert("capacity".into(), json!(after.capacity));
        }
        self.event(
            &mut tx,
            &Who::Request(&caller),
            "billing.bill_updated",
            &after.bill_id,
            after.version,
            json!({ "bill_id": after.bill_id, "status": after.status, "before": was, "after": now }),
        )
        .await?;
        let resp = pb::UpdateBillResponse {
            bill: Some(to_pb(&after)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        let mut resp = resp;
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    pub(crate) async fn delete_bill(
        &self,
        req: Request<pb::DeleteBillRequest>,
    ) -> AppResult<pb::DeleteBillResponse> {
        const RPC: &str = "DeleteBill";
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        if let Some(first) = MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            return Ok(first);
        }
        // 1. The intent: a bill being deleted takes no new parent and is hidden from readers.
        //    A deletion under way (a live lease) is waited for.
        let waiting = self.lease_wait();
        let intent = loop {
            let from = ["new", "processing"];
            if let Some(intent) = store::begin_intent(
                self.pool(),
                &id,
                "deleting",
                &from,
                &["deleting"],
                false,
                self.lease_ms(),
            )
            .await?
            {
                break Some(intent);
            }
            match store::bill_lease(self.pool(), &id, self.lease_ms()).await? {
                None => break None,
                Some(l) if l.status == "deleting" => {
                    waiting.next("the bill is being deleted").await?
                }
                Some(l) if l.returned_count > 0 => {
                    return Err(tracetrack_common::AppError::new(
                        tracetrack_domain::ErrorCode::BillHasReturns,
                        "a bill with returns can be neither reopened nor deleted",
                    ))
                }
                Some(_) => return Err(bill_completed()),
            }
        };
        // 2. Release every parent in bag-registry, then delete.
        let who = Who::Request(&caller);
        let had_intent = intent.is_some();
        let deleted = match intent {
            Some(intent) => {
                self.delete_leased(&who, &intent.bill_id, intent.stamp, true)
                    .await?
            }
            None => None,
        };
        let Some((mut tx, _)) = deleted else {
            // Finished meanwhile by a concurrent delete or the sweeper (or never there).
            let mut tx = self.pool().begin().await?;
            if let Some(first) = MUTATIONS.replay(&mut tx, &caller, RPC, &req).await? {
                return Ok(first);
            }
            if store::bill_status(&mut *tx, &id).await?.is_some() {
                return Err(conflict("the bill is being deleted; try again"));
            }
            if !had_intent {
                return Err(bill_not_found());
            }
            let resp = pb::DeleteBillResponse {};
            MUTATIONS.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            return Ok(resp);
        };
        if let Some(first) = MUTATIONS.replay(&mut tx, &caller, RPC, &req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = pb::DeleteBillResponse {};
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}

/// Who may read bills: every user (a dispatcher their own area's parents), and stats' report
/// scheduler, which calls with its service token alone (it sees every area).
fn reader_view(caller: &tracetrack_common::caller::Caller) -> AppResult<View> {
    if caller.user.is_none() && caller.require_service(&["stats"]).is_ok() {
        return Ok(View::All);
    }
    Ok(View::of(caller.user()?))
}
