//! Second-factor rows (issue 17 §1): the encrypted TOTP secret per user, its recovery codes
//! (SHA-256 only) and the login challenges (SHA-256 of the token only). Each state change that
//! must hold under concurrency — a code's step used once, a recovery code used once, a challenge
//! completed once — is one conditional statement.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracetrack_common::AppResult;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecondFactorRow {
    pub secret_encrypted: Vec<u8>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_step: Option<i64>,
}

pub async fn second_factor(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> AppResult<Option<SecondFactorRow>> {
    Ok(sqlx::query_as(
        "SELECT secret_encrypted, confirmed_at, last_step FROM auth.second_factors WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Stores a new pending secret, replacing a pending one; false when the user already has a
/// confirmed second factor (left alone).
pub async fn put_pending_secret(
    conn: &mut PgConnection,
    user_id: Uuid,
    sealed: &[u8],
) -> AppResult<bool> {
    let r = sqlx::query(
        r#"INSERT INTO auth.second_factors AS f (user_id, secret_encrypted) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE
             SET secret_encrypted = EXCLUDED.secret_encrypted, created_at = now(), last_step = NULL
           WHERE f.confirmed_at IS NULL"#,
    )
    .bind(user_id)
    .bind(sealed)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Confirms the pending secret with the code of `step`; false when there is none pending (or a
/// concurrent confirmation won).
pub async fn confirm(conn: &mut PgConnection, user_id: Uuid, step: i64) -> AppResult<bool> {
    let r = sqlx::query(
        r#"UPDATE auth.second_factors SET confirmed_at = now(), last_step = $2
           WHERE user_id = $1 AND confirmed_at IS NULL"#,
    )
    .bind(user_id)
    .bind(step)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Takes the code of `step` for a confirmed second factor: only a step later than the last one
/// taken (RFC 6238 §5.2: a code is accepted once, and no older one after it).
pub async fn use_step(conn: &mut PgConnection, user_id: Uuid, step: i64) -> AppResult<bool> {
    let r = sqlx::query(
        r#"UPDATE auth.second_factors SET last_step = $2
           WHERE user_id = $1 AND confirmed_at IS NOT NULL
             AND (last_step IS NULL OR last_step < $2)"#,
    )
    .bind(user_id)
    .bind(step)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn replace_recovery_codes(
    conn: &mut PgConnection,
    user_id: Uuid,
    hashes: &[Vec<u8>],
) -> AppResult<()> {
    sqlx::query("DELETE FROM auth.recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO auth.recovery_codes (user_id, code_hash) SELECT $1, h FROM unnest($2::bytea[]) AS h",
    )
    .bind(user_id)
    .bind(hashes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Uses one recovery code; false when it is not the user's or was used already.
pub async fn use_recovery_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    hash: &[u8],
) -> AppResult<bool> {
    let r = sqlx::query(
        r#"UPDATE auth.recovery_codes SET used_at = now()
           WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"#,
    )
    .bind(user_id)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn recovery_codes_left(conn: &mut PgConnection, user_id: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM auth.recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Removes a user's second factor, recovery codes and open challenges; whether one existed.
pub async fn remove_second_factor(conn: &mut PgConnection, user_id: Uuid) -> AppResult<bool> {
    sqlx::query("DELETE FROM auth.recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM auth.login_challenges WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query("DELETE FROM auth.second_factors WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn insert_challenge(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    secs: u64,
    client_ip: Option<&str>,
) -> AppResult<DateTime<Utc>> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO auth.login_challenges (token_hash, user_id, client_ip, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           RETURNING expires_at"#,
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(client_ip)
    .bind(secs as f64)
    .fetch_one(&mut *conn)
    .await?)
}

/// The user of an open challenge (not used, not expired).
pub async fn challenge_user(pool: &PgPool, token_hash: &[u8]) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        r#"SELECT user_id FROM auth.login_challenges
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"#,
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}

/// Completes a challenge once; false when it was used meanwhile or has expired.
pub async fn use_challenge(conn: &mut PgConnection, token_hash: &[u8]) -> AppResult<bool> {
    let r = sqlx::query(
        r#"UPDATE auth.login_challenges SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"#,
    )
    .bind(token_hash)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes challenges over for more than an hour (the purge).
pub async fn purge_challenges(pool: &PgPool) -> AppResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM auth.login_challenges WHERE expires_at < now() - interval '1 hour'",
    )
    .execute(pool)
    .await?
    .rows_affected())
}
