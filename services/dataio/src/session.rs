//! Logging in through the gateway and opening channels, for the command-line tools.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tracetrack_common::client;

/// The gateway's HTTP address when none is given (`make run`'s).
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8080";

/// A lazily connected channel whose calls get `timeout` as their deadline.
pub fn open(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    client::channel(url, timeout).with_context(|| format!("bad endpoint {url:?}"))
}

/// Logs in through the gateway's HTTP API (`POST /api/v1/auth/login`; auth's gRPC `Login`
/// answers only the gateway, which rate-limits logins) and returns the session token, which
/// the services' gRPC APIs take as it is. An account that must change its password first is
/// refused: its session could do nothing else.
pub async fn login(gateway_url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let base = gateway_url.trim_end_matches('/');
    let context = || format!("logging in as {username} at {base}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .with_context(context)?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        anyhow::bail!(
            "{}: HTTP {} {}: {}",
            context(),
            status.as_u16(),
            field("code"),
            field("detail")
        );
    }
    if body.get("must_change_password").and_then(Value::as_bool) == Some(true) {
        anyhow::bail!("{username} must change their password before doing anything else");
    }
    body.get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("{}: the answer has no token", context()))
}
