//! Prometheus metrics on the admin port (never the public one) and the RED layer that counts every
//! RPC by method and status code and times it.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Registers counters at 0 so they are on `/metrics` before their first increment: a rate over
/// a series that does not exist yet is empty, not 0, and dashboards and alerts would miss it.
/// For the counters of rare events (shedding, timeouts, circuit trips); once per process.
pub fn zero(counters: &[&'static str]) {
    for name in counters {
        metrics::counter!(*name).increment(0);
    }
}

/// Serves `/metrics` and `/healthz` on the admin listener until `stop` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let h = handle();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let h = h.clone();
                async move { h.render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Tower layer recording, per RPC: `grpc_server_handled_total{method,code}`,
/// `grpc_server_handling_seconds{method}` and `grpc_server_in_flight{method}`.
#[derive(Clone, Default)]
pub struct RedLayer;

impl<S> tower::Layer<S> for RedLayer {
    type Service = Red<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Red { inner }
    }
}

#[derive(Clone)]
pub struct Red<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Red<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let start = Instant::now();
        let in_flight = metrics::gauge!("grpc_server_in_flight", "method" => method.clone());
        in_flight.increment(1.0);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            in_flight.decrement(1.0);
            let code = match &result {
                // Errors travel trailers-only, so their status is in the headers; a missing
                // grpc-status header means the call went on to a normal (OK) end.
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(grpc_code_name)
                    .unwrap_or("OK"),
                Err(_) => "TRANSPORT",
            };
            metrics::counter!("grpc_server_handled_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("grpc_server_handling_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            result
        })
    }
}

fn grpc_code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}
