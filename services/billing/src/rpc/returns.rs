//! Return tickets (SPEC §1 "Returns (IPT)"): CreateReturnTicket, GetReturnTicket,
//! ListReturnTickets, ReturnParent (the request side of the return saga, see [`crate::saga`]),
//! CommitReturnTicket and CancelReturnTicket.

use serde_json::json;
use tonic::Request;
use tracetrack_common::caller::{Caller, UserIdentity};
use tracetrack_common::{client, page};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{qr, ErrorCode};
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;

use crate::convert::ts;
use crate::registry::{maybe_applied, registry_error};
use crate::rules::{conflict, qr_err, text, MANAGERS};
use crate::state::{Billing, Who, MUTATIONS};
use crate::store::{self, ReturnRow, Snapshot, Stamp, TicketRow};

/// Rounds of intent-then-call before giving up with `conflict`.
const MAX_RETURN_ROUNDS: usize = 5;
const MAX_NOTES: usize = 500;

pub(crate) fn ticket_to_pb(t: &TicketRow) -> pb::ReturnTicket {
    pb::ReturnTicket {
        ticket_id: t.ticket_id.clone(),
        area: t.area.clone(),
        notes: t.notes.clone(),
        status: t.status.clone(),
        return_count: t.return_count,
        created_by: t.created_by.map(|u| u.to_string()).unwrap_or_default(),
        created_by_username: t.created_by_username.clone(),
        created_at: Some(ts(t.created_at)),
        closed_at: t.closed_at.map(ts),
        closed_by_username: t.closed_by_username.clone(),
        child_count: t.child_count,
        actual_weight_kg: t.actual_weight_kg,
    }
}

pub(crate) fn return_to_pb(r: &ReturnRow) -> pb::ReturnedParent {
    pb::ReturnedParent {
        parent_qr: r.parent_qr.clone(),
        bill_id: r.bill_id.clone(),
        ticket_id: r.ticket_id.clone(),
        state: r.state.clone(),
        product_line: r.product_line.clone(),
        child_count: r.child_count,
        expected_weight_kg: r.expected_weight_kg,
        actual_weight_kg: r.actual_weight_kg,
        area: r.area.clone(),
        returned_by: r.returned_by.map(|u| u.to_string()).unwrap_or_default(),
        returned_by_username: r.returned_by_username.clone(),
        returned_at: r.returned_at.map(ts),
    }
}

fn ticket_not_open(t: &TicketRow) -> AppError {
    AppError::new(
        ErrorCode::TicketNotOpen,
        format!("the return ticket is {}", t.status),
    )
    .with_detail("status", t.status.clone())
}

impl Billing {
    async fn ticket(&self, id: &str) -> AppResult<TicketRow> {
        store::ticket(self.pool(), id.trim())
            .await?
            .ok_or_else(store::ticket_not_found)
    }

    pub(crate) async fn create_return_ticket(
        &self,
        req: Request<pb::CreateReturnTicketRequest>,
    ) -> AppResult<pb::CreateReturnTicketResponse> {
        const RPC: &str = "CreateReturnTicket";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let notes = text(&req.notes, MAX_NOTES, "notes")?;
        if let Some(first) = MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            return Ok(first);
        }
        let area = self.known_area(&caller, &req.area).await?;
        let mut tx = self.pool().begin().await?;
        let id = store::create_ticket(&mut *tx, &area, &notes, user.id, &user.username).await?;
        let row = store::ticket(&mut *tx, &id)
            .await?
            .ok_or_else(store::ticket_not_found)?;
        self.ticket_event(
            &mut tx,
            &Who::Request(&caller),
            "billing.return_ticket_created",
            &row,
        )
        .await?;
        let resp = pb::CreateReturnTicketResponse {
            ticket: Some(ticket_to_pb(&row)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// A configured area (bag-registry's catalogue), lower-cased; `invalid_argument` otherwise.
    async fn known_area(&self, caller: &Caller, raw: &str) -> AppResult<String> {
        let area = raw.trim().to_lowercase();
        if area.is_empty() {
            return Err(AppError::new(
                ErrorCode::AreaRequired,
                "name the ticket's area",
            ));
        }
        let catalogue = client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(
                reg::GetCatalogueRequest {},
                caller.user_token.as_deref(),
                None,
            );
            async move { registry.get_catalogue(req).await }
        })
        .await
        .map_err(|s| registry_error(&s))?
        .into_inner();
        if catalogue.areas.iter().any(|a| a == &area) {
            Ok(area)
        } else {
            Err(AppError::invalid(format!("unknown area {area:?}")))
        }
    }

