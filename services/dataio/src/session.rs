//! Logging in to auth and opening channels, for the command-line tools.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;
use tracetrack_common::{client, AppError};
use tracetrack_proto::auth::v1::auth_service_client::AuthServiceClient;
use tracetrack_proto::auth::v1::LoginRequest;

/// A lazily connected channel whose calls get `timeout` as their deadline.
pub fn open(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    client::channel(url, timeout).with_context(|| format!("bad endpoint {url:?}"))
}

/// Logs in and returns the session token (an account that must change its password first is
/// refused: its session could do nothing else).
pub async fn login(auth_url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let mut auth = AuthServiceClient::new(open(auth_url, Duration::from_secs(15))?);
    let resp = auth
        .login(LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", AppError::from_status(&s)))
        .with_context(|| format!("logging in as {username} at {auth_url}"))?
        .into_inner();
    if resp.must_change_password {
        anyhow::bail!("{username} must change their password before doing anything else");
    }
    Ok(resp.token)
}
