//! /api/v1/bags: lookup, search, children, registration, unlink, move, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{bag, Bag, Page, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::filters::{bag_type, BagFilter, PageParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_bags, register_bag))
        .routes(routes!(get_bag, delete_bag))
        .routes(routes!(children))
        .routes(routes!(unlink_child))
        .routes(routes!(move_child))
}

/// One bag by QR (a label text works too).
#[utoipa::path(get, path = "/api/v1/bags/{qr}", tag = "bags", params(("qr" = String, Path, example = "SB10001")),
    responses((status = 200, body = Bag), (status = 404, body = Problem, description = "bag_not_found")))]
async fn get_bag(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(qr): Path<String>,
) -> ApiResult<Json<Bag>> {
    let r = crate::read!(
        state.0.registry,
        get_bag,
        ctx.read(pb::GetBagRequest { qr: qr.clone() })
    )
    .await?;
    bag(r.bag)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::BagNotFound, "no bag with that code"))
}

/// Search bags (newest first, or by QR with a prefix); dispatchers see their own area.
#[utoipa::path(get, path = "/api/v1/bags", tag = "bags", params(BagFilter, PageParams), responses((status = 200, body = Page<Bag>)))]
async fn search_bags(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(filter): Query<BagFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<Bag>>> {
    let req = filter.search(page)?;
    let r = crate::read!(state.0.registry, search_bags, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.bags.into_iter().map(Bag::from).collect(),
        r.next_page_token,
    )))
}

/// A parent's children, by QR.
#[utoipa::path(get, path = "/api/v1/bags/{qr}/children", tag = "bags", params(("qr" = String, Path, example = "SB10001"), PageParams),
    responses((status = 200, body = Page<Bag>), (status = 404, body = Problem, description = "parent_not_found"),
              (status = 409, body = Problem, description = "qr_is_child: a child has no children")))]
async fn children(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(qr): Path<String>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Bag>>> {
    let (page_size, page_token) = p.parts();
    let req = pb::ListChildrenRequest {
        parent_qr: qr,
        page_size,
        page_token,
    };
    let r = crate::read!(state.0.registry, list_children, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.children.into_iter().map(Bag::from).collect(),
        r.next_page_token,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"qr": "SB10003", "type": "parent", "area": "lucknow"}))]
pub struct RegisterBody {
    pub qr: String,
    /// parent or child.
    #[serde(rename = "type")]
    #[schema(pattern = "^(parent|child)$")]
    pub kind: String,
    pub area: String,
}

/// Register a bag (admin, biller).
#[utoipa::path(post, path = "/api/v1/bags", tag = "bags", request_body = RegisterBody,
    responses((status = 201, body = Bag), (status = 409, body = Problem, description = "bag_exists")))]
async fn register_bag(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Bag>)> {
    let req = pb::RegisterBagRequest {
        qr: b.qr,
        r#type: bag_type(&b.kind)?,
        area: b.area,
    };
    let r = crate::mutate!(state.0.registry, register_bag, ctx, req)
        .await?
        .into_inner();
    let bag = bag(r.bag).ok_or_else(|| ApiError::new(ErrorCode::Internal, "no bag returned"))?;
    Ok((StatusCode::CREATED, Json(bag)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParentOnly {
    pub parent: Option<Bag>,
}

/// Unlink a child from its parent (admin, biller).
#[utoipa::path(delete, path = "/api/v1/bags/{parent_qr}/children/{child_qr}", tag = "bags",
    params(("parent_qr" = String, Path, example = "SB10004"), ("child_qr" = String, Path, example = "CH400001")),
    responses((status = 200, body = ParentOnly), (status = 409, body = Problem, description = "parent_frozen")))]
async fn unlink_child(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((parent_qr, child_qr)): Path<(String, String)>,
) -> ApiResult<Json<ParentOnly>> {
    let r = crate::mutate!(
        state.0.registry,
        unlink_child,
        ctx,
        pb::UnlinkChildRequest {
            parent_qr,
            child_qr,
        }
    )
    .await?
    .into_inner();
    Ok(Json(ParentOnly {
        parent: bag(r.parent),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parent_qr": "SB10005"}))]
pub struct MoveBody {
    pub parent_qr: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MoveAnswer {
    pub parent: Option<Bag>,
    pub child: Option<Bag>,
}

/// Move a child into another parent (admin, biller).
#[utoipa::path(post, path = "/api/v1/bags/{child_qr}/move", tag = "bags", params(("child_qr" = String, Path, example = "CH500001")), request_body = MoveBody,
    responses((status = 200, body = MoveAnswer), (status = 409, body = Problem, description = "parent_full, parent_frozen")))]
async fn move_child(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_qr): Path<String>,
    Body(b): Body<MoveBody>,
) -> ApiResult<Json<MoveAnswer>> {
    let r = crate::mutate!(
        state.0.registry,
        move_child,
        ctx,
        pb::MoveChildRequest {
            child_qr,
            parent_qr: b.parent_qr,
        }
    )
    .await?
    .into_inner();
    Ok(Json(MoveAnswer {
        parent: bag(r.parent),
        child: bag(r.child),
    }))
}

/// Delete a bag with no children, no parent and no bill (admin, biller).
#[utoipa::path(delete, path = "/api/v1/bags/{qr}", tag = "bags", params(("qr" = String, Path, example = "SB10007")),
    responses((status = 204), (status = 409, body = Problem, description = "bag_has_children, bag_linked, bag_on_bill")))]
async fn delete_bag(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(qr): Path<String>,
) -> ApiResult<StatusCode> {
    crate::mutate!(
        state.0.registry,
        delete_bag,
        ctx,
        pb::DeleteBagRequest { qr }
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
