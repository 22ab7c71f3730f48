//! Logging in to auth and opening channels to the services.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;
use tracetrack_common::client;
use tracetrack_common::AppError;
use tracetrack_proto::auth::v1::auth_service_client::AuthServiceClient;
use tracetrack_proto::auth::v1::LoginRequest;

/// Who the benchmark logs in as.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The auth service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub auth_url: String,
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
        let mut auth = AuthServiceClient::new(open(&self.auth_url, Duration::from_secs(10))?);
        let resp = auth
            .login(LoginRequest {
                username: self.username.clone(),
                password: self.password.clone(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", AppError::from_status(&s)))
            .with_context(|| format!("logging in as {} at {}", self.username, self.auth_url))?
            .into_inner();
        if resp.must_change_password {
            anyhow::bail!(
                "{} must change their password before doing anything else",
                self.username
            );
        }
        let user = resp.user.unwrap_or_default();
        Ok(Session {
            token: resp.token,
            role: user.role().as_str_name().to_owned(),
            user_id: user.id,
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
