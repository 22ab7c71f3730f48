//! /api/v1/auth: login (sets the session cookie), logout, me, password.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_proto::auth::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::{from_client, ClientIp, Ctx, SESSION_COOKIE};
use crate::dto::{rfc3339, Problem, User};
use crate::error::ApiResult;
use crate::extract::Body;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .merge(super::two_factor::router())
        .merge(super::password_reset::router())
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"username": "asha", "password": "Mustard-Field-42"}))]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// For scripts: send as `Authorization: Bearer <token>`. Browsers use the cookie. Empty when
    /// a `challenge` is answered instead.
    pub token: String,
    /// Browsers send it back in `X-CSRF-Token` on unsafe requests.
    pub csrf_token: String,
    pub expires_at: Option<String>,
    pub user: Option<User>,
    pub must_change_password: bool,
    /// The user has two-factor sign-in: no session yet; send this with a code to
    /// `POST /api/v1/auth/login/complete` before `challenge_expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_expires_at: Option<String>,
}

fn session_cookie(state: &AppState, token: &str, max_age: i64) -> HeaderValue {
    let secure = if state.0.settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("tt_session=; Path=/; Max-Age=0"))
}

/// Log in: sets an HttpOnly, SameSite=Strict session cookie and returns the token and CSRF token;
/// for a user with two-factor sign-in, answers a `challenge` instead (no cookie).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = LoginAnswer), (status = 401, body = Problem, description = "invalid_credentials"),
               (status = 423, body = Problem, description = "account_locked"), (status = 429, body = Problem, description = "rate_limited")))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(b): Body<LoginBody>,
) -> ApiResult<Response> {
    let account = b.username.trim().to_lowercase();
    crate::ratelimit::check_sign_in(&state, "login", &ip, Some(&account)).await?;
    let req = from_client(
        pb::LoginRequest {
            username: b.username,
            password: b.password,
        },
        &ip,
    );
    let r = state.0.auth.clone().login(req).await?.into_inner();
    Ok(login_answer(&state, r).await)
}

/// A login's answer: a session (and its cookie), or the challenge of a second factor (no
/// cookie).
pub(crate) async fn login_answer(state: &AppState, r: pb::LoginResponse) -> Response {
    if !r.challenge.is_empty() {
        return Json(LoginAnswer {
            token: String::new(),
            csrf_token: String::new(),
            expires_at: None,
            user: None,
            must_change_password: false,
            challenge_expires_at: rfc3339(&r.challenge_expires_at),
            challenge: Some(r.challenge),
        })
        .into_response();
    }
    let max_age = r
        .expires_at
        .as_ref()
        .map(|t| t.seconds - chrono::Utc::now().timestamp())
        .unwrap_or(0)
        .max(0);
    state.0.verifier.issued(&r.token).await;
    let cookie = session_cookie(state, &r.token, max_age);
    let answer = LoginAnswer {
        expires_at: rfc3339(&r.expires_at),
        user: r.user.map(User::from),
        token: r.token,
        csrf_token: r.csrf_token,
        must_change_password: r.must_change_password,
        challenge: None,
        challenge_expires_at: None,
    };
    let mut resp = Json(answer).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp
}

/// Log out: ends the session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = Problem)))]
async fn logout(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Response> {
    crate::mutate!(state.0.auth, logout, ctx, pb::LogoutRequest {}).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeAnswer {
    pub user: Option<User>,
    pub csrf_token: String,
    pub expires_at: Option<String>,
}

/// The logged-in user and the session's CSRF token.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = MeAnswer), (status = 401, body = Problem, description = "unauthenticated")))]
async fn me(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<MeAnswer>> {
    let r = state
        .0
        .auth
        .clone()
        .who_am_i(ctx.read(pb::WhoAmIRequest {}))
        .await?
        .into_inner();
    Ok(Json(MeAnswer {
        user: r.user.map(User::from),
        csrf_token: r.csrf_token,
        expires_at: rfc3339(&r.expires_at),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"current_password": "Mustard-Field-42", "new_password": "Moong-Harvest-77"}))]
pub struct PasswordBody {
    pub current_password: String,
    pub new_password: String,
}

/// Change one's own password (also clears a forced change).
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordBody,
    responses((status = 204), (status = 400, body = Problem, description = "weak_password"), (status = 401, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<PasswordBody>,
) -> ApiResult<StatusCode> {
    crate::mutate!(
        state.0.auth,
        change_password,
        ctx,
        pb::ChangePasswordRequest {
            current_password: b.current_password,
            new_password: b.new_password,
        }
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
