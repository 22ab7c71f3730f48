//! TraceTrack auth service: users, credentials, sessions, service accounts, lockout.

pub mod config;
pub mod grpc;
pub mod password;
pub mod startup;
pub mod store;

pub use config::Settings;
pub use startup::Application;
