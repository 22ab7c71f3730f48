//! /api/v1/returns: return tickets (SPEC §1 "Returns (IPT)"; admin, biller), the return scan, and
//! a bill's returns with its dispatched / returned / net figures.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{rfc3339, Page, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::filters::{PageParams, ReturnTicketFilter};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(get_ticket))
        .routes(routes!(return_parent))
        .routes(routes!(commit_ticket))
        .routes(routes!(cancel_ticket))
        .routes(routes!(bill_returns))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnTicket {
    /// RTN-<yyyymmdd>-<n>.
    pub ticket_id: String,
    pub area: String,
    pub notes: String,
    /// open, committed or cancelled.
    pub status: String,
    /// Parents returned on it.
    pub return_count: i32,
    pub child_count: i64,
    pub actual_weight_kg: f64,
    pub created_by: String,
    pub created_at: Option<String>,
    pub closed_at: Option<String>,
    pub closed_by: String,
}

/// A parent returned from a bill: the snapshot at return.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnedParent {
    pub parent_qr: String,
    pub bill_id: String,
    pub ticket_id: String,
    /// returning (being recorded) or returned.
    pub state: String,
    pub product_line: String,
    pub child_count: i32,
    pub expected_weight_kg: f64,
    pub actual_weight_kg: f64,
    pub returned_by: String,
    pub returned_at: Option<String>,
}

fn ticket(t: pb::ReturnTicket) -> ReturnTicket {
    ReturnTicket {
        created_at: rfc3339(&t.created_at),
        closed_at: rfc3339(&t.closed_at),
        created_by: t.created_by_username,
        closed_by: t.closed_by_username,
        ticket_id: t.ticket_id,
        area: t.area,
        notes: t.notes,
        status: t.status,
        return_count: t.return_count,
        child_count: t.child_count,
        actual_weight_kg: t.actual_weight_kg,
    }
}

fn returned(r: pb::ReturnedParent) -> ReturnedParent {
    ReturnedParent {
        returned_at: rfc3339(&r.returned_at),
        parent_qr: r.parent_qr,
        bill_id: r.bill_id,
        ticket_id: r.ticket_id,
        state: r.state,
        product_line: r.product_line,
        child_count: r.child_count,
        expected_weight_kg: r.expected_weight_kg,
        actual_weight_kg: r.actual_weight_kg,
        returned_by: r.returned_by_username,
    }
}

fn one(t: Option<pb::ReturnTicket>) -> ApiResult<ReturnTicket> {
    t.map(ticket)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no ticket returned"))
}

/// Return tickets, newest first, by status and creation time (admin, biller).
#[utoipa::path(get, path = "/api/v1/returns", tag = "returns", params(ReturnTicketFilter, PageParams),
    responses((status = 200, body = Page<ReturnTicket>), (status = 400, body = Problem, description = "invalid_argument")))]
async fn list_tickets(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(filter): Query<ReturnTicketFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<ReturnTicket>>> {
    let req = filter.list(page)?;
    let r = crate::read!(state.0.billing, list_return_tickets, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.tickets.into_iter().map(ticket).collect(),
        r.next_page_token,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"area": "indore", "notes": "Dealer Sharma, 3 sacks"}))]
pub struct CreateTicketBody {
    /// A configured area: the C&F location the sacks come back to.
    pub area: String,
    pub notes: Option<String>,
}

/// Open a return ticket (admin, biller).
#[utoipa::path(post, path = "/api/v1/returns", tag = "returns", request_body = CreateTicketBody,
    responses((status = 201, body = ReturnTicket), (status = 400, body = Problem, description = "area_required, invalid_argument")))]
