//! The audit trail (admins) and a bag's history (every role that may see the bag).

use tonic::Request;
use tracetrack_common::caller::AreaView;
use tracetrack_common::client;
use tracetrack_common::time::ts;
use tracetrack_common::{page, AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::registry::v1::GetBagRequest;
use tracetrack_proto::stats::v1 as pb;
use uuid::Uuid;

use super::from_ts;
use crate::state::Stats;
use crate::store::{self, AuditFilter, AuditRow};

/// An audit row as a caller may see it: the actor's address and the raw details are for admins
/// only (a bag's history is open to every role that may see the bag).
fn audit_row_for(r: AuditRow, admin: bool) -> pb::AuditEvent {
    let mut e = audit_row(r);
    if !admin {
        e.ip.clear();
        e.details_json.clear();
    }
    e
}

fn audit_row(r: AuditRow) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: r.event_id.to_string(),
        occurred_at: Some(ts(r.occurred_at)),
        action: r.event_type,
        source: r.source,
        aggregate_type: r.aggregate_type,
        aggregate_id: r.aggregate_id,
        actor_user_id: r.actor_user_id.map(|u| u.to_string()).unwrap_or_default(),
        actor_username: r.actor_username,
        actor_service: r.actor_service,
        ip: r.ip,
        details_json: r.payload.to_string(),
    }
}

impl Stats {
    pub(crate) async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> AppResult<pb::ListAuditEventsResponse> {
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let size = page::size(req.page_size);
        let user_id = match req.user_id.as_str() {
            "" => None,
            id => Some(
                id.parse::<Uuid>()
                    .map_err(|_| AppError::invalid("user_id must be a UUID"))?,
            ),
        };
        let after = match req.page_token.as_str() {
            "" => None,
            t => {
                let (at, id) = page::decode_at(t)?;
                let id = id
                    .parse::<Uuid>()
                    .map_err(|_| AppError::invalid("bad page_token"))?;
                Some((at, id))
            }
        };
        // An action ending in a dot names a family of event types (`registry.`).
        let (event_type, event_type_like) = match req.action.as_str() {
            "" => (None, None),
            a if a.ends_with('.') => (None, Some(format!("{a}%"))),
            a => (Some(a.to_owned()), None),
        };
        let filter = AuditFilter {
            user_id,
            event_type,
            event_type_like,
            from: from_ts(&req.from),
            to: from_ts(&req.to),
            after,
            limit: size + 1,
        };
        let rows = store::list_audit(self.pool(), &filter).await?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => page::encode_at(last.occurred_at, &last.event_id.to_string()),
            _ => String::new(),
        };
        Ok(pb::ListAuditEventsResponse {
            events: rows
                .into_iter()
                .take(size as usize)
                .map(audit_row)
                .collect(),
            next_page_token,
        })
    }

    pub(crate) async fn get_bag_history(
        &self,
        req: Request<pb::GetBagHistoryRequest>,
    ) -> AppResult<pb::GetBagHistoryResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.user()?;
        let qr = tracetrack_domain::qr::normalize(&req.get_ref().qr)
            .map_err(|e| AppError::new(e.code, e.message))?;
        // Scoped like every area read: a dispatcher sees the history of their own area's bags
        // only. stats keeps no areas, so it asks bag-registry where the bag is now.
        let view = AreaView::of(user);
        if view != AreaView::All {
            let bag = self
                .0
                .registry
                .clone()
                .get_bag(client::request(
                    GetBagRequest { qr: qr.clone() },
                    caller.user_token.as_deref(),
                    None,
                ))
                .await
                .map_err(|s| match AppError::from_status(&s) {
                    e if e.code == ErrorCode::BagNotFound => e,
                    e if matches!(
                        e.code,
                        ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded
                    ) =>
                    {
                        AppError::unavailable("bag-registry", s)
                    }
                    e => e,
                })?
                .into_inner()
                .bag
                .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
            if !view.sees(&bag.area) {
                return Err(AppError::new(
                    ErrorCode::WrongArea,
                    "that bag belongs to another area",
                )
                .with_detail("area", &bag.area));
            }
        }
        let admin = user.role == Role::Admin;
        let rows = store::bag_history(self.pool(), &qr).await?;
        Ok(pb::GetBagHistoryResponse {
            events: rows.into_iter().map(|r| audit_row_for(r, admin)).collect(),
        })
    }
}
