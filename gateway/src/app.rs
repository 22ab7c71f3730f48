//! The router: every route of SPEC §3 (as they land), OpenAPI generated from the handlers, request
//! ids, trace context from HTTP into gRPC, RED metrics, security headers, body limits, and
//! problem documents for everything that goes wrong (unknown routes and panics included).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tracetrack_domain::ErrorCode;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, REQUEST_ID};
use crate::routes;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "TraceTrack API", version = "1", description = "Seed-bag tracking: scanning, bags, bills, users. Errors are RFC 9457 problem documents with a stable `code`."),
    components(schemas(crate::dto::Problem)),
    tags((name = "auth"), (name = "users"), (name = "api-keys"), (name = "scans"), (name = "bags"), (name = "stats"), (name = "bills"), (name = "exports"), (name = "imports"), (name = "meta"), (name = "reports"), (name = "returns"))
)]
struct ApiDoc;

/// The API router and its OpenAPI document, from the same handlers (they cannot drift).
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::api_keys::router())
        .merge(routes::scans::router())
        .merge(routes::bags::router())
        .merge(routes::stats::router())
        .merge(routes::bills::router())
        .merge(routes::epcis::router())
        .merge(routes::exports::router())
        .merge(routes::imports::router())
        .merge(routes::meta::router())
        .merge(routes::reports::router())
        .merge(routes::returns::router())
        .split_for_parts();
    (router, crate::openapi::finish(doc))
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    let max_body = state.0.settings.max_body_bytes;
    api.route("/api/v1/openapi.json", get(move || { let doc = doc.clone(); async move { Json(doc.as_ref().clone()) } }))
        .merge(crate::web::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), shed))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::Internal, "internal error").into_response()
        }))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .with_state(state)
}

/// The gateway's own readiness: 503 once shutdown has begun, so load balancers stop sending.
/// (An upstream that is down answers 503 on its own routes instead.)
async fn readyz(State(state): State<AppState>) -> Response {
    if *state.0.stopping.borrow() {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "draining"})),
        )
            .into_response()
    } else {
        // Redis is not needed to serve (rate limits fall back to this replica's counters), so
        // readiness stays; the detail says which limits are in force.
        let redis = if state.0.limits.circuit_open() {
            "down: rate limits are per replica"
        } else {
            "ok"
        };
        Json(serde_json::json!({"status": "ready", "redis": redis})).into_response()
    }
}

/// Overload protection: at most `max_concurrent_requests` requests are handled at once and the
/// next is refused at once with 429 `overloaded` and `Retry-After` (no unbounded queue); a
/// request gets `request_timeout_ms`, then 503 `deadline_exceeded` (its upstream calls are
/// dropped with it, and their `grpc-timeout` tells the services to stop too). Health is
/// exempt; exports and imports are exempt from the timeout (they run as long as they need).
/// A live stream counts only until its headers are sent.
async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let long = path.starts_with("/api/v1/exports/") || path.starts_with("/api/v1/imports/");
    let Ok(_permit) = state.0.requests.clone().try_acquire_owned() else {
        metrics::counter!("gateway_shed_total").increment(1);
        return ApiError(tracetrack_base::AppError::overloaded()).into_response();
    };
    let _in_flight = InFlight::new();
    let timeout = std::time::Duration::from_millis(state.0.settings.request_timeout_ms);
    if long || timeout.is_zero() {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            metrics::counter!("gateway_timed_out_total").increment(1);
            ApiError::new(
                ErrorCode::DeadlineExceeded,
                "the request took too long, try again",
            )
            .into_response()
        }
    }
}

/// `gateway_requests_in_flight`: requests holding a place (see [`shed`]).
struct InFlight;

impl InFlight {
    fn new() -> Self {
        metrics::gauge!("gateway_requests_in_flight").increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("gateway_requests_in_flight").decrement(1.0);
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Request id (the caller's if sane, else new), the request span parented to the caller's W3C
/// trace context, and RED metrics by route.
async fn request_context(State(_state): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let span = tracing::info_span!("http.request", otel.name = %format!("{method} {route}"), otel.kind = "server",
        http.method = %method, http.route = %route, request_id = %id);
    let _ = span.set_parent(tracetrack_base::telemetry::extract_context(req.headers()));
    let start = Instant::now();
    let mut resp = REQUEST_ID
        .scope(id.clone(), next.run(req))
        .instrument(span)
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
