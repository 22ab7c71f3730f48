//! The deadline of the call being served: the `grpc-timeout` its caller sent, kept in a
//! task-local by the server's layer (`tracetrack_common::shed`) and read by every outgoing call
//! (`client::Outgoing`), so the deadline travels down the chain and every callee stops work its
//! caller gave up.

use std::future::Future;
use std::time::Duration;

tokio::task_local! {
    /// When the caller of the RPC being served stops waiting (its `grpc-timeout`).
    static DEADLINE: Option<tokio::time::Instant>;
}

/// Time left before the caller of the RPC being served gives up, when it said.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
}

/// Runs `fut` (a call being served) under the deadline of its `grpc-timeout` header, if any.
pub fn serving<F: Future>(grpc_timeout: Option<&str>, fut: F) -> impl Future<Output = F::Output> {
    let deadline = grpc_timeout
        .and_then(parse_grpc_timeout)
        .map(|d| tokio::time::Instant::now() + d);
    DEADLINE.scope(deadline, fut)
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[tokio::test]
    async fn the_deadline_is_known_inside_the_call_only() {
        assert_eq!(remaining(), None);
        let left = serving(Some("2S"), async { remaining() }).await.unwrap();
        assert!(left <= Duration::from_secs(2) && left > Duration::from_secs(1));
    }
}
