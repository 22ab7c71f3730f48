//! A W3C traceparent sent into a service crosses to the calls it makes: two servers built with
//! the kit's server (trace extraction) and client interceptor (injection), over real gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tracetrack_common::client::{self, Outgoing};
use tracetrack_common::config::TelemetrySettings;

type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<HealthCheckResponse, Status>>;

/// A hop: the far end records the traceparent it receives; the middle one answers by calling
/// the far end through the kit's client.
#[derive(Clone)]
enum Hop {
    Far(Arc<Mutex<Vec<String>>>),
    Middle(Box<HealthClient<client::Intercepted>>),
}

#[tonic::async_trait]
impl Health for Hop {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match self {
            Hop::Far(seen) => {
                let tp = req.metadata().get("traceparent");
                let tp = tp.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push(tp);
                Ok(Response::new(HealthCheckResponse { status: 1 }))
            }
            Hop::Middle(far) => far.clone().check(HealthCheckRequest::default()).await,
        }
    }
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

async fn serve(svc: Hop) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tracetrack_common::server::grpc_server(&Default::default())
        .add_service(HealthServer::new(svc));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

#[tokio::test]
async fn a_traceparent_sent_in_crosses_to_the_outgoing_call() {
    tracetrack_common::telemetry::init("trace-test", &TelemetrySettings::default()).unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let far = serve(Hop::Far(Arc::clone(&recorded))).await;
    let channel =
        client::channel(&format!("http://{far}"), std::time::Duration::from_secs(5)).unwrap();
    let outgoing = Outgoing::new(None).unwrap();
    let forward = HealthClient::with_interceptor(channel, outgoing);
    let middle = serve(Hop::Middle(Box::new(forward))).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut req = Request::new(HealthCheckRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    let middle = tonic::transport::Channel::from_shared(format!("http://{middle}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(middle.clone()).check(req).await.unwrap();

    let seen = recorded.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let parts: Vec<&str> = seen[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{seen:?}");
    assert_eq!(parts[1], trace_id, "the trace id crossed the hop");
    assert_ne!(
        parts[2], parent_span,
        "the middle hop's own span is the parent downstream"
    );
    assert_eq!(parts[3], "01");

    // Without a traceparent in, the middle hop starts a trace of its own and passes it on.
    HealthClient::new(middle)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    let seen = recorded.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].starts_with("00-") && !seen[1].contains(trace_id),
        "{seen:?}"
    );
}
