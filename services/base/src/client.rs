//! Outgoing gRPC: one shared, lazily connected `Channel` per upstream (cheap to clone, multiplexed),
//! and an interceptor that adds the caller's service token and the current W3C trace context.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::metadata::{AUTHORIZATION, IDEMPOTENCY_KEY, SERVICE_TOKEN};

/// A channel that connects on first use and reconnects by itself; every call gets `timeout` as
/// its deadline unless the request sets a shorter one.
pub fn channel(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        // Generous: a peer starved of CPU under overload answers pings late, and a connection
        // closed for that fails every request in flight on it.
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A channel over one or more endpoints (`url` may list several, comma-separated): calls are
/// balanced per request across them, so replicas behind a headless Service (or listed by hand)
/// share the load.
pub fn balanced_channel(urls: &str, timeout: Duration) -> anyhow::Result<Channel> {
    let list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if list.len() <= 1 {
        return channel(list.first().copied().unwrap_or(urls), timeout);
    }
    let endpoints = list
        .into_iter()
        .map(|u| {
            Ok(Endpoint::from_shared(u.to_owned())?
                .connect_timeout(Duration::from_secs(2))
                .timeout(timeout)
                .tcp_nodelay(true))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

/// Adds `x-service-token` and `traceparent` to every outgoing request, and `grpc-timeout` (the
/// channel's deadline) when the request has none, so the callee drops work its caller gave up.
#[derive(Clone)]
pub struct Outgoing {
    service_token: Option<MetadataValue<Ascii>>,
    deadline: Option<Duration>,
}

impl Outgoing {
    pub fn new(service_token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            service_token: service_token.map(MetadataValue::try_from).transpose()?,
            deadline: None,
        })
    }

    /// Tells callees the deadline (the channel's `timeout`): `grpc-timeout` on every request
    /// that does not carry a shorter one of its own.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        crate::telemetry::inject_into_metadata(req.metadata_mut());
        if let Some(token) = &self.service_token {
            req.metadata_mut().insert(SERVICE_TOKEN, token.clone());
        }
        // The shorter of the channel's deadline and what is left of our own caller's.
        let deadline = match (self.deadline, crate::deadline::remaining()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline {
            if req.metadata().get("grpc-timeout").is_none() {
                req.set_timeout(d);
            }
        }
        Ok(req)
    }
}

pub type Intercepted = InterceptedService<Channel, Outgoing>;

/// The transport of a client of another of our services: a channel balanced over `urls`
/// (comma-separated replicas) whose every call carries `timeout_ms` as its deadline, this
/// service's token and the trace context. `XServiceClient::new(upstream(..)?)`.
pub fn upstream(
    urls: &str,
    timeout_ms: u64,
    auth: &crate::config::AuthClientSettings,
) -> anyhow::Result<Intercepted> {
    use secrecy::ExposeSecret;
    let timeout = Duration::from_millis(timeout_ms);
    let token = auth.service_token.as_ref().map(|t| t.expose_secret());
    Ok(InterceptedService::new(
        balanced_channel(urls, timeout)?,
        Outgoing::new(token)?.with_deadline(timeout),
    ))
}

/// Wraps a message with the end user's token and an idempotency key.
pub fn request<T>(
    message: T,
    user_token: Option<&str>,
    idempotency_key: Option<&str>,
) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(t) = user_token {
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {t}")) {
            req.metadata_mut().insert(AUTHORIZATION, v);
        }
    }
    if let Some(k) = idempotency_key {
        if let Ok(v) = MetadataValue::try_from(k) {
            req.metadata_mut().insert(IDEMPOTENCY_KEY, v);
        }
    }
    req
}

/// True when a call failed in transport — no answer of ours came back (a refused or reset
/// connection arrives as `UNAVAILABLE` or `UNKNOWN` without TraceTrack's `ErrorInfo`). Our own
/// answers, load shedding (`RESOURCE_EXHAUSTED`) and deadlines are never transport failures.
pub fn is_transport_failure(status: &Status) -> bool {
    use tonic_types::StatusExt;
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && status
        .get_error_details()
        .error_info()
        .is_none_or(|i| i.domain != tracetrack_domain::error::ERROR_DOMAIN)
}

/// Makes a call, and makes it once more when the first attempt failed in transport (a replica
/// or a connection died under it): the balanced channel sends the retry on another connection,
/// to another replica where there is one. Only for idempotent calls — reads, and mutations that
/// carry an idempotency key (a retry of one that did land returns its first answer). `call`
/// builds a fresh request each time.
pub async fn retry_transport<T, F, Fut>(mut call: F) -> Result<tonic::Response<T>, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    match call().await {
        Err(s) if is_transport_failure(&s) => {
            metrics::counter!("grpc_client_transport_retries_total").increment(1);
            tracing::debug!(error = %s, "transport failure; retrying once");
            call().await
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_once_on_transport_failures_only() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let attempt = |status: Status| {
            let calls = &calls;
            move || {
                let status = status.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        Err(status)
                    } else {
                        Ok(tonic::Response::new(()))
                    }
                }
            }
        };
        assert!(
            retry_transport(attempt(Status::unavailable("tcp connect error")))
                .await
                .is_ok()
        );
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            retry_transport(attempt(Status::unknown("connection reset")))
                .await
                .is_ok()
        );
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 2);
        // Our own answers and shedding are not retried.
        let ours: Status =
            crate::AppError::unavailable("the database", anyhow::anyhow!("down")).into();
        assert!(retry_transport(attempt(ours)).await.is_err());
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
        assert!(retry_transport(attempt(Status::resource_exhausted("shed")))
            .await
            .is_err());
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    }
}
