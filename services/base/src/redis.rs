//! Redis connections. Redis holds streams and rate-limit counters; it is never the system of
//! record, so every user of it tolerates it being down or restarted empty.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// A connection manager that reconnects by itself after Redis comes back.
pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(settings.url.as_str())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .set_response_timeout(Duration::from_millis(settings.response_timeout_ms))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config).await
}

/// Connects, retrying every second until Redis answers or `stop` fires.
pub async fn connect_retrying(
    settings: &RedisSettings,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<ConnectionManager> {
    loop {
        match connect(settings).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %e, "redis unavailable, retrying"),
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
