//! One error type for service code. Its code comes from the shared table in `tracetrack-domain`;
//! it converts to a `tonic::Status` carrying `google.rpc.ErrorInfo { reason: code, domain:
//! "tracetrack", metadata: details }`. The source error is logged, never sent.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracetrack_domain::error::{GrpcCode, ERROR_DOMAIN};
use tracetrack_domain::ErrorCode;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<(String, String)>,
    source: Option<anyhow::Error>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            source: None,
        }
    }

    pub fn with_detail(mut self, key: &str, value: impl ToString) -> Self {
        self.details.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// What caused it, for the log (never sent).
    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// An unexpected failure: the caller sees `internal`, the log sees `source`.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: "internal error".into(),
            details: Vec::new(),
            source: Some(source.into()),
        }
    }

    pub fn unavailable(what: &str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: format!("{what} is unavailable, try again"),
            details: Vec::new(),
            source: Some(source.into()),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// Load shed: this replica is busy (429 with `Retry-After` at the gateway).
    pub fn overloaded() -> Self {
        Self::new(ErrorCode::Overloaded, "the service is busy, try again")
            .with_detail("retry_after_seconds", 1)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "not logged in or session expired",
        )
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// Another service's error, passed on unchanged (code, message and details such as
    /// `other_bill_id`), except that a transport failure or a deadline says which dependency
    /// (`what`: "the bag registry") failed instead of leaking its text.
    pub fn from_upstream(status: &Status, what: &str) -> Self {
        let err = Self::from_status(status);
        match err.code {
            ErrorCode::Unavailable if err.details.is_empty() => {
                Self::unavailable(what, status.clone())
            }
            ErrorCode::DeadlineExceeded if err.details.is_empty() => Self::new(
                ErrorCode::DeadlineExceeded,
                format!("{what} did not answer in time, try again"),
            ),
            _ => err,
        }
    }

    /// Reads a TraceTrack error back out of a `Status` (client side).
    pub fn from_status(status: &Status) -> Self {
        let details = status.get_error_details();
        if let Some(info) = details.error_info() {
            if let Some(code) = ErrorCode::parse(&info.reason) {
                let mut details: Vec<(String, String)> = info
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                details.sort();
                return Self {
                    code,
                    message: status.message().to_owned(),
                    details,
                    source: None,
                };
            }
        }
        // Not one of ours: a transport failure ("tcp connect error", a reset connection arrives
        // as `Unknown`), a layer's answer (load shedding, a deadline), or a bug. Its text is
        // someone else's words: the caller gets ours, the log gets theirs.
        let (code, message) = match status.code() {
            Code::InvalidArgument => (ErrorCode::InvalidArgument, "the request is not valid"),
            Code::Unauthenticated => (
                ErrorCode::Unauthenticated,
                "not logged in or session expired",
            ),
            Code::PermissionDenied => (ErrorCode::PermissionDenied, "not allowed"),
            Code::NotFound => (ErrorCode::NotFound, "not found"),
            Code::ResourceExhausted => (ErrorCode::Overloaded, "the service is busy, try again"),
            Code::Unavailable | Code::Unknown => (
                ErrorCode::Unavailable,
                "a service is unavailable, try again",
            ),
            Code::DeadlineExceeded | Code::Cancelled => (
                ErrorCode::DeadlineExceeded,
                "a service did not answer in time, try again",
            ),
            Code::Aborted => (ErrorCode::Conflict, "a concurrent change won, retry"),
            _ => (ErrorCode::Internal, "internal error"),
        };
        tracing::warn!(grpc_code = ?status.code(), upstream = %status.message(), code = %code, "upstream error without a TraceTrack code");
        let err = Self::new(code, message);
        if code == ErrorCode::Overloaded {
            err.with_detail("retry_after_seconds", 1)
        } else {
            err
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {}

pub fn grpc_code(code: GrpcCode) -> Code {
    match code {
        GrpcCode::InvalidArgument => Code::InvalidArgument,
        GrpcCode::DeadlineExceeded => Code::DeadlineExceeded,
        GrpcCode::NotFound => Code::NotFound,
        GrpcCode::AlreadyExists => Code::AlreadyExists,
        GrpcCode::PermissionDenied => Code::PermissionDenied,
        GrpcCode::ResourceExhausted => Code::ResourceExhausted,
        GrpcCode::FailedPrecondition => Code::FailedPrecondition,
        GrpcCode::Aborted => Code::Aborted,
        GrpcCode::Internal => Code::Internal,
        GrpcCode::Unavailable => Code::Unavailable,
        GrpcCode::Unauthenticated => Code::Unauthenticated,
    }
}

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        if let Some(source) = &err.source {
            if err.code == ErrorCode::Internal {
                tracing::error!(code = %err.code, error = ?source, "request failed");
            } else {
                tracing::warn!(code = %err.code, error = %source, "request failed");
            }
        }
        let metadata: HashMap<String, String> = err.details.into_iter().collect();
        Status::with_error_details(
            grpc_code(err.code.grpc_code()),
            err.message,
            ErrorDetails::with_error_info(err.code.as_str(), ERROR_DOMAIN, metadata),
        )
    }
}

impl From<redis::RedisError> for AppError {
    fn from(err: redis::RedisError) -> Self {
        AppError::unavailable("redis", err)
    }
}

impl From<Status> for AppError {
    fn from(status: Status) -> Self {
        AppError::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_and_details() {
        let e = AppError::new(
            ErrorCode::ChildLinkedElsewhere,
            "child is in another parent",
        )
        .with_detail("other_parent_qr", "SB00001");
        let status: Status = e.into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let back = AppError::from_status(&status);
        assert_eq!(back.code, ErrorCode::ChildLinkedElsewhere);
        assert_eq!(back.detail("other_parent_qr"), Some("SB00001"));
    }

    #[test]
    fn foreign_statuses_get_our_words() {
        let e = AppError::from_status(&Status::unavailable(
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
        ));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("tcp"), "{}", e.message);
        let e = AppError::from_status(&Status::unknown("connection reset by peer"));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("reset"), "{}", e.message);
        let e = AppError::from_status(&Status::resource_exhausted("load shed"));
        assert_eq!(e.code, ErrorCode::Overloaded);
        assert_eq!(e.detail("retry_after_seconds"), Some("1"));
        let e = AppError::from_status(&Status::internal("h2 protocol error: stream 7"));
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(e.message, "internal error");
    }

    #[test]
    fn internal_hides_its_source() {
        let status: Status =
            AppError::internal(anyhow::anyhow!("relation auth.users secret")).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("auth.users"));
    }
}
