//! The kit every TraceTrack service (a process with a database) is built from, on top of
//! `tracetrack-base` (what every process uses, re-exported here under the same names).
//!
//! A service's `startup.rs` loads its [`config`], initialises [`telemetry`], opens its [`db`] pool
//! (running migrations when configured), connects [`redis`], and hands its tonic services to
//! [`server::ServiceRuntime`], which adds health, reflection, trace-context extraction, RED
//! metrics, load shedding ([`shed`]), the outbox relay and graceful shutdown. Handlers resolve
//! their [`caller::Caller`], return [`error::AppError`], write events with [`outbox::enqueue`]
//! and make mutations replay-safe with [`mutation::Mutations`]; [`consumer`]s apply other services'
//! events; [`cli`] runs the commands every service binary has.

pub use tracetrack_base::{
    app_tls, caller, client, config, deadline, error, metadata, metrics, page, redis, shutdown,
    telemetry, time, MiMalloc,
};

pub mod batch;
pub mod cli;
pub mod consumer;
pub mod db;
pub mod export;
pub mod idempotency;
#[cfg(feature = "mail")]
pub mod mail;
pub mod mutation;
pub mod outbox;
pub mod server;
pub mod shed;

pub use error::{AppError, AppResult};

/// A tonic service whose every RPC calls the state's inherent handler of the same name (an
/// `async fn(&self, Request<Req>) -> AppResult<Resp>`) and wraps its answer: one line per RPC.
///
/// ```ignore
/// tracetrack_common::service! {
///     Billing: pb::billing_service_server::BillingService {
///         type ExportBillsStream = ExportStream<pb::ExportBillsChunk>;
///         fn get_bill(pb::GetBillRequest) -> pb::GetBillResponse;
///     }
/// }
/// ```
#[macro_export]
macro_rules! service {
    ($state:ident: $service:path {
        $(type $stream:ident = $stream_ty:ty;)*
        $(fn $rpc:ident($req:ty) -> $resp:ty;)*
    }) => {
        #[::tonic::async_trait]
        impl $service for $state {
            $(type $stream = $stream_ty;)*
            $(
                async fn $rpc(
                    &self,
                    r: ::tonic::Request<$req>,
                ) -> ::std::result::Result<::tonic::Response<$resp>, ::tonic::Status> {
                    Ok(::tonic::Response::new($state::$rpc(self, r).await?))
                }
            )*
        }
    };
}
