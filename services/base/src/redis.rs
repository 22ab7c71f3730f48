//! Redis connections. Redis holds streams and rate-limit counters; it is never the system of
//! record, so every user of it tolerates it being down or restarted empty.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// A connection manager that reconnects by itself after Redis comes back. A `rediss://` URL
/// speaks TLS (rustls), verifying the server's certificate and host name against the webpki
/// roots, or against `ca_file` only when it is set.
pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<ConnectionManager> {
    let client = client(settings)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .set_response_timeout(Duration::from_millis(settings.response_timeout_ms))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config).await
}

/// The client for `settings` (no connection yet): TLS with the configured CA when `ca_file` is
/// set, which requires a `rediss://` URL (a CA file on a plain connection would be ignored).
pub fn client(settings: &RedisSettings) -> redis::RedisResult<redis::Client> {
    let Some(ca_file) = settings.ca_file.as_deref().filter(|f| !f.is_empty()) else {
        return redis::Client::open(settings.url.as_str());
    };
    if !settings.url.starts_with("rediss://") {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "redis.ca_file is set but the URL is not rediss://",
        )));
    }
    let root_cert = std::fs::read(ca_file).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "cannot read redis.ca_file",
            format!("{ca_file}: {e}"),
        ))
    })?;
    redis::Client::build_with_tls(
        settings.url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
}

/// A connection error in words an operator can act on: a refused TLS certificate says which
/// check failed and what to look at; anything else as Redis said it.
pub fn explain(e: &redis::RedisError) -> String {
    crate::tls::refusal(e, "Redis", "redis.ca_file").unwrap_or_else(|| e.to_string())
}

/// Connects, retrying every second until Redis answers or `stop` fires.
pub async fn connect_retrying(
    settings: &RedisSettings,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<ConnectionManager> {
    loop {
        match connect(settings).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %explain(&e), "redis unavailable, retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return None,
        }
        if *stop.borrow() {
            return None;
        }
    }
}
