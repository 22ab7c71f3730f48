//! JSON body and query extractors whose rejections are problem documents (400
//! `invalid_argument`, 413 `payload_too_large`) instead of axum's plain-text ones.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use tracetrack_domain::ErrorCode;

use crate::error::ApiError;

pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                ))
            }
            Err(e) => Err(ApiError::new(ErrorCode::InvalidArgument, e.body_text())),
        }
    }
}

pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::new(ErrorCode::InvalidArgument, e.body_text()))
            }
            Err(e) => Err(ApiError::new(ErrorCode::InvalidArgument, e.body_text())),
        }
    }
}

/// Retries a read once when the upstream was unavailable (reads are idempotent; writes are never
/// retried here — their idempotency keys let the client retry them).
pub async fn read<T, F, Fut>(mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match call().await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::Unavailable => {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            call()
                .await
                .map(tonic::Response::into_inner)
                .map_err(ApiError::from)
        }
        Err(s) => Err(s.into()),
    }
}

/// `read!(client, method, request)`: an upstream read through [`read`] (retried once when the
/// upstream was unavailable).
#[macro_export]
macro_rules! read {
    ($client:expr, $method:ident, $req:expr) => {
        $crate::extract::read(|| {
            let mut client = $client.clone();
            let request = $req;
            async move { client.$method(request).await }
        })
    };
}

/// `mutate!(client, method, ctx, message)`: an upstream mutation on the user's behalf, with the
/// request's idempotency key; made once more when the first attempt failed in transport (the
/// key makes a replay of one that did land return its first answer). Answers the
/// `tonic::Response`, like the client method.
#[macro_export]
macro_rules! mutate {
    ($client:expr, $method:ident, $ctx:expr, $message:expr) => {
        async {
            let message = $message;
            tracetrack_base::client::retry_transport(|| {
                let mut client = $client.clone();
                let request = $ctx.write(message.clone());
                async move { client.$method(request).await }
            })
            .await
        }
    };
}
