//! TraceTrack stats: read models fed by every service's events — the dashboard, per-user
//! activity, the audit trail (also the event store), each bag's history, and the EPCIS 2.0 export
//! built from the event store.

pub mod apply;
pub mod config;
pub mod dashboard;
pub mod epcis;
pub mod report;
pub mod rpc;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::Application;
