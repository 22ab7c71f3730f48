//! Logging in through the gateway and opening channels, for the command-line tools.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tracetrack_common::{app_tls, client};

/// The CA bundle given with `--ca-file` (PEM), for the gateway's `https://` address.
static CA_PEM: OnceLock<Vec<u8>> = OnceLock::new();

/// Trusts the CA (PEM, one or more certificates) in `ca_file` for this process's calls, as a
/// service with `tls.grpc` does: gRPC `http://` endpoints are then dialled as `https://` and
/// their certificates verified against it, and an `https://` gateway URL is verified against it
/// too. Call before [`login`] and [`open`]; without it the tools speak plain HTTP and gRPC (and
/// an `https://` gateway URL is refused, as no CA is trusted).
pub fn trust_ca(ca_file: &Path) -> anyhow::Result<()> {
    let name = ca_file.to_string_lossy();
    let pem = std::fs::read(ca_file).with_context(|| format!("reading {name}"))?;
    app_tls::set_client_tls(Some(app_tls::ReloadingCa::new(&name)?));
    let _ = CA_PEM.set(pem);
    Ok(())
}

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
    let mut http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .use_rustls_tls();
    if let Some(pem) = CA_PEM.get() {
        for cert in reqwest::Certificate::from_pem_bundle(pem).context("the CA file")? {
            http = http.add_root_certificate(cert);
        }
    }
    let http = http.build().context("building the HTTP client")?;
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
