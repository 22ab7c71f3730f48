//! TraceTrack billing service: bills (truck dispatch documents), their capacity and status, and
//! the parents attached to them, kept consistent with bag-registry by a small saga and a sweeper.

pub mod config;
pub mod convert;
pub mod reconcile;
pub mod registry;
pub mod rpc;
pub mod rules;
pub mod saga;
pub mod startup;
pub mod state;
pub mod store;
pub mod sweeper;

pub use config::Settings;
pub use startup::Application;
