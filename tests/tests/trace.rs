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

/// The far end: records the traceparent it receives.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl Health for Recorder {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let tp = req
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.0.lock().unwrap().push(tp);
        Ok(Response::new(HealthCheckResponse { status: 1 }))
    }
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// The middle hop: answers by calling the far end through the kit's client.
#[derive(Clone)]
struct Forwarder(HealthClient<client::Intercepted>);

#[tonic::async_trait]
impl Health for Forwarder {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0.clone().check(HealthCheckRequest::default()).await
    }
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

async fn serve<S: Health>(svc: S) -> std::net::SocketAddr {
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
    let recorder = Recorder::default();
    let far = serve(recorder.clone()).await;
    let channel =
        client::channel(&format!("http://{far}"), std::time::Duration::from_secs(5)).unwrap();
    let forwarder = Forwarder(HealthClient::with_interceptor(
        channel,
        Outgoing::new(None).unwrap(),
    ));
    let middle = serve(forwarder).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut req = Request::new(HealthCheckRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    let ch = tonic::transport::Channel::from_shared(format!("http://{middle}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(ch).check(req).await.unwrap();

    let seen = recorder.0.lock().unwrap().clone();
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
    let ch = tonic::transport::Channel::from_shared(format!("http://{middle}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].starts_with("00-") && !seen[1].contains(trace_id),
        "{seen:?}"
    );
}
