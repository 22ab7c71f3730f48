//! The kit every TraceTrack service (a process with a database) is built from, on top of
//! `tracetrack-base` (what every process uses, re-exported here under the same names).
//!
//! A service's `startup.rs` loads its [`config`], initialises [`telemetry`], opens its [`db`] pool
//! (running migrations when configured), connects [`redis`], and hands its tonic services to
//! [`server::ServiceRuntime`], which adds health, reflection, trace-context extraction, RED
//! metrics, load shedding ([`shed`]), the outbox relay and graceful shutdown. Handlers resolve
//! their [`caller::Caller`], return [`error::AppError`], write events with [`outbox::enqueue`]
//! and make mutations replay-safe with [`idempotency`]; [`consumer`]s apply other services'
//! events; [`cli`] runs the commands every service binary has.

pub use tracetrack_base::{
    caller, client, config, deadline, error, metadata, metrics, page, redis, shutdown, telemetry,
    time,
};

pub mod cli;
pub mod consumer;
pub mod db;
pub mod export;
pub mod idempotency;
pub mod outbox;
pub mod server;
pub mod shed;

pub use error::{AppError, AppResult};
