//! Overload protection for every gRPC server: at most `max_concurrent_rpcs` calls run at once per
//! replica and the next one is refused at once with `overloaded` (RESOURCE_EXHAUSTED, HTTP 429
//! with `Retry-After` at the gateway) instead of queueing without bound; each call gets at most
//! `request_timeout_ms` (`deadline_exceeded`), and a shorter `grpc-timeout` from the caller wins
//! (tonic's server honours it, so work the caller gave up on is dropped).
//!
//! Health and reflection are exempt, so an overloaded replica is not restarted by its probes; a
//! client-streaming import (`ImportBags`) is exempt from the timeout (its caller sets its own).
//!
//! A hand-written layer rather than tower's `ConcurrencyLimit` + `LoadShed`: those decide in
//! `poll_ready`, before the request (and so its path) is known, and could not exempt health.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracetrack_domain::ErrorCode;

use crate::config::LimitSettings;
use crate::AppError;

/// Paths never limited: probes and tooling.
const EXEMPT_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];
/// Paths without the server's own deadline (they run as long as their caller allows).
const NO_TIMEOUT: &[&str] = &["/tracetrack.registry.v1.BagRegistryService/ImportBags"];

#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    timeout: Option<Duration>,
    database: Option<crate::db::Health>,
}

impl ShedLayer {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.max_concurrent_rpcs.max(1))),
            timeout: (settings.request_timeout_ms > 0)
                .then(|| Duration::from_millis(settings.request_timeout_ms)),
            database: None,
        }
    }

    /// Calls are refused at once with `unavailable` while `health` says the service's database
    /// does not answer (a circuit: see [`crate::db::Health`]).
    pub fn with_database(mut self, health: crate::db::Health) -> Self {
        self.database = Some(health);
        self
    }
}

pub fn database_down() -> AppError {
    AppError::new(
        ErrorCode::Unavailable,
        "the service cannot reach its database, try again",
    )
    .with_detail("retry_after_seconds", 1)
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

/// The answer of a refused call, as tonic would write it (trailers-only).
fn refuse<RB: Default>(err: AppError) -> http::Response<RB> {
    tonic::Status::from(err).into_http()
}

pub fn overloaded() -> AppError {
    AppError::overloaded()
}

impl<S, B, RB> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(req));
        }
        let timeout = if NO_TIMEOUT.contains(&path) {
            None
        } else {
            self.layer.timeout
        };
        if let Some(db) = &self.layer.database {
            if !db.answers() {
                metrics::counter!("grpc_server_database_down_total").increment(1);
                return Box::pin(async { Ok(refuse(database_down())) });
            }
        }
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            metrics::counter!("grpc_server_shed_total").increment(1);
            return Box::pin(async { Ok(refuse(overloaded())) });
        };
        // The caller's deadline, for the calls this one makes (see `client::Outgoing`).
        let grpc_timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let fut = crate::db::serving(
            self.layer.database.clone(),
            tracetrack_base::deadline::serving(grpc_timeout.as_deref(), self.inner.call(req)),
        );
        Box::pin(async move {
            let _permit = permit;
            match timeout {
                None => fut.await,
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => {
                        metrics::counter!("grpc_server_timed_out_total").increment(1);
                        Ok(refuse(AppError::new(
                            ErrorCode::DeadlineExceeded,
                            "the request took too long, try again",
                        )))
                    }
                },
            }
        })
    }
}
