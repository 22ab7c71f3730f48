//! auth's rows and SQL. Every statement is schema-qualified; state changes that must be exact under
//! concurrency are single conditional statements or run under an advisory lock.

mod api_keys;
mod lockout;
mod reset;
mod second_factor;
mod sessions;
mod users;

pub use api_keys::*;
pub use lockout::*;
pub use reset::*;
pub use second_factor::*;
pub use sessions::*;
pub use users::*;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub dispatch_area: Option<String>,
    pub active: bool,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
    /// A confirmed second factor (issue 17 §1).
    pub two_factor_enabled: bool,
}

pub const USER_COLUMNS: &str = r#"
    u.id, u.username, u.email, u.password_hash, u.role, u.dispatch_area, u.active,
    u.must_change_password, u.created_at, u.last_login_at,
    (SELECT f.locked_until FROM auth.login_failures f
      WHERE f.account = lower(u.username) AND f.locked_until > now()) AS locked_until,
    EXISTS (SELECT 1 FROM auth.second_factors sf
      WHERE sf.user_id = u.id AND sf.confirmed_at IS NOT NULL) AS two_factor_enabled"#;

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The unique constraints of `auth.users`, mapped to their stable codes.
pub const USER_UNIQUES: &[(&str, ErrorCode, &str)] = &[
    (
        "users_username_key",
        ErrorCode::UsernameTaken,
        "that username is taken",
    ),
    (
        "users_email_key",
        ErrorCode::EmailTaken,
        "that email is already used",
    ),
];
