//! /api/v1/bills: bills, their parents, completion, and the printable dispatch document.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::document::{Document, Format, Lang, ReturnLine};
use crate::dto::{rfc3339, Page, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::filters::{BillFilter, PageParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bills, create_bill))
        .routes(routes!(get_bill, update_bill, delete_bill))
        .routes(routes!(attach_parent))
        .routes(routes!(detach_parent))
        .routes(routes!(complete_bill))
        .routes(routes!(reopen_bill))
        .routes(routes!(document))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillParent {
    pub qr: String,
    pub product_line: String,
    pub child_count: i32,
    pub capacity: i32,
    pub weight_kg: f64,
    pub expected_weight_kg: f64,
    pub area: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bill {
    pub bill_id: String,
    /// new, processing, completing, completed.
    pub status: String,
    pub capacity: i32,
    pub parent_count: i32,
    /// Parents returned from it on return tickets (SPEC §1 Returns: dispatched = parent_count +
    /// returned_count); a bill with returns can be neither reopened nor deleted.
    pub returned_count: i32,
    pub child_count: i64,
    pub actual_weight_kg: f64,
    pub expected_weight_kg: f64,
    pub description: String,
    pub destination: String,
    pub vehicle_number: String,
    /// Transport details printed on the dispatch document (empty when not given).
    pub driver_name: String,
    pub driver_phone: String,
    pub seal_number: String,
    pub created_by: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// Only on a single bill; a dispatcher sees their own area's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<BillParent>>,
}

fn bill(b: pb::Bill, parents: Option<Vec<pb::BillParent>>) -> Bill {
    Bill {
        status: pb::BillStatus::name_of(b.status).to_owned(),
        created_at: rfc3339(&b.created_at),
        updated_at: rfc3339(&b.updated_at),
        created_by: if b.created_by_username.is_empty() {
            b.created_by
        } else {
            b.created_by_username
        },
        bill_id: b.bill_id,
        capacity: b.capacity,
        parent_count: b.parent_count,
        returned_count: b.returned_count,
        child_count: b.child_count,
        actual_weight_kg: b.actual_weight_kg,
        expected_weight_kg: b.expected_weight_kg,
        description: b.description,
        destination: b.destination,
        vehicle_number: b.vehicle_number,
        driver_name: b.driver_name,
        driver_phone: b.driver_phone,
        seal_number: b.seal_number,
        parents: parents.map(|ps| {
            ps.into_iter()
                .map(|p| BillParent {
                    qr: p.qr,
                    product_line: p.product_line,
                    child_count: p.child_count,
                    capacity: p.capacity,
                    weight_kg: p.weight_kg,
                    expected_weight_kg: p.expected_weight_kg,
                    area: p.area,
                })
                .collect()
        }),
    }
}

fn one(b: Option<pb::Bill>) -> ApiResult<Json<Bill>> {
    b.map(|b| Json(bill(b, None)))
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no bill returned"))
}

/// Bills, newest first, with their figures.
#[utoipa::path(get, path = "/api/v1/bills", tag = "bills", params(BillFilter, PageParams), responses((status = 200, body = Page<Bill>)))]
async fn list_bills(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(filter): Query<BillFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<Bill>>> {
    let req = filter.list(page)?;
    let r = crate::read!(state.0.billing, list_bills, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.bills.into_iter().map(|b| bill(b, None)).collect(),
        r.next_page_token,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"bill_id": "BILL-0002", "capacity": 2, "description": "Mustard seed, kharif lot",
    "destination": "Jaipur", "vehicle_number": "RJ14 GA 1234"}))]
pub struct CreateBillBody {
    pub bill_id: String,
    /// 1–500 parent bags (default 1).
    #[schema(minimum = 1, maximum = 500)]
    pub capacity: Option<i32>,
    pub description: Option<String>,
    pub destination: Option<String>,
    pub vehicle_number: Option<String>,
}

/// Create a bill (admin, biller).
#[utoipa::path(post, path = "/api/v1/bills", tag = "bills", request_body = CreateBillBody,
    responses((status = 201, body = Bill), (status = 400, body = Problem, description = "invalid_argument"), (status = 409, body = Problem, description = "bill_exists")))]
