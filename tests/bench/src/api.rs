//! The gateway's HTTP API as the benchmark sees it: one shared `reqwest` client (one connection
//! pool for every virtual user), `Authorization: Bearer` sessions, and answers classified by the
//! `code` of their problem document (SPEC §3).

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// The gateway's base URL and the shared client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// One answer, read to the end (its latency covers the whole body).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status; 0 when no answer came (connection refused, reset, timeout).
    pub status: u16,
    pub body: Vec<u8>,
    /// Why no answer came (`status == 0`): `timeout` or `transport`.
    pub failure: Option<&'static str>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_5xx(&self) -> bool {
        self.status >= 500
    }

    /// The stable error code: the problem document's `code`, else `http_<status>`, else the
    /// transport failure.
    pub fn code(&self) -> String {
        if let Some(f) = self.failure {
            return f.to_owned();
        }
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("http_{}", self.status))
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `Err` with the code and message unless the answer is a success.
    pub fn check(self, what: &str) -> anyhow::Result<Self> {
        if self.ok() {
            return Ok(self);
        }
        let detail = self
            .value()
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        anyhow::bail!("{what}: HTTP {} {} {detail}", self.status, self.code())
    }

    /// Seconds to wait before retrying a 429 (its `Retry-After`, kept in the problem document).
    pub fn retry_after(&self) -> Option<Duration> {
        if self.status != 429 {
            return None;
        }
        let secs = self
            .value()
            .get("retry_after_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        Some(Duration::from_secs(secs.clamp(1, 60)))
    }
}

impl Api {
    /// A client whose pool keeps as many idle connections as there are virtual users.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the whole answer. Mutations carry a fresh `Idempotency-Key`,
    /// as the web client's do.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mutation = method != Method::GET && method != Method::HEAD;
        let key = mutation.then(|| format!("bench-{}", Uuid::new_v4()));
        self.send_keyed(method, path, token, body, key.as_deref())
            .await
            .0
    }

    /// Sends one request with the given `Idempotency-Key` (a retrying client keeps its key for
    /// every attempt); the answer and its `Retry-After` header.
    pub async fn send_keyed(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (Answer, Option<Duration>) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let failed = |e: reqwest::Error| Answer {
            status: 0,
            body: Vec::new(),
            failure: Some(if e.is_timeout() {
                "timeout"
            } else {
                "transport"
            }),
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match resp.bytes().await {
                    Ok(b) => (
                        Answer {
                            status,
                            body: b.to_vec(),
                            failure: None,
                        },
                        retry_after,
                    ),
                    Err(e) => (failed(e), None),
                }
            }
            Err(e) => (failed(e), None),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// Like [`Api::send`], but waits out 429s (up to `patience`); for set-up calls, not
    /// measured ones.
    pub async fn send_patiently(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        patience: Duration,
    ) -> Answer {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            let a = self.send(method.clone(), path, token, body).await;
            match a.retry_after() {
                Some(wait) if tokio::time::Instant::now() + wait < give_up => {
                    tokio::time::sleep(wait).await;
                }
                _ => return a,
            }
        }
    }

    /// A set-up `GET`: [`Api::send_patiently`] with a minute's patience.
    pub async fn get_patiently(&self, path: &str, token: Option<&str>) -> Answer {
        self.send_patiently(Method::GET, path, token, None, Duration::from_secs(60))
            .await
    }

    /// Is the gateway answering at all?
    pub async fn healthy(&self) -> bool {
        self.send(Method::GET, "/healthz", None, None).await.ok()
    }
}

/// Percent-encodes a path segment or query value (QRs and bill ids are plain, but `M444-` and
/// user input deserve care).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_problem_documents() {
        let a = Answer {
            status: 409,
            body: br#"{"type":"x","code":"parent_full","status":409}"#.to_vec(),
            failure: None,
        };
        assert_eq!(a.code(), "parent_full");
        let b = Answer {
            status: 502,
            body: b"bad gateway".to_vec(),
            failure: None,
        };
        assert_eq!(b.code(), "http_502");
        assert!(b.is_5xx());
        let c = Answer {
            status: 0,
            body: vec![],
            failure: Some("timeout"),
        };
        assert_eq!(c.code(), "timeout");
    }

    #[test]
    fn encoding_keeps_plain_ids() {
        assert_eq!(enc("M444-00001"), "M444-00001");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
