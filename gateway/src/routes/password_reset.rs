//! Password reset by e-mail over HTTP (issue 17 §3): ask for a link (the same answer whether or
//! not the account exists), set a new password with it, and the public `GET /api/v1/config` that
//! tells the login page whether the feature is on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::{from_client, ClientIp};
use crate::dto::Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_reset))
        .routes(routes!(complete_reset))
        .routes(routes!(config))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"login": "asha@example.in"}))]
pub struct ResetRequestBody {
    /// A username or an e-mail address.
    pub login: String,
}

/// Forgot password: mails a one-time link (1 hour) when the account exists and is active.
/// Always answers 202, after the same time. Rate-limited per account and per address.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = ResetRequestBody,
    responses((status = 202, description = "accepted (whether or not the account exists)"),
              (status = 409, body = Problem, description = "feature_disabled (no SMTP)"),
              (status = 429, body = Problem, description = "rate_limited")))]
async fn request_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(b): Body<ResetRequestBody>,
) -> ApiResult<StatusCode> {
    let account = b.login.trim().to_lowercase();
    crate::ratelimit::check_sign_in(&state, "reset", &ip, Some(&account)).await?;
    if account.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "give a username or an e-mail address",
        ));
    }
    let req = from_client(pb::RequestPasswordResetRequest { login: b.login }, &ip);
    state.0.auth.clone().request_password_reset(req).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"token": "ttr_…", "new_password": "Monsoon-Field-88"}))]
pub struct ResetCompleteBody {
    /// The token of the mailed link.
    pub token: String,
    pub new_password: String,
}

/// Sets a new password with a reset link (once); ends the user's sessions and clears the lockout.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/complete", tag = "auth", request_body = ResetCompleteBody,
    responses((status = 204), (status = 400, body = Problem, description = "weak_password"),
              (status = 409, body = Problem, description = "reset_link_invalid, feature_disabled"),
              (status = 429, body = Problem, description = "rate_limited")))]
async fn complete_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(b): Body<ResetCompleteBody>,
) -> ApiResult<StatusCode> {
    crate::ratelimit::check_sign_in(&state, "reset", &ip, None).await?;
    let req = from_client(
        pb::CompletePasswordResetRequest {
            token: b.token,
            new_password: b.new_password,
        },
        &ip,
    );
    state.0.auth.clone().complete_password_reset(req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicConfig {
    /// "Forgot password" works (auth has SMTP).
    pub password_reset: bool,
}

/// What the login page needs to know before anyone logs in (public).
#[utoipa::path(get, path = "/api/v1/config", tag = "meta", responses((status = 200, body = PublicConfig)))]
async fn config(State(state): State<AppState>) -> ApiResult<Json<PublicConfig>> {
    // An empty login is no account: auth answers at once, or feature_disabled.
    let asked = state
        .0
        .auth
        .clone()
        .request_password_reset(tonic::Request::new(pb::RequestPasswordResetRequest {
            login: String::new(),
        }))
        .await;
    let password_reset = match asked {
        Ok(_) => true,
        Err(status) => {
            let e = tracetrack_base::AppError::from_status(&status);
            if e.code != ErrorCode::FeatureDisabled {
                return Err(e.into());
            }
            false
        }
    };
    Ok(Json(PublicConfig { password_reset }))
}