    pub(crate) async fn get_return_ticket(
        &self,
        req: Request<pb::GetReturnTicketRequest>,
    ) -> AppResult<pb::GetReturnTicketResponse> {
        let caller = self.caller(&req).await?;
        reader(&caller)?;
        let t = self.ticket(&req.get_ref().ticket_id).await?;
        let returns = store::returns_of_ticket(self.pool(), &t.ticket_id).await?;
        Ok(pb::GetReturnTicketResponse {
            ticket: Some(ticket_to_pb(&t)),
            returns: returns.iter().map(return_to_pb).collect(),
        })
    }

    pub(crate) async fn list_return_tickets(
        &self,
        req: Request<pb::ListReturnTicketsRequest>,
    ) -> AppResult<pb::ListReturnTicketsResponse> {
        let caller = self.caller(&req).await?;
        reader(&caller)?;
        let req = req.into_inner();
        let status = match req.status.as_str() {
            "" => None,
            s @ ("open" | "committed" | "cancelled") => Some(s),
            _ => return Err(AppError::invalid("status is open, committed or cancelled")),
        };
        let size = page::size(req.page_size);
        let after = match req.page_token.as_str() {
            "" => None,
            t => Some(page::decode_at(t)?),
        };
        let created = |t: &Option<prost_types::Timestamp>, name| {
            t.as_ref()
                .map(|t| crate::convert::from_ts(t, name))
                .transpose()
        };
        let from = created(&req.created_from, "created_from")?;
        let to = created(&req.created_to, "created_to")?;
        let mut rows =
            store::list_tickets(self.pool(), status, (from, to), after, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => page::encode_at(last.created_at, &last.ticket_id),
            _ => String::new(),
        };
        Ok(pb::ListReturnTicketsResponse {
            tickets: rows.iter().map(ticket_to_pb).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn commit_return_ticket(
        &self,
        req: Request<pb::CommitReturnTicketRequest>,
    ) -> AppResult<pb::CommitReturnTicketResponse> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        let t = self
            .close_ticket(
                &caller,
                "CommitReturnTicket",
                &req,
                &req.ticket_id,
                "committed",
            )
            .await?;
        Ok(pb::CommitReturnTicketResponse { ticket: Some(t) })
    }

    pub(crate) async fn cancel_return_ticket(
        &self,
        req: Request<pb::CancelReturnTicketRequest>,
    ) -> AppResult<pb::CancelReturnTicketResponse> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        let t = self
            .close_ticket(
                &caller,
                "CancelReturnTicket",
                &req,
                &req.ticket_id,
                "cancelled",
            )
            .await?;
        Ok(pb::CancelReturnTicketResponse { ticket: Some(t) })
    }

    /// open → committed or cancelled, with one conditional statement. Committing or cancelling
    /// a ticket already so answers it as it is.
    async fn close_ticket(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
        id: &str,
        to: &str,
    ) -> AppResult<pb::ReturnTicket> {
        let user = caller.require_role(MANAGERS)?.clone();
        let t = self.ticket(id).await?;
        let mut tx = self.pool().begin().await?;
        if let Some(first) = MUTATIONS
            .replay::<pb::ReturnTicket>(&mut tx, caller, rpc, req)
            .await?
        {
            return Ok(first);
        }
        let moved = store::close_ticket(&mut *tx, &t.ticket_id, to, &user.username).await?;
        let now = store::ticket(&mut *tx, &t.ticket_id)
            .await?
            .ok_or_else(store::ticket_not_found)?;
        if !moved {
            if now.status == to {
                // Already so: nothing changes.
            } else if now.status != "open" {
                return Err(ticket_not_open(&now));
            } else {
                return Err(AppError::new(
                    ErrorCode::TicketEmpty,
                    "a return ticket is committed only with at least one returned parent",
                ));
            }
        } else {
            let kind = if to == "committed" {
                "billing.return_ticket_committed"
            } else {
                "billing.return_ticket_cancelled"
            };
            self.ticket_event(&mut tx, &Who::Request(caller), kind, &now)
                .await?;
        }
        let resp = ticket_to_pb(&now);
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    async fn ticket_event(
        &self,
        conn: &mut sqlx::PgConnection,
        who: &Who<'_>,
        kind: &str,
        t: &TicketRow,
    ) -> AppResult<()> {
        MUTATIONS
            .event(
                conn,
                tracetrack_common::outbox::NewEvent {
                    event_type: kind,
                    aggregate_type: "return_ticket",
                    aggregate_id: &t.ticket_id,
                    aggregate_version: t.version,
                    actor: who.actor(),
                    payload: json!({
                        "ticket_id": t.ticket_id,
                        "area": t.area,
                        "notes": t.notes,
                        "status": t.status,
                        "return_count": t.return_count,
                    }),
                },
            )
            .await?;
        metrics::counter!("billing_events_total", "type" => kind.to_owned()).increment(1);
        Ok(())
    }

    pub(crate) async fn return_parent(
        &self,
        req: Request<pb::ReturnParentRequest>,
    ) -> AppResult<pb::ReturnParentResponse> {
        const RPC: &str = "ReturnParent";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let parent = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        if let Some(first) = MUTATIONS
            .stored_answer(self.pool(), &caller, RPC, &req)
            .await?
        {
            return Ok(first);
        }
        let ticket = self.ticket(&req.ticket_id).await?;
        let who = Who::Request(&caller);
        for _ in 0..MAX_RETURN_ROUNDS {
            // Already on this ticket: a double-fired scan (answered), or one in flight.
            let (bill_id, stamp) =
                match store::return_on_ticket(self.pool(), &ticket.ticket_id, &parent).await? {
                    Some(r) if r.state == "returned" => {
                        return self.returned_answer(&caller, &req, &r, true).await;
                    }
                    Some(r) => match self.take_over_return(&r.bill_id, &parent).await? {
                        Some(stamp) => (r.bill_id, stamp),
                        None => continue,
                    },
                    None => match self.begin_return(&ticket, &parent, &user).await? {
                        Some(started) => started,
                        None => continue,
                    },
                };
            // 2. ReturnParent in bag-registry, no lock held.
            let key = who.key("ReturnParent");
            let answer = client::retry_transport(|| {
                let mut registry = self.registry();
                let call = client::request(
                    reg::ReturnParentRequest {
                        parent_qr: parent.clone(),
                        bill_id: bill_id.clone(),
                        area: ticket.area.clone(),
                    },
                    who.token(),
                    key.as_deref(),
                );
                async move { registry.return_parent(call).await }
            })
            .await;
            let bag = match answer {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    let err = registry_error(&status);
                    if !maybe_applied(err.code) {
                        let mut tx = self.pool().begin().await?;
                        store::undo_return(&mut tx, &bill_id, &parent, stamp).await?;
                        tx.commit().await?;
                    }
                    return Err(err);
                }
            };
            // 3. Finish, conditional on the lease.
            let mut tx = self.pool().begin().await?;
            let Some(row) = self
                .finish_return_leased(&mut tx, &who, &ticket, &bill_id, &parent, stamp, &bag)
                .await?
            else {
                tx.rollback().await?;
                continue;
            };
            if let Some(first) = MUTATIONS.replay(&mut tx, &caller, RPC, &req).await? {
                tx.rollback().await?;
                return Ok(first);
            }
            let t = store::ticket(&mut *tx, &ticket.ticket_id)
                .await?
                .ok_or_else(store::ticket_not_found)?;
            let resp = pb::ReturnParentResponse {
                ticket: Some(ticket_to_pb(&t)),
                returned: Some(return_to_pb(&row)),
                already_returned: false,
            };
            MUTATIONS.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            metrics::counter!("billing_returns_total", "outcome" => "returned").increment(1);
            return Ok(resp);
        }
        Err(conflict("the parent's return kept changing; try again"))
    }

    /// Step 1 of a return: the intent, committed (attachment `returning`, the return row with
    /// its lease, the ticket's count). The bill and the lease, or None to look again; the
    /// refusals otherwise.
    async fn begin_return(
        &self,
        ticket: &TicketRow,
        parent: &str,
        user: &UserIdentity,
    ) -> AppResult<Option<(String, Stamp)>> {
        if ticket.status != "open" {
            return Err(ticket_not_open(ticket));
        }
        let mut tx = self.pool().begin().await?;
        let Some(returning) = store::mark_returning(&mut tx, parent).await? else {
            tx.rollback().await?;
            return Err(self.why_not_returnable(ticket, parent).await?);
        };
        let Some(stamp) = store::begin_return(
            &mut tx,
            &ticket.ticket_id,
            parent,
            &returning,
            user.id,
            &user.username,
        )
        .await?
        else {
            tx.rollback().await?;
            let now = self.ticket(&ticket.ticket_id).await?;
            return Err(ticket_not_open(&now));
        };
        tx.commit().await?;
        Ok(Some((returning.bill_id, stamp)))
    }

    /// Why a parent with no confirmed attachment cannot be returned onto `ticket`.
    async fn why_not_returnable(&self, ticket: &TicketRow, parent: &str) -> AppResult<AppError> {
        if let Some(other) =
            store::other_open_ticket(self.pool(), &ticket.ticket_id, parent).await?
        {
            return Ok(AppError::new(
                ErrorCode::OnOtherTicket,
                "this parent is on another open return ticket",
            )
            .with_detail("other_ticket_id", other));
        }
        Ok(match store::attachment(self.pool(), parent).await? {
            None => AppError::new(ErrorCode::ParentNotBilled, "this parent is on no bill"),
            Some(a) if a.state == "returning" => {
                conflict("this parent is being returned; try again")
            }
            Some(a) => AppError::new(
                ErrorCode::BillNotCompleted,
                "the parent's bill is not completed; detach it instead",
            )
            .with_detail("bill_id", a.bill_id),
        })
    }

    /// Waits until nobody holds the lease of a `returning` row, then takes it over: its stamp,
    /// or None when it was settled meanwhile.
    async fn take_over_return(&self, bill_id: &str, parent: &str) -> AppResult<Option<Stamp>> {
        let waiting = self.lease_wait();
        loop {
            match store::return_leased(self.pool(), bill_id, parent, self.lease_ms()).await? {
                None => return Ok(None),
                Some(true) => waiting.next("this parent is being returned").await?,
                Some(false) => {
                    if let Some(stamp) =
                        store::take_return(self.pool(), bill_id, parent, self.lease_ms()).await?
                    {
                        return Ok(Some(stamp));
                    }
                }
            }
        }
    }

    /// Step 3, shared with the sweeper: bag-registry answered; the return is finished under
    /// the lease (or undone when the parent turned out to be on another bill), with the event.
    /// The return as it is now, or None when the lease was lost or it was undone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish_return_leased(
        &self,
        tx: &mut crate::state::Tx,
        who: &Who<'_>,
        ticket: &TicketRow,
        bill_id: &str,
        parent: &str,
        stamp: Stamp,
        answer: &reg::ReturnParentResponse,
    ) -> AppResult<Option<ReturnRow>> {
        let bag = answer.parent.clone().unwrap_or_default();
        if !answer.returned && !bag.bill_id.is_empty() {
            // On another bill in bag-registry: nothing to return from this one.
            tracing::warn!(%bill_id, %parent, other = %bag.bill_id, "return undone: the parent is on another bill");
            store::undo_return(tx, bill_id, parent, stamp).await?;
            return Ok(None);
        }
        let snap = Snapshot {
            child_count: bag.child_count,
            actual_weight_kg: bag.weight_kg,
            area: &ticket.area,
        };
        if !store::finish_return(tx, bill_id, parent, stamp, &snap).await? {
            return Ok(None);
        }
        let row = store::return_on_ticket(&mut **tx, &ticket.ticket_id, parent)
            .await?
            .ok_or_else(store::ticket_not_found)?;
        let bill = store::bill_by_id(tx, bill_id).await?;
        self.event(
            tx,
            who,
            "billing.parent_returned",
            bill_id,
            bill.map(|b| b.version).unwrap_or_default(),
            json!({
                "bill_id": bill_id,
                "ticket_id": ticket.ticket_id,
                "parent_qr": parent,
                "area": ticket.area,
                "product_line": row.product_line,
                "child_count": row.child_count,
                "expected_weight_kg": row.expected_weight_kg,
                "actual_weight_kg": row.actual_weight_kg,
            }),
        )
        .await?;
        Ok(Some(row))
    }

    async fn returned_answer(
        &self,
        caller: &Caller,
        req: &pb::ReturnParentRequest,
        r: &ReturnRow,
        already: bool,
    ) -> AppResult<pb::ReturnParentResponse> {
        let mut tx = self.pool().begin().await?;
        if let Some(first) = MUTATIONS
            .replay(&mut tx, caller, "ReturnParent", req)
            .await?
        {
            return Ok(first);
        }
        let t = store::ticket(&mut *tx, &r.ticket_id)
            .await?
            .ok_or_else(store::ticket_not_found)?;
        let resp = pb::ReturnParentResponse {
            ticket: Some(ticket_to_pb(&t)),
            returned: Some(return_to_pb(r)),
            already_returned: already,
        };
        MUTATIONS.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        metrics::counter!("billing_returns_total", "outcome" => "already_returned").increment(1);
        Ok(resp)
    }
}

/// Who may read tickets: admin and biller, and stats' report scheduler with its service token
/// alone (the end-of-day report lists the day's returns).
fn reader(caller: &tracetrack_common::caller::Caller) -> AppResult<()> {
    if caller.user.is_none() && caller.require_service(&["stats"]).is_ok() {
        return Ok(());
    }
    caller.require_role(MANAGERS).map(|_| ())
}
