//! Errors as RFC 9457 problem documents (`application/problem+json`) carrying the stable `code`,
//! the `request_id`, whether the same request may succeed later (`retryable`) and the error's
//! details as members; statuses and retryability come from the shared table.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tracetrack_base::AppError;
use tracetrack_domain::ErrorCode;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware around every handler.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug)]
pub struct ApiError(pub AppError);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(AppError::new(code, message))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self(AppError::from_status(&s))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("https://tracetrack.dev/problems/{}", e.code)),
        );
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(e.message));
        body.insert("code".into(), json!(e.code.as_str()));
        body.insert("request_id".into(), json!(current_request_id()));
        // Clients (the web client's offline queue) keep a retryable request and drop a definitive one.
        body.insert("retryable".into(), json!(e.code.is_retryable()));
        for (k, v) in &e.details {
            if !body.contains_key(k) {
                // Numbers stay numbers (seconds_left, retry_after_seconds).
                let value = v
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| json!(v));
                body.insert(k.clone(), value);
            }
        }
        let mut resp = (status, axum::Json(Value::Object(body))).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = e.detail("retry_after_seconds") {
            if let Ok(v) = HeaderValue::from_str(secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn problem(code: ErrorCode) -> (StatusCode, Value) {
        let resp = ApiError::new(code, "x").into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_problem_document_says_whether_it_is_retryable() {
        for code in ErrorCode::ALL {
            let (status, body) = problem(*code).await;
            assert_eq!(status.as_u16(), code.http_status(), "{code}");
            assert_eq!(body["code"], code.as_str());
            assert_eq!(
                body["retryable"],
                Value::Bool(code.is_retryable()),
                "{code}"
            );
        }
        assert_eq!(problem(ErrorCode::Unavailable).await.1["retryable"], true);
        assert_eq!(
            problem(ErrorCode::ChildLinkedElsewhere).await.1["retryable"],
            false
        );
    }
}
