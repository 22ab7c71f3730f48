//! Sessions and service accounts: tokens are stored hashed ([`super::token_hash`]).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{UserRow, USER_COLUMNS};

pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token_hash: &'a [u8],
    pub csrf_token: &'a str,
    pub absolute_secs: u64,
    pub client_ip: Option<&'a str>,
}

pub async fn insert_session(
    conn: &mut PgConnection,
    s: NewSession<'_>,
) -> AppResult<DateTime<Utc>> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO auth.sessions (id, user_id, token_hash, csrf_token, expires_at, client_ip)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
           RETURNING expires_at"#,
    )
    .bind(s.id)
    .bind(s.user_id)
    .bind(s.token_hash)
    .bind(s.csrf_token)
    .bind(s.absolute_secs as f64)
    .bind(s.client_ip)
    .fetch_one(&mut *conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionUser {
    pub session_id: Uuid,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub user: UserRow,
}

/// Resolves a session token and touches it, in one statement: open, not past its absolute
/// expiry, seen within the idle timeout, and its user still active.
pub async fn session_user(
    pool: &PgPool,
    token_hash: &[u8],
    idle_secs: u64,
) -> AppResult<Option<SessionUser>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH s AS (
             UPDATE auth.sessions s SET last_seen_at = now()
             FROM auth.users u
             WHERE s.token_hash = $1 AND s.user_id = u.id AND u.active
               AND s.ended_at IS NULL AND s.expires_at > now()
               AND s.last_seen_at > now() - make_interval(secs => $2)
             RETURNING s.id, s.csrf_token, s.expires_at, s.user_id)
           SELECT s.id AS session_id, s.csrf_token, s.expires_at, {USER_COLUMNS}
           FROM s JOIN auth.users u ON u.id = s.user_id"#
    )))
    .bind(token_hash)
    .bind(idle_secs as f64)
    .fetch_optional(pool)
    .await?)
}

pub async fn end_session(
    conn: &mut PgConnection,
    token_hash: &[u8],
    reason: &str,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE auth.sessions SET ended_at = now(), ended_reason = $2 WHERE token_hash = $1 AND ended_at IS NULL",
    )
    .bind(token_hash)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends a user's open sessions, except `keep` (the caller's own, on a password change).
pub async fn end_user_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> AppResult<u64> {
    let r = sqlx::query(
        r#"UPDATE auth.sessions SET ended_at = now(), ended_reason = $3
           WHERE user_id = $1 AND ended_at IS NULL AND ($2::uuid IS NULL OR id <> $2)"#,
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected())
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub login_failures: u64,
}

/// Rows deleted per statement, so a purge never holds many row locks at once.
const PURGE_BATCH: i64 = 5_000;

/// Deletes sessions over for longer than `keep_secs` (ended, past their absolute expiry, or idle
/// for longer than `idle_secs`), and failure counters whose last attempt is older than the lock
/// window and that hold no lock in force.
pub async fn purge(
    pool: &PgPool,
    keep_secs: u64,
    idle_secs: u64,
    lock_secs: u64,
) -> AppResult<Purged> {
    let mut purged = Purged::default();
    loop {
        let n = sqlx::query(
            r#"DELETE FROM auth.sessions WHERE id IN (
                 SELECT id FROM auth.sessions
                 WHERE ended_at < now() - make_interval(secs => $1)
                    OR expires_at < now() - make_interval(secs => $1)
                    OR last_seen_at < now() - make_interval(secs => $1 + $2)
                 LIMIT $3)"#,
        )
        .bind(keep_secs as f64)
        .bind(idle_secs as f64)
        .bind(PURGE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        purged.sessions += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    loop {
        let n = sqlx::query(
            r#"DELETE FROM auth.login_failures WHERE account IN (
                 SELECT account FROM auth.login_failures
                 WHERE last_failure_at < now() - make_interval(secs => $1)
                   AND (locked_until IS NULL OR locked_until <= now())
                 LIMIT $2)
               AND last_failure_at < now() - make_interval(secs => $1)
               AND (locked_until IS NULL OR locked_until <= now())"#,
        )
        .bind(lock_secs as f64)
        .bind(PURGE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        purged.login_failures += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(purged)
}

pub async fn service_by_token(pool: &PgPool, token_hash: &[u8]) -> AppResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM auth.service_accounts WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(pool)
            .await?,
    )
}

/// Makes the service accounts exactly the configured ones.
pub async fn sync_service_accounts(
    pool: &PgPool,
    accounts: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let names: Vec<&str> = accounts.iter().map(|(n, _)| n.as_str()).collect();
    sqlx::query("DELETE FROM auth.service_accounts WHERE name <> ALL($1)")
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    for (name, hash) in accounts {
        sqlx::query(
            r#"INSERT INTO auth.service_accounts AS a (name, token_hash) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, rotated_at = now()
               WHERE a.token_hash <> EXCLUDED.token_hash"#,
        )
        .bind(name)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
