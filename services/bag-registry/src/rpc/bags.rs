//! Bags themselves: RegisterBag, GetBag, GetBags, SearchBags, DeleteBag, and EnsureParent
//! (scan's: the parent a scan starts from, registered on first sight).

use chrono::{TimeZone, Utc};
use serde_json::json;
use tonic::Request;
use tracetrack_common::caller::UserIdentity;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr;
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::registry::v1 as pb;

use super::MANAGERS;
use crate::convert::{from_ts, qr_err};
use crate::state::{Registry, MUTATIONS};
use crate::store::{self, BagRow};
use tracetrack_common::page;

impl Registry {
    pub(crate) async fn register_bag(
        &self,
        req: Request<pb::RegisterBagRequest>,
    ) -> AppResult<pb::RegisterBagResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let area = if req.area.trim().is_empty() {
            return Err(AppError::new(
                ErrorCode::AreaRequired,
                "name the bag's area",
            ));
        } else {
            self.known_area(&req.area)?
        };
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "RegisterBag", &req)
            .await?
        {
            return Ok(r);
        }
        let row = match pb::BagType::try_from(req.r#type) {
            Ok(pb::BagType::Parent) => {
                let (id, line) = qr::parent_id(&req.qr, &self.0.lines).map_err(qr_err)?;
                store::insert_parent(&mut tx, &id, &line.name, &area, created_by(&caller)).await?
            }
            Ok(pb::BagType::Child) => {
                let id = qr::child_id(&req.qr, &self.0.lines).map_err(qr_err)?;
                store::insert_child(&mut tx, &id, &area, user.id).await?
            }
            _ => return Err(AppError::invalid("type must be parent or child")),
        };
        let row = row
            .ok_or_else(|| AppError::new(ErrorCode::BagExists, "that bag is already registered"))?;
        self.event(&mut tx, &caller, "registry.bag_registered", &row.qr, json!({"bag": row.to_pb().qr, "kind": row.kind, "area": row.area, "product_line": row.product_line}))
            .await?;
        let resp = pb::RegisterBagResponse {
            bag: Some(row.to_pb()),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    pub(crate) async fn get_bag(
        &self,
        req: Request<pb::GetBagRequest>,
    ) -> AppResult<pb::GetBagResponse> {
        self.caller(&req).await?.user()?;
        let id = qr::normalize(&req.get_ref().qr).map_err(qr_err)?;
        let mut conn = self.pool().acquire().await?;
        let bag = store::bag(&mut conn, &id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
        Ok(pb::GetBagResponse {
            bag: Some(bag.to_pb()),
        })
    }

    pub(crate) async fn get_bags(
        &self,
        req: Request<pb::GetBagsRequest>,
    ) -> AppResult<pb::GetBagsResponse> {
        let caller = self.caller(&req).await?;
        if caller.user.is_none() && caller.service.is_none() {
            return Err(AppError::unauthenticated());
        }
        // A user sees the bags of the areas they may see (one bag by id is open to every
        // role — GetBag — but a batch is a list); a service (billing) sees all.
        let view = match &caller.user {
            Some(_) => tracetrack_common::caller::AreaView::of(caller.user()?),
            None => tracetrack_common::caller::AreaView::All,
        };
        let qrs: Vec<String> = req
            .get_ref()
            .qrs
            .iter()
            .filter_map(|q| qr::normalize(q).ok())
            .collect();
        if qrs.len() > 500 {
            return Err(AppError::invalid("at most 500 bags at once"));
        }
        let mut conn = self.pool().acquire().await?;
        let rows = store::bags(&mut conn, &qrs).await?;
        Ok(pb::GetBagsResponse {
            bags: rows
                .iter()
                .filter(|b| view.sees(&b.area))
                .map(BagRow::to_pb)
                .collect(),
        })
    }

    /// SearchBags' filters (shared with ExportBags): a dispatcher's area is their own.
    pub(crate) fn bag_filter(
        &self,
        user: &UserIdentity,
        req: &pb::SearchBagsRequest,
    ) -> AppResult<store::BagFilter> {
        Ok(store::BagFilter {
            // An area-scoped user without an area sees nothing (no bag has the empty area).
            area: if user.role.is_area_scoped() {
                Some(user.area.clone().unwrap_or_default())
            } else if req.area.trim().is_empty() {
                None
            } else {
                Some(self.known_area(&req.area)?)
            },
            kind: match pb::BagType::try_from(req.r#type) {
                Ok(pb::BagType::Parent) => Some("parent"),
                Ok(pb::BagType::Child) => Some("child"),
                _ => None,
            },
            prefix: if req.qr_prefix.trim().is_empty() {
                None
            } else {
                Some(qr::normalize(&req.qr_prefix).map_err(qr_err)?)
            },
            linked: req.linked,
            billed: req.billed,
            from: from_ts(&req.created_from),
            to: from_ts(&req.created_to),
        })
    }

    pub(crate) async fn search_bags(
        &self,
        req: Request<pb::SearchBagsRequest>,
    ) -> AppResult<pb::SearchBagsResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let filter = self.bag_filter(&user, &req)?;
        let size = page::size(req.page_size);
        let rows: Vec<BagRow> = if filter.prefix.is_some() {
            // Prefix search walks the primary key ("C" collation) in QR order.
            let after = if req.page_token.is_empty() {
                None
            } else {
                page::parts(&req.page_token)?.into_iter().next()
            };
            let mut conn = self.pool().acquire().await?;
            store::bags_by_qr(&mut conn, &filter, after.as_deref(), size + 1).await?
        } else {
            // Newest first, keyset on (created_at, qr).
            let after = if req.page_token.is_empty() {
                None
            } else {
                let parts = page::parts(&req.page_token)?;
                let micros: i64 = parts
                    .first()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| AppError::invalid("bad page_token"))?;
                let at = Utc
                    .timestamp_micros(micros)
                    .single()
                    .ok_or_else(|| AppError::invalid("bad page_token"))?;
                Some((at, parts.get(1).cloned().unwrap_or_default()))
            };
            store::bags_newest(self.pool(), &filter, after.as_ref(), size + 1).await?
        };
        let more = rows.len() as i64 > size;
        let rows = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) if req.qr_prefix.trim().is_empty() => page::encode(&[
                last.created_at.timestamp_micros().to_string(),
                last.qr.clone(),
            ]),
            (true, Some(last)) => page::encode(std::slice::from_ref(&last.qr)),
            _ => String::new(),
        };
        Ok(pb::SearchBagsResponse {
            bags: rows.iter().map(BagRow::to_pb).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn delete_bag(
        &self,
        req: Request<pb::DeleteBagRequest>,
    ) -> AppResult<pb::DeleteBagResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = qr::normalize(&req.qr).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "DeleteBag", &req)
            .await?
        {
            return Ok(r);
        }
        let deleted = store::delete_free_bag(&mut tx, &id).await?;
        let Some(deleted) = deleted else {
            let existing = store::bag(&mut tx, &id).await?;
            return Err(match existing {
                None => AppError::new(ErrorCode::BagNotFound, "no bag with that code"),
                Some(b) if b.child_count > 0 => {
                    AppError::new(ErrorCode::BagHasChildren, "unlink its children first")
                }
                Some(b) if b.parent_qr.is_some() => {
                    AppError::new(ErrorCode::BagLinked, "unlink it from its parent first")
                        .with_detail("parent_qr", b.parent_qr.unwrap_or_default())
                }
                Some(b) => AppError::new(ErrorCode::BagOnBill, "detach it from its bill first")
                    .with_detail("bill_id", b.bill_id.unwrap_or_default()),
            });
        };
        self.event(
            &mut tx,
            &caller,
            "registry.bag_deleted",
            &id,
            json!({"bag": deleted.to_pb().qr, "kind": deleted.kind, "area": deleted.area}),
        )
        .await?;
        let resp = pb::DeleteBagResponse {};
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    pub(crate) async fn ensure_parent(
        &self,
        req: Request<pb::EnsureParentRequest>,
    ) -> AppResult<pb::EnsureParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let (id, line) = qr::parent_id(&req.qr, &self.0.lines).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "EnsureParent", &req)
            .await?
        {
            return Ok(r);
        }
        if let Some(existing) = store::bag(&mut tx, &id).await? {
            if !existing.is_parent() {
                return Err(AppError::new(
                    ErrorCode::QrIsChild,
                    "that is a child label, scan a parent bag",
                ));
            }
            caller.check_area(&existing.area)?;
            return Ok(pb::EnsureParentResponse {
                parent: Some(existing.to_pb()),
                created: false,
            });
        }
        let area = match (&user.area, user.role) {
            (Some(a), Role::Dispatcher) => a.clone(),
            _ if req.area.trim().is_empty() => {
                return Err(AppError::new(
                    ErrorCode::AreaRequired,
                    "name the area of this new parent bag",
                ));
            }
            _ => self.known_area(&req.area)?,
        };
        let (row, created) =
            match store::insert_parent(&mut tx, &id, &line.name, &area, created_by(&caller)).await?
            {
                Some(row) => (row, true),
                // Registered concurrently by someone else: re-select it.
                None => (store::parent(&mut tx, &id).await?, false),
            };
        if created {
            self.event(&mut tx, &caller, "registry.bag_registered", &id, json!({"bag": id, "kind": "parent", "area": row.area, "product_line": row.product_line}))
                .await?;
        }
        let resp = pb::EnsureParentResponse {
            parent: Some(row.to_pb()),
            created,
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}

/// Who registers a bag: the end user, when there is one.
fn created_by(caller: &tracetrack_common::caller::Caller) -> Option<uuid::Uuid> {
    caller.user.as_ref().map(|u| u.id)
}
