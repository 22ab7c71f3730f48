//! TraceTrack stats: read models fed by every service's events — the dashboard, per-user
//! activity, the audit trail (also the event store) and each bag's history.

pub mod apply;
pub mod config;
pub mod grpc;
pub mod startup;

pub use config::Settings;
pub use startup::Application;
