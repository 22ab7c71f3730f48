//! The kit every TraceTrack service is built from.
//!
//! A service's `startup.rs` loads its [`config`], initialises [`telemetry`], opens its [`db`] pool
//! (running migrations when configured), connects [`redis`], and hands its tonic services to
//! [`server::ServiceRuntime`], which adds health, reflection, trace-context extraction, RED
//! metrics, the outbox relay and graceful shutdown. Handlers resolve their [`caller::Caller`],
//! return [`error::AppError`], write events with [`outbox::enqueue`] and make mutations
//! replay-safe with [`idempotency`].

pub mod caller;
pub mod cli;
pub mod client;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod export;
pub mod idempotency;
pub mod metadata;
pub mod metrics;
pub mod outbox;
pub mod page;
pub mod redis;
pub mod server;
pub mod shed;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use error::{AppError, AppResult};
