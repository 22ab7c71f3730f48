//! Fixed-window rate limits kept in Redis, so they hold across gateway replicas. When Redis is
//! down the limits fail open (logged): scanning must not stop because a counter store is away.

use std::time::{SystemTime, UNIX_EPOCH};

use tracetrack_common::AppError;
use tracetrack_domain::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// Counts one hit on `key` in the current window of `window_secs`; refuses past `limit` with
/// 429 `rate_limited` and the seconds until the window turns.
pub async fn check(
    state: &AppState,
    key: &str,
    limit: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    let settings = &state.0.settings;
    if !settings.rate_limits.enabled || limit == 0 {
        return Ok(());
    }
    let Some(mut redis) = state.redis().await else {
        return Ok(());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let window = window_secs.max(1);
    let bucket = now / window;
    let k = format!("{}:rl:{key}:{bucket}", settings.redis_key_prefix);
    let counted: Result<(u64,), redis::RedisError> = redis::pipe()
        .atomic()
        .incr(&k, 1u64)
        .expire(&k, (window * 2) as i64)
        .ignore()
        .query_async(&mut redis)
        .await;
    match counted {
        Ok((n,)) if n > limit => {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            let retry = window - now % window;
            Err(ApiError(
                AppError::new(ErrorCode::RateLimited, "too many requests, slow down")
                    .with_detail("retry_after_seconds", retry.max(1)),
            ))
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit check failed; allowing");
            Ok(())
        }
    }
}

fn window_key(state: &AppState, key: &str, window_secs: u64) -> (String, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let window = window_secs.max(1);
    (
        format!(
            "{}:rl:{key}:{}",
            state.0.settings.redis_key_prefix,
            now / window
        ),
        window - now % window,
    )
}

/// Refuses (429 `rate_limited`) while `key` has more than `limit` failures in the current
/// window, without counting this request; see [`count_failure`].
pub async fn refuse_over(
    state: &AppState,
    key: &str,
    limit: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    if !state.0.settings.rate_limits.enabled || limit == 0 {
        return Ok(());
    }
    let Some(mut redis) = state.redis().await else {
        return Ok(());
    };
    let (k, retry) = window_key(state, key, window_secs);
    let n: Result<Option<u64>, redis::RedisError> =
        redis::cmd("GET").arg(&k).query_async(&mut redis).await;
    match n {
        Ok(Some(n)) if n >= limit => {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            Err(ApiError(
                AppError::new(
                    ErrorCode::RateLimited,
                    "too many failed attempts, slow down",
                )
                .with_detail("retry_after_seconds", retry.max(1)),
            ))
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit check failed; allowing");
            Ok(())
        }
    }
}

/// Counts one failure on `key` in the current window (see [`refuse_over`]).
pub async fn count_failure(state: &AppState, key: &str, window_secs: u64) {
    if !state.0.settings.rate_limits.enabled {
        return;
    }
    let Some(mut redis) = state.redis().await else {
        return;
    };
    let (k, _) = window_key(state, key, window_secs);
    let counted: Result<(), redis::RedisError> = redis::pipe()
        .atomic()
        .incr(&k, 1u64)
        .ignore()
        .expire(&k, (window_secs.max(1) * 2) as i64)
        .ignore()
        .query_async(&mut redis)
        .await;
    if let Err(e) = counted {
        tracing::warn!(error = %e, "counting a failure failed");
    }
}
