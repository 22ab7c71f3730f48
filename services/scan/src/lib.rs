//! TraceTrack scan service: the scanning workflow (parent and child scans and undo, carried out
//! by bag-registry) and the append-only scan event log, with its live feed.

pub mod attempt;
pub mod config;
pub mod feed;
pub mod recorder;
pub mod rpc;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::Application;
