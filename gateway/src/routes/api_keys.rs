//! /api/v1/api-keys: API keys for integrations (issue 17 §2; admin users only, auth enforces it:
//! a key never manages keys).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{rfc3339, role_name, role_value, timestamp, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// The key id in this module's examples (a placeholder).
pub const EXAMPLE_KEY_ID: &str = "01936f3e-8a4b-7c2d-9e1f-0a1b2c3d4e60";

/// An API key as admins see it (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The `tt_key_<prefix>_…` part of its token.
    pub prefix: String,
    pub role: String,
    pub dispatch_area: Option<String>,
    pub created_by: String,
    pub created_by_username: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    /// Updated at most once a minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<pb::ApiKey> for ApiKey {
    fn from(k: pb::ApiKey) -> Self {
        Self {
            role: role_name(k.role),
            dispatch_area: Some(k.dispatch_area).filter(|a| !a.is_empty()),
            created_at: rfc3339(&k.created_at),
            expires_at: rfc3339(&k.expires_at),
            last_used_at: rfc3339(&k.last_used_at),
            revoked_at: rfc3339(&k.revoked_at),
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_by: k.created_by,
            created_by_username: k.created_by_username,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub include_revoked: Option<bool>,
}

/// API keys, newest first.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListParams),
    responses((status = 200, body = ApiKeyList), (status = 403, body = Problem)))]
async fn list_keys(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<ApiKeyList>> {
    let req = pb::ListApiKeysRequest {
        include_revoked: p.include_revoked.unwrap_or(false),
    };
    let r = crate::read!(state.0.users, list_api_keys, ctx.read(req)).await?;
    Ok(Json(ApiKeyList {
        items: r.keys.into_iter().map(ApiKey::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "erp-exports", "role": "biller"}))]
pub struct CreateKeyBody {
    pub name: String,
    #[schema(pattern = "^(admin|biller|dispatcher)$")]
    pub role: String,
    pub dispatch_area: Option<String>,
    /// RFC 3339; in the future. Absent: never expires.
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: ApiKey,
    /// `tt_key_<prefix>_<secret>`, shown this once (send it as `Authorization: Bearer`).
    pub token: String,
}

/// Create an API key (dispatcher keys need an area); its token is answered once.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateKeyBody,
    responses((status = 201, body = CreatedKey),
              (status = 400, body = Problem, description = "invalid_argument, area_required"),
              (status = 403, body = Problem)))]
async fn create_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateKeyBody>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let role = role_value(&b.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "role must be admin, biller or dispatcher",
        )
    })?;
    let expires_at =
        timestamp(&b.expires_at).map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e))?;
    let req = pb::CreateApiKeyRequest {
        name: b.name,
        role: role as i32,
        dispatch_area: b.dispatch_area.unwrap_or_default(),
        expires_at,
    };
    let r = crate::mutate!(state.0.users, create_api_key, ctx, req)
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: ApiKey::from(r.key.unwrap_or_default()),
            token: r.token,
        }),
    ))
}

/// Revoke an API key: refused everywhere within the token caches' window (≤ 30 s).
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path, example = json!(EXAMPLE_KEY_ID))),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn revoke_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let req = pb::RevokeApiKeyRequest { id };
    let r = crate::mutate!(state.0.users, revoke_api_key, ctx, req).await?;
    Ok(Json(ApiKey::from(r.into_inner().key.unwrap_or_default())))
}
