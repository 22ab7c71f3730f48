//! auth's rules for what a request may say (user ids, usernames, emails), the errors it answers
//! with, and its random tokens.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

pub(crate) fn parse_id(id: &str) -> AppResult<Uuid> {
    id.trim()
        .parse()
        .map_err(|_| AppError::new(ErrorCode::UserNotFound, "no such user"))
}

pub(crate) fn locked(until: DateTime<Utc>) -> AppError {
    let secs = (until - Utc::now()).num_seconds().max(1);
    AppError::new(
        ErrorCode::AccountLocked,
        format!(
            "too many failed logins; try again in {} minutes",
            (secs + 59) / 60
        ),
    )
    .with_detail("seconds_left", secs)
}

pub(crate) fn invalid_credentials() -> AppError {
    AppError::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

/// Usernames: 3–50 of letters, digits, `.`, `_`, `-`.
pub(crate) fn validate_username(username: &str) -> AppResult<()> {
    let ok = (3..=50).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "username must be 3-50 letters, digits, '.', '_' or '-'",
        ))
    }
}

pub(crate) fn validate_email(email: &str) -> AppResult<()> {
    if email.is_empty() {
        return Ok(());
    }
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid("email is not a valid address"))
    }
}
