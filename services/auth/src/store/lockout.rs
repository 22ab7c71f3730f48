//! The lockout's failure counters, one row per account name.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracetrack_common::{AppError, AppResult};

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

/// The counter after an admitted attempt.
#[derive(sqlx::FromRow)]
struct Admitted {
    failures: i32,
    locked_until: Option<DateTime<Utc>>,
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
        let admitted: Option<Admitted> = sqlx::query_as(
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
        if let Some(Admitted {
            failures,
            locked_until,
        }) = admitted
        {
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

/// Clears every failure counter (UnlockAllUsers); how many held a lock in force.
pub async fn clear_all_failures(conn: &mut PgConnection) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "WITH d AS (DELETE FROM auth.login_failures RETURNING locked_until) SELECT count(*) FROM d WHERE locked_until > now()",
    )
    .fetch_one(&mut *conn)
    .await?)
}