async fn create_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateBillBody>,
) -> ApiResult<(StatusCode, Json<Bill>)> {
    let req = pb::CreateBillRequest {
        bill_id: b.bill_id,
        capacity: b.capacity.unwrap_or(1),
        description: b.description.unwrap_or_default(),
        destination: b.destination.unwrap_or_default(),
        vehicle_number: b.vehicle_number.unwrap_or_default(),
    };
    let r = crate::mutate!(state.0.billing, create_bill, ctx, req)
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, one(r.bill)?))
}

/// One bill with its parents.
#[utoipa::path(get, path = "/api/v1/bills/{bill_id}", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0001")),
    responses((status = 200, body = Bill), (status = 404, body = Problem, description = "bill_not_found")))]
async fn get_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Bill>> {
    let r = crate::read!(
        state.0.billing,
        get_bill,
        ctx.read(pb::GetBillRequest {
            bill_id: id.clone()
        })
    )
    .await?;
    let b = r
        .bill
        .ok_or_else(|| ApiError::new(ErrorCode::BillNotFound, "no such bill"))?;
    Ok(Json(bill(b, Some(r.parents))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"destination": "Jaipur", "vehicle_number": "RJ14 GA 1234"}))]
pub struct UpdateBillBody {
    pub description: Option<String>,
    pub destination: Option<String>,
    pub vehicle_number: Option<String>,
    /// 1–500 parent bags, never below the parents attached.
    #[schema(minimum = 1, maximum = 500)]
    pub capacity: Option<i32>,
    /// Transport details, also on a completed bill (known only after loading); at most 100, 20
    /// and 50 characters; the phone is digits with an optional leading `+`, spaces or dashes.
    pub driver_name: Option<String>,
    #[schema(example = "+91 98290 12345")]
    pub driver_phone: Option<String>,
    pub seal_number: Option<String>,
}

/// Edit a bill (admin, biller); capacity never below the attached count. Every text field,
/// transport details included, may be changed on a completed bill too.
#[utoipa::path(patch, path = "/api/v1/bills/{bill_id}", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0001")), request_body = UpdateBillBody,
    responses((status = 200, body = Bill), (status = 400, body = Problem, description = "capacity_below_attached"), (status = 409, body = Problem, description = "bill_completed")))]
async fn update_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<UpdateBillBody>,
) -> ApiResult<Json<Bill>> {
    let req = pb::UpdateBillRequest {
        bill_id: id,
        description: b.description,
        destination: b.destination,
        vehicle_number: b.vehicle_number,
        capacity: b.capacity,
        driver_name: b.driver_name,
        driver_phone: b.driver_phone,
        seal_number: b.seal_number,
    };
    let r = crate::mutate!(state.0.billing, update_bill, ctx, req)
        .await?
        .into_inner();
    one(r.bill)
}

/// Delete a bill (admin; never a completed one); its parents become free.
#[utoipa::path(delete, path = "/api/v1/bills/{bill_id}", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0007")),
    responses((status = 204), (status = 409, body = Problem, description = "bill_completed")))]
async fn delete_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    crate::mutate!(
        state.0.billing,
        delete_bill,
        ctx,
        pb::DeleteBillRequest { bill_id: id }
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parent_qr": "SB10010"}))]
pub struct AttachBody {
    pub parent_qr: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttachAnswer {
    pub bill: Bill,
    pub already_attached: bool,
}

/// Load a parent bag onto the bill (admin, biller).
#[utoipa::path(post, path = "/api/v1/bills/{bill_id}/parents", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0005")), request_body = AttachBody,
    responses((status = 200, body = AttachAnswer), (status = 404, body = Problem, description = "bag_not_found"),
              (status = 409, body = Problem, description = "not_a_parent, on_other_bill, bill_full, bill_completed")))]
async fn attach_parent(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<AttachBody>,
) -> ApiResult<Json<AttachAnswer>> {
    let r = crate::mutate!(
        state.0.billing,
        attach_parent,
        ctx,
        pb::AttachParentRequest {
            bill_id: id,
            parent_qr: b.parent_qr,
        }
    )
    .await?
    .into_inner();
    let Json(bill) = one(r.bill)?;
    Ok(Json(AttachAnswer {
        bill,
        already_attached: r.already_attached,
    }))
}

