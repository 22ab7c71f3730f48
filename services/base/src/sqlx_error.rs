//! Database errors in the shared table's words (with the `sqlx` feature, which services enable
//! and the gateway does not): a busy pool is `overloaded`, a lost or refused connection
//! `unavailable` (and opens the service's circuit, `db_health`), a serialization failure or
//! deadlock `conflict`; anything else is `internal`.

use tracetrack_domain::ErrorCode;

use crate::db_health::{answers, trip};
use crate::error::AppError;

/// Serialization failures and deadlocks: the transaction can simply run again.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40001" || c == "40P01")
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if matches!(err, sqlx::Error::PoolTimedOut) {
            metrics::counter!("db_pool_acquire_timeouts_total").increment(1);
        }
        match &err {
            // No connection came free in time while the database answers health checks: every
            // connection is busy with live work, so this replica is overloaded (429, retry
            // soon). A database that cannot be reached is an outage (503) — see `db::answers`.
            sqlx::Error::PoolTimedOut if answers() => AppError::overloaded().with_source(err),
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                AppError::unavailable("the database", err)
            }
            // No connection, or the server went away under it (`terminating connection due to
            // unexpected postmaster exit`, an admin or crash shutdown, a lost connection): an
            // outage, not a bug — and the circuit opens, so the next calls do not wait for it.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => {
                trip();
                AppError::unavailable("the database", err)
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| connection_lost(&c)) => {
                trip();
                AppError::unavailable("the database", err)
            }
            _ if is_retryable(&err) => {
                AppError::new(ErrorCode::Conflict, "a concurrent change won, retry")
                    .with_source(err)
            }
            _ => AppError::internal(err),
        }
    }
}

/// SQLSTATEs of a connection the server ended or lost: class 08 (connection exception) and
/// 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// The constraint (or unique index) a unique violation hit, to map it to a stable code.
pub fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.code().as_deref() == Some("23505") {
        db.constraint()
    } else {
        None
    }
}

/// The constraint a CHECK violation hit.
pub fn check_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.code().as_deref() == Some("23514") {
        db.constraint()
    } else {
        None
    }
}

impl AppError {
    /// Maps a unique violation by constraint name through `map` (constraint, code, message);
    /// anything else as usual.
    pub fn from_unique(err: sqlx::Error, map: &[(&str, ErrorCode, &str)]) -> AppError {
        if let Some(name) = unique_violation(&err) {
            if let Some((_, code, message)) = map.iter().find(|(c, _, _)| *c == name) {
                return AppError::new(*code, *message);
            }
        }
        AppError::from(err)
    }
}
