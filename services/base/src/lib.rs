//! What every TraceTrack process uses, the gateway included: [`config`], [`telemetry`],
//! [`error`]s in the shared table's words, [`metadata`], the [`caller`] a request comes from,
//! [`client`]s to other services (with the [`deadline`] of the call being served), [`metrics`],
//! [`redis`], [`page`]s and [`time`]s, [`shutdown`]. Nothing here holds a database: a service's
//! database kit (pool, outbox, idempotency, consumers, the gRPC runtime) is `tracetrack-common`,
//! built on this crate.

pub mod app_tls;
pub mod caller;
pub mod client;
pub mod config;
pub mod db_health;
pub mod deadline;
pub mod error;
pub mod metadata;
pub mod metrics;
pub mod page;
pub mod redis;
pub mod shutdown;
#[cfg(feature = "sqlx")]
pub mod sqlx_error;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use error::{AppError, AppResult};
/// The global allocator every TraceTrack binary declares (`#[global_allocator]`): mimalloc, as
/// measured in BENCHMARKS.md (issue 18).
pub use mimalloc::MiMalloc;
