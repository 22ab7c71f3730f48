//! auth's SQL. Every statement is schema-qualified; state changes that must be exact under
//! concurrency are single conditional statements or run under an advisory lock.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tracetrack_common::{AppError, AppResult};
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
}

pub const USER_COLUMNS: &str = r#"
    u.id, u.username, u.email, u.password_hash, u.role, u.dispatch_area, u.active,
    u.must_change_password, u.created_at, u.last_login_at,
    (SELECT f.locked_until FROM auth.login_failures f
      WHERE f.account = lower(u.username) AND f.locked_until > now()) AS locked_until"#;

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub async fn user_by_username(pool: &PgPool, account: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM auth.users u WHERE lower(u.username) = $1"
    )))
    .bind(account)
    .fetch_optional(pool)
    .await?)
}

pub async fn user_by_id(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> AppResult<Option<UserRow>> {
    let lock = if for_update { "FOR UPDATE OF u" } else { "" };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM auth.users u WHERE u.id = $1 {lock}"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The lock on an account name, if one is in force.
pub async fn locked_until(pool: &PgPool, account: &str) -> AppResult<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT locked_until FROM auth.login_failures WHERE account = $1 AND locked_until > now()",
    )
    .bind(account)
    .fetch_optional(pool)
    .await?)
}

/// What the lockout says to one password attempt on an account name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted as a failure up front (`failures` in a row, this one included); verify it, then
    /// [`refund_attempt`] it on success. `locked_until` is set when this attempt was the one that
    /// reached the limit: it is still verified, and a failure answers `account_locked`.
    Admitted {
        failures: i32,
        locked_until: Option<DateTime<Utc>>,
    },
    /// The name is locked: refuse without verifying anything.
    Locked(DateTime<Utc>),
}

/// Admits or refuses one attempt, atomically and before any password is verified: one upsert
/// counts it as a failure unless a lock is in force (no row back). So a burst of parallel
/// attempts gets exactly `max` verifications, however many run at once. A lock that has run out
/// starts a fresh count.
pub async fn reserve_attempt(
    pool: &PgPool,
    account: &str,
    max: i32,
    lock_secs: u64,
) -> AppResult<Attempt> {
    // A lock that runs out between the upsert and the read admits the next try.
    for _ in 0..3 {
        let admitted: Option<(i32, Option<DateTime<Utc>>)> = sqlx::query_as(
            r#"INSERT INTO auth.login_failures AS f (account, failures, locked_until, last_failure_at)
               VALUES ($1, 1, CASE WHEN 1 >= $2 THEN now() + make_interval(secs => $3) END, now())
               ON CONFLICT (account) DO UPDATE SET
                 failures = CASE WHEN f.locked_until <= now() THEN 1 ELSE f.failures + 1 END,
                 locked_until = CASE
                   WHEN (CASE WHEN f.locked_until <= now() THEN 1 ELSE f.failures + 1 END) >= $2
                   THEN now() + make_interval(secs => $3) END,
                 last_failure_at = now()
               WHERE f.locked_until IS NULL OR f.locked_until <= now()
               RETURNING failures, locked_until"#,
        )
        .bind(account)
        .bind(max)
        .bind(lock_secs as f64)
        .fetch_optional(pool)
        .await?;
        if let Some((failures, locked_until)) = admitted {
            return Ok(Attempt::Admitted {
                failures,
                locked_until,
            });
        }
        if let Some(until) = locked_until(pool, account).await? {
            return Ok(Attempt::Locked(until));
        }
    }
    Err(AppError::internal(anyhow::anyhow!(
        "the lock on {account:?} kept changing under the attempt"
    )))
}

/// Takes back `n` failures counted by [`reserve_attempt`]: on a success, its `failures` (this
/// attempt and the ones admitted before it, whose run the success broke; failures admitted
/// after it by concurrent attempts stay counted); on an attempt that was never verified, 1.
/// Lifts the lock once the count is below `max`; deletes the row at 0.
pub async fn refund_attempt(
    conn: &mut PgConnection,
    account: &str,
    n: i32,
    max: i32,
) -> AppResult<()> {
    let left: Option<i32> = sqlx::query_scalar(
        r#"UPDATE auth.login_failures SET
             failures = GREATEST(failures - $2, 0),
             locked_until = CASE WHEN GREATEST(failures - $2, 0) < $3 THEN NULL ELSE locked_until END
           WHERE account = $1
           RETURNING failures"#,
    )
    .bind(account)
    .bind(n)
    .bind(max)
    .fetch_optional(&mut *conn)
    .await?;
    if left == Some(0) {
        sqlx::query("DELETE FROM auth.login_failures WHERE account = $1 AND failures = 0")
            .bind(account)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn clear_failures(conn: &mut PgConnection, account: &str) -> AppResult<bool> {
    let r = sqlx::query("DELETE FROM auth.login_failures WHERE account = $1")
        .bind(account)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

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

/// Serialises every change that can reduce the number of active admins.
pub async fn lock_admins(conn: &mut PgConnection) -> AppResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracetrack.auth.admins'))")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn other_active_admins(conn: &mut PgConnection, except: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM auth.users WHERE role = 'admin' AND active AND id <> $1",
    )
    .bind(except)
    .fetch_one(&mut *conn)
    .await?)
}
