//! TraceTrack bag-registry: bags, parent-child links, product lines, parents' bill attachment.

pub mod config;
pub mod convert;
pub mod rpc;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::Application;
