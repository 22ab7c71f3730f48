//! What clients need to know about this installation: the areas and product lines (bag-registry's
//! configuration) and the table of stable error codes with their HTTP status and whether a
//! request refused with it may be sent again (`tracetrack_domain::ErrorCode::is_retryable`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::Problem;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(meta))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Area {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductLine {
    pub name: String,
    /// The regular expression a parent bag's QR matches.
    pub parent_pattern: String,
    /// Children per parent.
    pub capacity: i32,
    pub parent_weight_kg: f64,
    pub child_weight_kg: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorCodeInfo {
    pub code: String,
    pub http_status: u16,
    /// The same request (same body, same idempotency key) may succeed if sent again later.
    pub retryable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    pub areas: Vec<Area>,
    pub product_lines: Vec<ProductLine>,
    pub error_codes: Vec<ErrorCodeInfo>,
    /// The business time zone (IANA name, `organisation.time_zone`): the day reports count and
    /// the web client's "today", whatever the device's clock zone.
    pub time_zone: String,
}

/// Areas, product lines and the error-code table (any signed-in user).
#[utoipa::path(get, path = "/api/v1/meta", tag = "meta",
    responses((status = 200, body = Meta), (status = 401, body = Problem)))]
async fn meta(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<Meta>> {
    let r = crate::read!(
        state.0.registry,
        get_catalogue,
        ctx.read(pb::GetCatalogueRequest {})
    )
    .await?;
    Ok(Json(Meta {
        time_zone: state.0.settings.organisation.time_zone.name().to_owned(),
        areas: r.areas.into_iter().map(|name| Area { name }).collect(),
        product_lines: r
            .product_lines
            .into_iter()
            .map(|l| ProductLine {
                name: l.name,
                parent_pattern: l.parent_pattern,
                capacity: l.capacity,
                parent_weight_kg: l.parent_weight_kg,
                child_weight_kg: l.child_weight_kg,
            })
            .collect(),
        error_codes: ErrorCode::ALL
            .iter()
            .map(|c| ErrorCodeInfo {
                code: c.as_str().to_owned(),
                http_status: c.http_status(),
                retryable: c.is_retryable(),
            })
            .collect(),
    }))
}
