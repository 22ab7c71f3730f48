//! Two-factor sign-in over HTTP (issue 17 §1): the login's code step, one's own enrolment (the
//! QR code drawn here as SVG, no internet), turning it off, and an admin's reset of a user's.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_proto::auth::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::{from_client, ClientIp, Ctx};
use crate::dto::{Problem, User};
use crate::error::ApiResult;
use crate::extract::Body;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(complete_login))
        .routes(routes!(begin_enrolment))
        .routes(routes!(confirm_enrolment))
        .routes(routes!(disable))
        .routes(routes!(reset))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"challenge": "ttc_3q2…", "code": "492039"}))]
pub struct CompleteBody {
    pub challenge: String,
    /// The 6 digits the authenticator app shows; or give `recovery_code`.
    #[serde(default)]
    pub code: String,
    /// One of the recovery codes (each works once).
    #[serde(default)]
    pub recovery_code: String,
}

/// The code step of a login: completes a `challenge` with a code or a recovery code; answers
/// the session (and sets its cookie) like a login. Wrong codes count toward the lockout.
#[utoipa::path(post, path = "/api/v1/auth/login/complete", tag = "auth", request_body = CompleteBody,
    responses((status = 200, body = crate::routes::auth::LoginAnswer), (status = 400, body = Problem, description = "invalid_argument (neither or both of code and recovery_code)"),
              (status = 401, body = Problem, description = "invalid_credentials, login_challenge_expired"),
              (status = 423, body = Problem, description = "account_locked"), (status = 429, body = Problem, description = "rate_limited")))]
async fn complete_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(b): Body<CompleteBody>,
) -> ApiResult<Response> {
    crate::ratelimit::check_sign_in(&state, "login", &ip, None).await?;
    let req = from_client(
        pb::CompleteLoginRequest {
            challenge: b.challenge,
            code: b.code,
            recovery_code: b.recovery_code,
        },
        &ip,
    );
    let r = state.0.auth.clone().complete_login(req).await?.into_inner();
    Ok(crate::routes::auth::login_answer(&state, r).await)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrolmentAnswer {
    /// Base32, for typing into the app by hand.
    pub secret: String,
    pub otpauth_url: String,
    /// The otpauth URL as an SVG QR code.
    pub qr_svg: String,
}

/// Start (or start again) one's own enrolment: a new secret, its QR code. Confirm with a code.
#[utoipa::path(post, path = "/api/v1/auth/two-factor/enrolment", tag = "auth",
    responses((status = 200, body = EnrolmentAnswer), (status = 401, body = Problem), (status = 403, body = Problem, description = "password_change_required"),
              (status = 409, body = Problem, description = "two_factor_enrolled, feature_disabled")))]
async fn begin_enrolment(
    State(state): State<AppState>,
    ctx: Ctx,
) -> ApiResult<Json<EnrolmentAnswer>> {
    let r = crate::mutate!(
        state.0.auth,
        begin_two_factor_enrolment,
        ctx,
        pb::BeginTwoFactorEnrolmentRequest {}
    )
    .await?
    .into_inner();
    let qr_svg = crate::document::qr::svg(&r.otpauth_url)
        .map(maud::Markup::into_string)
        .unwrap_or_default();
    Ok(Json(EnrolmentAnswer {
        secret: r.secret,
        otpauth_url: r.otpauth_url,
        qr_svg,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"code": "492039"}))]
pub struct ConfirmBody {
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmAnswer {
    /// Shown this once: each works once in place of a code.
    pub recovery_codes: Vec<String>,
    pub user: Option<User>,
}

/// Confirm the enrolment with the app's current code: two-factor sign-in is on; answers the 10
/// recovery codes (shown once).
#[utoipa::path(post, path = "/api/v1/auth/two-factor/confirm", tag = "auth", request_body = ConfirmBody,
    responses((status = 200, body = ConfirmAnswer), (status = 400, body = Problem), (status = 401, body = Problem, description = "invalid_credentials (wrong code)"),
              (status = 409, body = Problem, description = "two_factor_enrolled, two_factor_not_enrolled")))]
async fn confirm_enrolment(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<ConfirmBody>,
) -> ApiResult<Json<ConfirmAnswer>> {
    let r = crate::mutate!(
        state.0.auth,
        confirm_two_factor_enrolment,
        ctx,
        pb::ConfirmTwoFactorEnrolmentRequest { code: b.code }
    )
    .await?
    .into_inner();
    // The session's restriction (an admin sent to enrolment) is lifted now, not in 30 s.
    state.0.verifier.forget(&ctx.token).await;
    Ok(Json(ConfirmAnswer {
        recovery_codes: r.recovery_codes,
        user: r.user.map(User::from),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"password": "Mustard-Field-42", "code": "492039"}))]
pub struct DisableBody {
    pub password: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub recovery_code: String,
}

/// Turn one's own two-factor sign-in off: needs the password and a code (or a recovery code).
#[utoipa::path(post, path = "/api/v1/auth/two-factor/disable", tag = "auth", request_body = DisableBody,
    responses((status = 200, body = User), (status = 400, body = Problem, description = "invalid_argument"), (status = 401, body = Problem, description = "invalid_credentials"),
              (status = 409, body = Problem, description = "two_factor_not_enrolled"), (status = 423, body = Problem, description = "account_locked")))]
async fn disable(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<DisableBody>,
) -> ApiResult<Json<User>> {
    let r = crate::mutate!(
        state.0.auth,
        disable_two_factor,
        ctx,
        pb::DisableTwoFactorRequest {
            password: b.password,
            code: b.code,
            recovery_code: b.recovery_code,
        }
    )
    .await?
    .into_inner();
    state.0.verifier.forget(&ctx.token).await;
    Ok(Json(User::from(r.user.unwrap_or_default())))
}

/// Remove a user's two-factor sign-in (a lost phone); audited. They may set it up again.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-two-factor", tag = "users",
    params(("id" = String, Path, example = json!(crate::routes::users::EXAMPLE_USER_ID))),
    responses((status = 200, body = User), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem, description = "user_not_found"),
              (status = 409, body = Problem, description = "two_factor_not_enrolled")))]
async fn reset(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let r = crate::mutate!(
        state.0.users,
        reset_two_factor,
        ctx,
        pb::ResetTwoFactorRequest { id }
    )
    .await?
    .into_inner();
    Ok(Json(User::from(r.user.unwrap_or_default())))
}