async fn create_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateTicketBody>,
) -> ApiResult<(StatusCode, Json<ReturnTicket>)> {
    let r = crate::mutate!(
        state.0.billing,
        create_return_ticket,
        ctx,
        pb::CreateReturnTicketRequest {
            area: b.area,
            notes: b.notes.unwrap_or_default(),
        }
    )
    .await?
    .into_inner();
    Ok((StatusCode::CREATED, Json(one(r.ticket)?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketDetail {
    pub ticket: ReturnTicket,
    /// The parents taken back on it, in scan order.
    pub returns: Vec<ReturnedParent>,
}

/// One return ticket with its returned parents (admin, biller).
#[utoipa::path(get, path = "/api/v1/returns/{ticket_id}", tag = "returns", params(("ticket_id" = String, Path, example = "RTN-20261205-0001")),
    responses((status = 200, body = TicketDetail), (status = 404, body = Problem, description = "ticket_not_found")))]
async fn get_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<TicketDetail>> {
    let req = pb::GetReturnTicketRequest { ticket_id: id };
    let r = crate::read!(state.0.billing, get_return_ticket, ctx.read(req.clone())).await?;
    Ok(Json(TicketDetail {
        ticket: one(r.ticket)?,
        returns: r.returns.into_iter().map(returned).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parent_qr": "SB10011"}))]
pub struct ReturnBody {
    pub parent_qr: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnAnswer {
    pub ticket: ReturnTicket,
    pub returned: Option<ReturnedParent>,
    /// It was on this ticket already (a double-fired scan; nothing changed).
    pub already_returned: bool,
}

/// Scan a parent onto an open ticket: it comes off the completed bill it left on (admin, biller).
#[utoipa::path(post, path = "/api/v1/returns/{ticket_id}/parents", tag = "returns", params(("ticket_id" = String, Path, example = "RTN-20261205-0001")),
    request_body = ReturnBody,
    responses((status = 200, body = ReturnAnswer), (status = 404, body = Problem, description = "ticket_not_found"),
              (status = 409, body = Problem, description = "parent_not_billed, bill_not_completed (+bill_id), on_other_ticket (+other_ticket_id), ticket_not_open")))]
async fn return_parent(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<ReturnBody>,
) -> ApiResult<Json<ReturnAnswer>> {
    let r = crate::mutate!(
        state.0.billing,
        return_parent,
        ctx,
        pb::ReturnParentRequest {
            ticket_id: id,
            parent_qr: b.parent_qr,
        }
    )
    .await?
    .into_inner();
    Ok(Json(ReturnAnswer {
        ticket: one(r.ticket)?,
        returned: r.returned.map(returned),
        already_returned: r.already_returned,
    }))
}

/// Commit (finalize) a ticket: needs at least one returned parent (admin, biller).
#[utoipa::path(post, path = "/api/v1/returns/{ticket_id}/commit", tag = "returns", params(("ticket_id" = String, Path, example = "RTN-20261205-0001")),
    responses((status = 200, body = ReturnTicket), (status = 409, body = Problem, description = "ticket_empty, ticket_not_open")))]
async fn commit_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<ReturnTicket>> {
    let req = pb::CommitReturnTicketRequest { ticket_id: id };
    let r = crate::mutate!(state.0.billing, commit_return_ticket, ctx, req).await?;
    Ok(Json(one(r.into_inner().ticket)?))
}

/// Cancel a ticket; the parents already taken back stay free (admin, biller).
#[utoipa::path(post, path = "/api/v1/returns/{ticket_id}/cancel", tag = "returns", params(("ticket_id" = String, Path, example = "RTN-20261205-0001")),
    responses((status = 200, body = ReturnTicket), (status = 409, body = Problem, description = "ticket_not_open")))]
async fn cancel_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<ReturnTicket>> {
    let req = pb::CancelReturnTicketRequest { ticket_id: id };
    let r = crate::mutate!(state.0.billing, cancel_return_ticket, ctx, req).await?;
    Ok(Json(one(r.into_inner().ticket)?))
}

/// A bill's history of returns (SPEC §1): dispatched = attached + returned; net = what is still
/// attached, its figures live.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillReturns {
    pub bill_id: String,
    pub capacity: i32,
    pub dispatched_parents: i32,
    pub returned_parents: i32,
    pub returned_child_count: i64,
    pub returned_actual_weight_kg: f64,
    pub returned_expected_weight_kg: f64,
    pub net_parents: i32,
    pub net_child_count: i64,
    pub net_actual_weight_kg: f64,
    pub net_expected_weight_kg: f64,
    pub returns: Vec<ReturnedParent>,
}

/// A bill's returns and its dispatched / returned / net figures (any user who may read bills).
#[utoipa::path(get, path = "/api/v1/bills/{bill_id}/returns", tag = "returns", params(("bill_id" = String, Path, example = "BILL-0005")),
    responses((status = 200, body = BillReturns), (status = 404, body = Problem, description = "bill_not_found")))]
async fn bill_returns(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<BillReturns>> {
    let req = pb::GetBillRequest { bill_id: id };
    let r = crate::read!(state.0.billing, get_bill, ctx.read(req.clone())).await?;
    let b = r
        .bill
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no bill returned"))?;
    Ok(Json(BillReturns {
        dispatched_parents: b.parent_count + b.returned_count,
        returned_parents: b.returned_count,
        returned_child_count: b.returned_child_count,
        returned_actual_weight_kg: b.returned_actual_weight_kg,
        returned_expected_weight_kg: b.returned_expected_weight_kg,
        net_parents: b.parent_count,
        net_child_count: b.child_count,
        net_actual_weight_kg: b.actual_weight_kg,
        net_expected_weight_kg: b.expected_weight_kg,
        capacity: b.capacity,
        bill_id: b.bill_id,
        returns: r.returns.into_iter().map(returned).collect(),
    }))
}
