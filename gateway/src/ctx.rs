//! Who is asking: the session (cookie or `Authorization: Bearer`), verified through auth with the
//! shared ≤ 30 s cache; the CSRF check for cookie-authenticated unsafe requests; the per-user rate
//! limit; the idempotency key (the client's, or one made here before any retry); the client
//! address and request id passed on to the services.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use tonic::metadata::MetadataValue;
use tracetrack_common::caller::{TokenVerifier, UserIdentity};
use tracetrack_common::metadata::{CLIENT_IP, MAX_IDEMPOTENCY_KEY_LEN, REQUEST_ID};
use tracetrack_common::AppError;
use tracetrack_domain::ErrorCode;

use crate::error::{current_request_id, ApiError};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "tt_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub struct Ctx {
    pub user: UserIdentity,
    pub token: String,
    pub idempotency_key: String,
    pub client_ip: String,
    pub request_id: String,
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        if let Some(ip) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return ip.to_owned();
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// The client's address (the socket peer, or `X-Forwarded-For` behind a trusted proxy).
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(
            parts,
            state.0.settings.trust_forwarded_for,
        )))
    }
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let (token, via_cookie) = match bearer {
            Some(t) => (t, false),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(t) => (t, true),
                None => return Err(AppError::unauthenticated().into()),
            },
        };
        let user = state
            .0
            .verifier
            .verify_user(&token)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        if via_cookie && is_unsafe(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if sent.is_empty() || sent != user.csrf_token {
                return Err(ApiError(
                    AppError::permission_denied("missing or wrong X-CSRF-Token header")
                        .with_detail("reason", "csrf"),
                ));
            }
        }
        crate::ratelimit::check(
            state,
            &format!("user:{}", user.id),
            state.0.settings.rate_limits.user_per_second,
            1,
        )
        .await?;
        let idempotency_key = match parts.headers.get("idempotency-key").map(|v| v.to_str()) {
            Some(Ok(k)) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
                k.trim().to_owned()
            }
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "Idempotency-Key must be 1-200 visible characters",
                ));
            }
            None => format!("gw-{}", uuid::Uuid::new_v4()),
        };
        Ok(Ctx {
            user,
            token,
            idempotency_key,
            client_ip: client_ip(parts, state.0.settings.trust_forwarded_for),
            request_id: current_request_id(),
        })
    }
}

impl Ctx {
    /// A request to a service on this user's behalf, for a read.
    pub fn read<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tracetrack_common::client::request(message, Some(&self.token), None);
        self.stamp(&mut r);
        r
    }

    /// A request for a mutation: carries the idempotency key.
    pub fn write<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tracetrack_common::client::request(
            message,
            Some(&self.token),
            Some(&self.idempotency_key),
        );
        self.stamp(&mut r);
        r
    }

    fn stamp<T>(&self, r: &mut tonic::Request<T>) {
        if let Ok(v) = MetadataValue::try_from(self.client_ip.as_str()) {
            r.metadata_mut().insert(CLIENT_IP, v);
        }
        if let Ok(v) = MetadataValue::try_from(self.request_id.as_str()) {
            r.metadata_mut().insert(REQUEST_ID, v);
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == tracetrack_domain::Role::Admin
    }
}
