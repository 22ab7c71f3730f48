//! TraceTrack bag-registry: bags, parent-child links, product lines, parents' bill attachment.

pub mod config;
pub mod grpc;
pub mod import;
pub mod startup;
pub mod store;

pub use config::Settings;
pub use startup::Application;
