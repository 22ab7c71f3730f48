//! Fixed-window rate limits kept in Redis, so they hold across gateway replicas.
//!
//! Redis is not allowed to slow requests down: every Redis call gets [`REDIS_BUDGET`], and a
//! failure opens a circuit for [`CIRCUIT_OPEN`], during which Redis is not asked at all and the
//! limits are counted in this replica instead (so while Redis is away they multiply by the number
//! of replicas). `gateway_redis_circuit_open` and `/readyz`'s `redis` member say which is in force.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracetrack_base::AppError;
use tracetrack_domain::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest a request waits for Redis.
pub const REDIS_BUDGET: Duration = Duration::from_millis(100);
/// How long Redis is left alone after it failed.
pub const CIRCUIT_OPEN: Duration = Duration::from_secs(5);

/// The circuit in front of Redis and the per-replica counters used while it is open.
#[derive(Default)]
pub struct Limits {
    open_until: Mutex<Option<Instant>>,
    /// key → (window bucket, count); old buckets are dropped as windows turn.
    local: Mutex<HashMap<String, (u64, u64)>>,
}

impl Limits {
    /// True while Redis is left alone (it failed in the last [`CIRCUIT_OPEN`]).
    pub fn circuit_open(&self) -> bool {
        let open = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        open.is_some_and(|t| Instant::now() < t)
    }

    fn trip(&self, why: &dyn std::fmt::Display) {
        let mut open = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open.is_none_or(|t| Instant::now() >= t) {
            tracing::warn!(error = %why, "redis failed: rate limits are per replica for a while");
        }
        *open = Some(Instant::now() + CIRCUIT_OPEN);
        metrics::gauge!("gateway_redis_circuit_open").set(1.0);
    }

    fn close(&self) {
        let mut open = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open.take().is_some() {
            tracing::info!("redis answers again: rate limits are shared again");
            metrics::gauge!("gateway_redis_circuit_open").set(0.0);
        }
    }

    /// Adds `by` to the local count of `key` in `bucket`; returns the new count.
    fn local_add(&self, key: &str, bucket: u64, by: u64) -> u64 {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local.len() > 100_000 {
            local.retain(|_, (b, _)| *b >= bucket);
        }
        let entry = local.entry(key.to_owned()).or_insert((bucket, 0));
        if entry.0 != bucket {
            *entry = (bucket, 0);
        }
        entry.1 += by;
        entry.1
    }
}

struct Window {
    key: String,
    bucket: u64,
    window: u64,
    retry_after: u64,
}

fn window(state: &AppState, key: &str, window_secs: u64) -> Window {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let window = window_secs.max(1);
    let bucket = now / window;
    Window {
        key: format!("{}:rl:{key}:{bucket}", state.0.settings.redis_key_prefix),
        bucket,
        window,
        retry_after: (window - now % window).max(1),
    }
}

/// Adds `by` (0 reads) to the window's count and returns it: in Redis when it answers within
/// its budget, else in this replica.
async fn add(state: &AppState, w: &Window, by: u64) -> u64 {
    let limits = &state.0.limits;
    if !limits.circuit_open() {
        let answered = tokio::time::timeout(REDIS_BUDGET, async {
            let Some(mut redis) = state.redis().await else {
                return Err("not connected".to_owned());
            };
            let counted: Result<(u64,), redis::RedisError> = redis::pipe()
                .atomic()
                .incr(&w.key, by)
                .expire(&w.key, (w.window * 2) as i64)
                .ignore()
                .query_async(&mut redis)
                .await;
            counted.map(|(n,)| n).map_err(|e| e.to_string())
        })
        .await;
        match answered {
            Ok(Ok(n)) => {
                limits.close();
                return n;
            }
            Ok(Err(e)) => limits.trip(&e),
            Err(_) => limits.trip(&"no answer within the budget"),
        }
    }
    metrics::counter!("gateway_rate_limit_local_total").increment(1);
    limits.local_add(&w.key, w.bucket, by)
}

fn limited(message: &str, retry_after: u64) -> ApiError {
    metrics::counter!("gateway_rate_limited_total").increment(1);
    ApiError(
        AppError::new(ErrorCode::RateLimited, message)
            .with_detail("retry_after_seconds", retry_after),
    )
}

/// Counts one hit on `key` in the current window of `window_secs`; refuses past `limit` with
/// 429 `rate_limited` and the seconds until the window turns.
pub async fn check(
    state: &AppState,
    key: &str,
    limit: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    let message = "too many requests, slow down";
    refuse_at(state, key, limit, window_secs, 1, message).await
}

/// The per-minute limits of the routes a person uses before having a session (`route`: `login`
/// for a login and its code step, `reset` for a password reset): one hit on `{route}-ip:{ip}`
/// and, when the request names an account, one on `{route}-account:{account}`.
pub async fn check_sign_in(
    state: &AppState,
    route: &str,
    ip: &str,
    account: Option<&str>,
) -> Result<(), ApiError> {
    let limits = &state.0.settings.rate_limits;
    let per_ip = limits.login_per_ip_per_minute;
    check(state, &format!("{route}-ip:{ip}"), per_ip, 60).await?;
    if let Some(account) = account {
        let per_account = limits.login_per_account_per_minute;
        check(
            state,
            &format!("{route}-account:{account}"),
            per_account,
            60,
        )
        .await?;
    }
    Ok(())
}

/// Refuses (429 `rate_limited`) while `key` has `limit` or more failures in the current window,
/// without counting this request; see [`count_failure`].
pub async fn refuse_over(
    state: &AppState,
    key: &str,
    limit: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    let message = "too many failed attempts, slow down";
    refuse_at(state, key, limit, window_secs, 0, message).await
}

/// Adds `by` to `key`'s count in the current window and refuses with `message` when the window
/// held `limit` or more before this request (a `limit` of 0 never refuses).
async fn refuse_at(
    state: &AppState,
    key: &str,
    limit: u64,
    window_secs: u64,
    by: u64,
    message: &str,
) -> Result<(), ApiError> {
    if !state.0.settings.rate_limits.enabled || limit == 0 {
        return Ok(());
    }
    let w = window(state, key, window_secs);
    if add(state, &w, by).await.saturating_sub(by) >= limit {
        return Err(limited(message, w.retry_after));
    }
    Ok(())
}

/// Counts one failure on `key` in the current window (see [`refuse_over`]).
pub async fn count_failure(state: &AppState, key: &str, window_secs: u64) {
    if !state.0.settings.rate_limits.enabled {
        return;
    }
    let w = window(state, key, window_secs);
    add(state, &w, 1).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_turn_with_the_window() {
        let l = Limits::default();
        assert_eq!(l.local_add("k", 7, 1), 1);
        assert_eq!(l.local_add("k", 7, 1), 2);
        assert_eq!(l.local_add("k", 7, 0), 2);
        assert_eq!(l.local_add("k", 8, 1), 1);
        assert!(!l.circuit_open());
        l.trip(&"down");
        assert!(l.circuit_open());
        l.close();
        assert!(!l.circuit_open());
    }
}
