//! API keys for integrations (issue 17 §2): created, listed, revoked, and resolved from a token
//! (only the token's SHA-256 is stored, [`super::token_hash`]).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

/// A key as admins see it (never its token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub dispatch_area: Option<String>,
    pub created_by: Uuid,
    pub created_by_username: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_SELECT: &str = r#"
    SELECT k.id, k.name, k.prefix, k.role, k.dispatch_area, k.created_by,
           u.username AS created_by_username, k.created_at, k.expires_at, k.last_used_at,
           k.revoked_at
    FROM auth.api_keys k JOIN auth.users u ON u.id = k.created_by"#;

/// The unique constraints of `auth.api_keys` a request can hit.
const KEY_UNIQUES: &[(&str, ErrorCode, &str)] = &[(
    "api_keys_live_name_key",
    ErrorCode::InvalidArgument,
    "a key that is not revoked already has that name",
)];

pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a [u8],
    pub role: &'a str,
    pub dispatch_area: Option<&'a str>,
    pub created_by: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Inserts a key; `invalid_argument` when a live key has the name.
pub async fn insert_api_key(conn: &mut PgConnection, k: &NewApiKey<'_>) -> AppResult<()> {
    sqlx::query(
        r#"INSERT INTO auth.api_keys
             (id, name, prefix, token_hash, role, dispatch_area, created_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
    )
    .bind(k.id)
    .bind(k.name)
    .bind(k.prefix)
    .bind(k.token_hash)
    .bind(k.role)
    .bind(k.dispatch_area)
    .bind(k.created_by)
    .bind(k.expires_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| AppError::from_unique(e, KEY_UNIQUES))?;
    Ok(())
}

pub async fn api_key_by_id(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<ApiKeyRow>> {
    Ok(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{KEY_SELECT} WHERE k.id = $1")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Every key (there are few: one per integration), newest first.
pub async fn list_api_keys(pool: &PgPool, include_revoked: bool) -> AppResult<Vec<ApiKeyRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{KEY_SELECT} WHERE $1 OR k.revoked_at IS NULL ORDER BY k.created_at DESC, k.id DESC"
    )))
    .bind(include_revoked)
    .fetch_all(pool)
    .await?)
}

/// Revokes a key not yet revoked; whether this call did.
pub async fn revoke_api_key(conn: &mut PgConnection, id: Uuid, by: Uuid) -> AppResult<bool> {
    let r = sqlx::query(
        r#"UPDATE auth.api_keys SET revoked_at = now(), revoked_by = $2
           WHERE id = $1 AND revoked_at IS NULL"#,
    )
    .bind(id)
    .bind(by)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// What a live key acts as.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyPrincipal {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub dispatch_area: Option<String>,
}

/// Resolves a key's token: not revoked, not expired. Its last use is noted in the same
/// statement, at most once a minute (callers cache the answer for up to 30 s besides, so a busy
/// key costs a write a minute, not one per request).
pub async fn api_key_principal(
    pool: &PgPool,
    token_hash: &[u8],
) -> AppResult<Option<KeyPrincipal>> {
    Ok(sqlx::query_as(
        r#"WITH k AS (
             SELECT id, name, role, dispatch_area FROM auth.api_keys
             WHERE token_hash = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())),
           touched AS (
             UPDATE auth.api_keys a SET last_used_at = now() FROM k
             WHERE a.id = k.id
               AND (a.last_used_at IS NULL OR a.last_used_at < now() - interval '1 minute')
             RETURNING a.id)
           SELECT id, name, role, dispatch_area FROM k"#,
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}
