//! Logging in through the gateway and opening channels to the services.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tonic::transport::Channel;
use tracetrack_common::client;
use tracetrack_common::AppError;

use crate::accounts;
use crate::api::Api;

/// Who the benchmark logs in as, and where.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The gateway: the tool logs in through its HTTP API (auth's gRPC Login answers only the
    /// gateway); the session token then works on the services' gRPC APIs.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Defaults to $TRACETRACK_ADMIN_PASSWORD (`make run` keeps it in .local/run/secrets.env as
    /// ADMIN_PASSWORD).
    #[arg(long, env = "TRACETRACK_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
}

/// A logged-in user's session token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user_id: String,
    pub role: String,
}

impl LoginArgs {
    pub async fn login(&self) -> anyhow::Result<Session> {
        let api = Api::new(&self.base_url, Duration::from_secs(30))?;
        let v = accounts::login_answer(&api, &self.username, &self.password).await?;
        let field = |k: &str| {
            v.get("user")
                .and_then(|u| u.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Session {
            token: v
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| {
                    format!(
                        "logging in as {} at {}: no token",
                        self.username, self.base_url
                    )
                })?,
            role: field("role"),
            user_id: field("id"),
        })
    }
}

/// A lazily connected channel whose calls get `timeout` as their deadline.
pub fn open(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    client::channel(url, timeout).with_context(|| format!("bad endpoint {url:?}"))
}

/// Renders a failed call as its stable TraceTrack code and message.
pub fn describe(status: &tonic::Status) -> String {
    AppError::from_status(status).to_string()
}