/// Take a parent off the bill (admin, biller).
#[utoipa::path(delete, path = "/api/v1/bills/{bill_id}/parents/{parent_qr}", tag = "bills",
    params(("bill_id" = String, Path, example = "BILL-0006"), ("parent_qr" = String, Path, example = "SB10011")),
    responses((status = 200, body = Bill), (status = 409, body = Problem, description = "bill_completed")))]
async fn detach_parent(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, qr)): Path<(String, String)>,
) -> ApiResult<Json<Bill>> {
    let r = crate::mutate!(
        state.0.billing,
        detach_parent,
        ctx,
        pb::DetachParentRequest {
            bill_id: id,
            parent_qr: qr,
        }
    )
    .await?
    .into_inner();
    one(r.bill)
}

/// Complete a full bill: its parents freeze.
#[utoipa::path(post, path = "/api/v1/bills/{bill_id}/complete", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0003")),
    responses((status = 200, body = Bill), (status = 409, body = Problem, description = "bill_incomplete")))]
async fn complete_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Bill>> {
    let r = crate::mutate!(
        state.0.billing,
        complete_bill,
        ctx,
        pb::CompleteBillRequest { bill_id: id }
    )
    .await?
    .into_inner();
    one(r.bill)
}

/// Reopen a completed bill.
#[utoipa::path(post, path = "/api/v1/bills/{bill_id}/reopen", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0004")),
    responses((status = 200, body = Bill), (status = 409, body = Problem)))]
async fn reopen_bill(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Bill>> {
    let r = crate::mutate!(
        state.0.billing,
        reopen_bill,
        ctx,
        pb::ReopenBillRequest { bill_id: id }
    )
    .await?
    .into_inner();
    one(r.bill)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DocParams {
    /// `a4` (default) or `a6` (a label).
    #[param(example = "a4", pattern = "^(a4|a6)$")]
    pub format: Option<String>,
    /// `en` or `hi`; without it, the user's language (the web client's `lang` cookie, else
    /// `Accept-Language`, else English).
    #[param(example = "hi", pattern = "^(en|hi)$")]
    pub lang: Option<String>,
}

/// The printable dispatch document (A4) or label (A6), HTML with print CSS: the organisation
/// (configuration block `organisation`), transport details, the bill's QR code, every parent
/// with expected vs actual figures, returns, signature blocks, page numbers.
#[utoipa::path(get, path = "/api/v1/bills/{bill_id}/document", tag = "bills", params(("bill_id" = String, Path, example = "BILL-0001"), DocParams),
    responses((status = 200, content_type = "text/html", description = "printable document"), (status = 404, body = Problem)))]
async fn document(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(p): Query<DocParams>,
    asked: Lang,
) -> ApiResult<Response> {
    let format = match p.format.as_deref() {
        None | Some("a4") => Format::A4,
        Some("a6") => Format::A6,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "format must be a4 or a6",
            ))
        }
    };
    let lang = match p.lang.as_deref() {
        None => asked,
        Some("en") => Lang::En,
        Some("hi") => Lang::Hi,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "lang must be en or hi",
            ))
        }
    };
    let r = crate::read!(
        state.0.billing,
        get_bill_document,
        ctx.read(pb::GetBillRequest {
            bill_id: id.clone()
        })
    )
    .await?;
    let b = r
        .bill
        .ok_or_else(|| ApiError::new(ErrorCode::BillNotFound, "no such bill"))?;
    let returns: Vec<ReturnLine> =
        r.returns
            .iter()
            .map(|x| ReturnLine {
                ticket_id: x.ticket_id.clone(),
                parent_qr: x.parent_qr.clone(),
                child_count: i64::from(x.child_count),
                weight_kg: x.actual_weight_kg,
                returned_at: x.returned_at.as_ref().and_then(|t| {
                    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                }),
            })
            .collect();
    let body = Document {
        org: &state.0.settings.organisation,
        bill: &b,
        parents: &r.parents,
        returns: &returns,
        lang,
        now: chrono::Utc::now(),
    }
    .render(format);
    let mut resp = Html(body).into_response();
    // Its own stylesheet is inline: allow exactly that for this page.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    Ok(resp)
}
