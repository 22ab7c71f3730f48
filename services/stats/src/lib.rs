//! TraceTrack stats: read models fed by every service's events — the dashboard, per-user
//! activity, the audit trail (also the event store), each bag's history, and the EPCIS 2.0 export
//! built from the event store.

pub mod apply;
pub mod config;
pub mod epcis;
pub mod grpc;
pub mod startup;

pub use config::Settings;
pub use startup::Application;
