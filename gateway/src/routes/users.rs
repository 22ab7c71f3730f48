//! /api/v1/users: user administration (admin only; auth enforces it).

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
use crate::dto::{role_value, Page, Problem, User};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::filters::PageParams;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, deactivate_user))
        .routes(routes!(unlock_user))
        .routes(routes!(unlock_all))
        .routes(routes!(reset_password))
}

/// The user id in this module's examples (a documentation placeholder; a test seeding its own
/// user substitutes that user's id).
pub const EXAMPLE_USER_ID: &str = "01936f3e-8a4b-7c2d-9e1f-0a1b2c3d4e5f";

fn role(name: &str) -> Result<i32, ApiError> {
    role_value(name).map(|r| r as i32).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "role must be admin, biller or dispatcher",
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Username prefix.
    pub q: Option<String>,
    #[param(pattern = "^(admin|biller|dispatcher)?$")]
    pub role: Option<String>,
    pub include_inactive: Option<bool>,
}

/// Users, by username.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListParams, PageParams),
    responses((status = 200, body = Page<User>), (status = 403, body = Problem)))]
async fn list_users(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<ListParams>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let role = match p.role.as_deref() {
        Some(r) if !r.is_empty() => role(r)?,
        _ => 0,
    };
    let (page_size, page_token) = page.parts();
    let req = pb::ListUsersRequest {
        page_size,
        page_token,
        query: p.q.unwrap_or_default(),
        role,
        include_inactive: p.include_inactive.unwrap_or(false),
    };
    let r = crate::read!(state.0.users, list_users, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.users.into_iter().map(User::from).collect(),
        r.next_page_token,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"username": "ravi", "email": "ravi@example.in", "password": "Kharif-Sowing-88",
    "role": "dispatcher", "dispatch_area": "lucknow"}))]
pub struct CreateUserBody {
    pub username: String,
    #[serde(default)]
    pub email: String,
    pub password: String,
    #[schema(pattern = "^(admin|biller|dispatcher)$")]
    pub role: String,
    pub dispatch_area: Option<String>,
}

/// Create a user (dispatchers need an area).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserBody,
    responses((status = 201, body = User), (status = 400, body = Problem, description = "area_required, weak_password"),
              (status = 409, body = Problem, description = "username_taken, email_taken")))]
async fn create_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateUserBody>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let req = pb::CreateUserRequest {
        username: b.username,
        email: b.email,
        password: b.password,
        role: role(&b.role)?,
        dispatch_area: b.dispatch_area.unwrap_or_default(),
    };
    let r = crate::mutate!(state.0.users, create_user, ctx, req)
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(User::from(r.user.unwrap_or_default())),
    ))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, example = json!(EXAMPLE_USER_ID))),
    responses((status = 200, body = User), (status = 404, body = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let req = pb::GetUserRequest { id };
    let r = crate::read!(state.0.users, get_user, ctx.read(req.clone())).await?;
    Ok(user(r.user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "meena@example.in", "dispatch_area": "indore"}))]
pub struct UpdateUserBody {
    pub email: Option<String>,
    #[schema(pattern = "^(admin|biller|dispatcher)$")]
    pub role: Option<String>,
    pub dispatch_area: Option<String>,
    pub active: Option<bool>,
}

/// Change a user's email, role, area or active flag.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, example = json!(EXAMPLE_USER_ID))), request_body = UpdateUserBody,
    responses((status = 200, body = User), (status = 409, body = Problem, description = "last_admin, self_change_forbidden")))]
async fn update_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<UpdateUserBody>,
) -> ApiResult<Json<User>> {
    let req = pb::UpdateUserRequest {
        id,
        email: b.email,
        role: b.role.as_deref().map(role).transpose()?,
        dispatch_area: b.dispatch_area,
        active: b.active,
    };
    let r = crate::mutate!(state.0.users, update_user, ctx, req).await?;
    Ok(user(r.into_inner().user))
}

/// Deactivate a user (never deleted); their sessions end.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, example = json!(EXAMPLE_USER_ID))),
    responses((status = 200, body = User), (status = 409, body = Problem, description = "last_admin")))]
async fn deactivate_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let req = pb::DeactivateUserRequest { id };
    let r = crate::mutate!(state.0.users, deactivate_user, ctx, req).await?;
    Ok(user(r.into_inner().user))
}

/// Unlock one user locked by failed logins.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "users", params(("id" = String, Path, example = json!(EXAMPLE_USER_ID))),
    responses((status = 200, body = User)))]
async fn unlock_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let req = pb::UnlockUserRequest { id };
    let r = crate::mutate!(state.0.users, unlock_user, ctx, req).await?;
    Ok(user(r.into_inner().user))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnlockAllAnswer {
    pub unlocked: u32,
}

/// Unlock every locked account name (a shift start after a lockout storm).
#[utoipa::path(post, path = "/api/v1/users/unlock-all", tag = "users", responses((status = 200, body = UnlockAllAnswer)))]
async fn unlock_all(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<UnlockAllAnswer>> {
    let r = crate::mutate!(
        state.0.users,
        unlock_all_users,
        ctx,
        pb::UnlockAllUsersRequest {}
    )
    .await?
    .into_inner();
    Ok(Json(UnlockAllAnswer {
        unlocked: r.unlocked,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"password": "Rabi-Season-2025"}))]
pub struct ResetBody {
    /// A temporary password; the user must change it at next login.
    pub password: String,
}

/// Reset a user's password to a temporary one.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-password", tag = "users", params(("id" = String, Path, example = json!(EXAMPLE_USER_ID))), request_body = ResetBody,
    responses((status = 200, body = User), (status = 400, body = Problem, description = "weak_password")))]
async fn reset_password(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<ResetBody>,
) -> ApiResult<Json<User>> {
    let temporary_password = b.password;
    let req = pb::ResetPasswordRequest {
        id,
        temporary_password,
    };
    let r = crate::mutate!(state.0.users, reset_password, ctx, req).await?;
    Ok(user(r.into_inner().user))
}

fn user(u: Option<pb::User>) -> Json<User> {
    Json(User::from(u.unwrap_or_default()))
}
