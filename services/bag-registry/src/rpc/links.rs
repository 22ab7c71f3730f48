//! Children in parents: ListChildren, UnlinkChild, MoveChild (managers), and LinkChild and
//! UndoLastLink (scan's, on behalf of the user scanning).

use serde_json::json;
use tonic::Request;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;

use super::link_batch::LinkJob;
use super::MANAGERS;
use crate::convert::qr_err;
use crate::state::{Registry, MUTATIONS};
use crate::store::{self, BagRow};
use tracetrack_common::page;

impl Registry {
    pub(crate) async fn list_children(
        &self,
        req: Request<pb::ListChildrenRequest>,
    ) -> AppResult<pb::ListChildrenResponse> {
        let caller = self.caller(&req).await?;
        caller.user()?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut conn = self.pool().acquire().await?;
        let parent = store::parent(&mut conn, &id).await?;
        caller.check_area(&parent.area)?;
        let size = page::size(req.page_size);
        let after = if req.page_token.is_empty() {
            None
        } else {
            page::parts(&req.page_token)?.into_iter().next()
        };
        let rows = store::children(&mut conn, &id, after.as_deref(), size + 1).await?;
        let more = rows.len() as i64 > size;
        let rows = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => page::encode(std::slice::from_ref(&last.qr)),
            _ => String::new(),
        };
        Ok(pb::ListChildrenResponse {
            children: rows.iter().map(BagRow::to_pb).collect(),
            next_page_token,
            parent: Some(parent.to_pb()),
        })
    }

    pub(crate) async fn unlink_child(
        &self,
        req: Request<pb::UnlinkChildRequest>,
    ) -> AppResult<pb::UnlinkChildResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let child_id = qr::normalize(&req.child_qr).map_err(qr_err)?;
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = MUTATIONS.replay(&mut tx, &caller, "UnlinkChild", &req).await? {
                return Ok(r);
            }
            let child = store::unlink(&mut tx, &child_id, &parent_id).await?;
            let Some(child) = child else {
                return Err(AppError::new(ErrorCode::BagNotFound, "that child is not in this parent")
                    .with_detail("child_qr", &child_id));
            };
            let parent = store::parent(&mut tx, &parent_id).await?;
            self.event(&mut tx, &caller, "registry.child_unlinked", &child_id, json!({"parent_qr": parent_id, "child_qr": child_id, "area": child.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::UnlinkChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()) };
            MUTATIONS.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }

    pub(crate) async fn move_child(
        &self,
        req: Request<pb::MoveChildRequest>,
    ) -> AppResult<pb::MoveChildResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let (parent_id, _) = qr::parent_id(&req.parent_qr, &self.0.lines).map_err(qr_err)?;
        let child_id = qr::child_id(&req.child_qr, &self.0.lines).map_err(qr_err)?;
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = MUTATIONS.replay(&mut tx, &caller, "MoveChild", &req).await? {
                return Ok(r);
            }
            store::parent(&mut tx, &parent_id).await?;
            let before = store::bag(&mut tx, &child_id)
                .await?
                .filter(|b| !b.is_parent())
                .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no child with that code"))?;
            if before.parent_qr.as_deref() == Some(parent_id.as_str()) {
                let parent = store::parent(&mut tx, &parent_id).await?;
                return Ok(pb::MoveChildResponse { parent: Some(parent.to_pb()), child: Some(before.to_pb()), previous_parent: None });
            }
            let child = store::move_child(&mut tx, &child_id, &parent_id, user.id).await?;
            let parent = store::parent(&mut tx, &parent_id).await?;
            let previous = match &before.parent_qr {
                Some(p) => Some(store::parent(&mut tx, p).await?.to_pb()),
                None => None,
            };
            self.event(&mut tx, &caller, "registry.child_moved", &child_id, json!({"child_qr": child_id, "from_parent_qr": before.parent_qr, "to_parent_qr": parent_id, "from_area": before.area, "area": child.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::MoveChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()), previous_parent: previous };
            MUTATIONS.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }

    pub(crate) async fn link_child(
        &self,
        req: Request<pb::LinkChildRequest>,
    ) -> AppResult<pb::LinkChildResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let raw_child = qr::normalize(&req.child_qr).map_err(qr_err)?;
        if raw_child == parent_id {
            return Err(AppError::new(
                ErrorCode::SameAsParent,
                "that is the parent itself, scan a child",
            ));
        }
        let child_id = qr::child_id(&req.child_qr, &self.0.lines).map_err(qr_err)?;
        // A dispatcher links only within their area: the statement links nothing elsewhere.
        let area = (user.role.is_area_scoped()).then(|| user.area.clone().unwrap_or_default());
        let job = LinkJob {
            caller,
            req,
            parent_id,
            child_id,
            user_id: user.id,
            area,
        };
        // Concurrent links share a transaction and a commit (group commit, link_batch.rs).
        match self.0.links.submit(job).await {
            Ok(answer) => answer,
            Err(job) => self.link_alone(&job).await,
        }
    }

    /// One LinkChild in its own transaction (batching off, a batch of one, or a batch that
    /// could not be sure of an answer).
    pub(crate) async fn link_alone(&self, job: &LinkJob) -> AppResult<pb::LinkChildResponse> {
        let LinkJob {
            caller,
            req,
            parent_id,
            child_id,
            user_id,
            area,
        } = job;
        let (parent_id, child_id) = (parent_id.as_str(), child_id.as_str());
        // The key is claimed with the answer as the last write (write-once, issue 18): a replay
        // re-runs the link, finds the child in the parent and gets the first answer instead.
        let pool = self.pool();
        let linked = tracetrack_common::db::retry(|| async {
            let mut tx = pool.begin().await?;
            // One statement: the parent, and the child registered or claimed into it.
            let (parent, linked) =
                store::link_into(&mut tx, parent_id, child_id, *user_id, area.as_deref()).await?;
            let parent = store::must_be_parent(parent, parent_id)?;
            caller.check_area(&parent.area)?;
            let Some(store::LinkedRow { bag: child, inserted, area_before }) = linked else {
                // The child exists and was not free: say where it is.
                let existing = store::bag(&mut tx, child_id)
                    .await?
                    .ok_or_else(|| AppError::new(ErrorCode::Conflict, "the child changed, retry"))?;
                if existing.is_parent() {
                    return Err(AppError::new(ErrorCode::QrIsParent, "that is a parent bag, scan a child"));
                }
                return match existing.parent_qr.as_deref() {
                    Some(p) if p == parent_id => {
                        let resp = pb::LinkChildResponse { parent: Some(parent.to_pb()), child: Some(existing.to_pb()), already_linked: true };
                        MUTATIONS.commit_answer(pool, tx, caller, ("LinkChild", req), resp, None).await
                    }
                    Some(other) => Err(AppError::new(ErrorCode::ChildLinkedElsewhere, "this child is already in another parent bag")
                        .with_detail("other_parent_qr", other)),
                    None => Err(AppError::new(ErrorCode::Conflict, "the child changed, retry")),
                };
            };
            // The count after the link (the trigger changed it).
            let parent = store::parent(&mut tx, parent_id).await?;
            let payload = json!({"parent_qr": parent_id, "child_qr": child_id, "area": parent.area, "created": inserted, "area_before": area_before, "parent_child_count": parent.child_count, "capacity": parent.capacity});
            let event = self.new_event(caller, "registry.child_linked", child_id, payload);
            let resp = pb::LinkChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()), already_linked: false };
            let (resp, ours) = MUTATIONS.commit_answer(pool, tx, caller, ("LinkChild", req), resp, Some(event)).await?;
            if ours {
                metrics::counter!("registry_links_total").increment(1);
            }
            Ok((resp, ours))
        })
        .await;
        match linked {
            Ok((resp, _)) => Ok(resp),
            Err(e) => {
                MUTATIONS
                    .earlier_answer_or(pool, caller, "LinkChild", req, e)
                    .await
            }
        }
    }

    pub(crate) async fn undo_last_link(
        &self,
        req: Request<pb::UndoLastLinkRequest>,
    ) -> AppResult<pb::UndoLastLinkResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let named_child = if req.child_qr.trim().is_empty() {
            None
        } else {
            Some(qr::normalize(&req.child_qr).map_err(qr_err)?)
        };
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = MUTATIONS.replay(&mut tx, &caller, "UndoLastLink", &req).await? {
                return Ok(r);
            }
            let parent = store::parent(&mut tx, &parent_id).await?;
            caller.check_area(&parent.area)?;
            let undone =
                store::undo_last_link(&mut tx, &parent_id, user.id, named_child.as_deref()).await?;
            let Some(child_id) = undone else {
                return Err(match &named_child {
                    Some(c) => AppError::new(ErrorCode::NothingToUndo, "that child is not your newest link on this parent from the last hour")
                        .with_detail("child_qr", c),
                    None => AppError::new(ErrorCode::NothingToUndo, "you have no link on this parent from the last hour to undo"),
                });
            };
            let parent = store::parent(&mut tx, &parent_id).await?;
            self.event(&mut tx, &caller, "registry.child_unlinked", &child_id, json!({"parent_qr": parent_id, "child_qr": child_id, "undo": true, "area": parent.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::UndoLastLinkResponse { parent: Some(parent.to_pb()), unlinked_child_qr: child_id };
            MUTATIONS.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }
}
