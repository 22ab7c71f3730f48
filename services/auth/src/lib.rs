//! TraceTrack auth service: users, credentials, sessions, service accounts, lockout.

pub mod config;
pub mod convert;
pub mod lockout;
pub mod password;
pub mod rpc;
pub mod rules;
pub mod second_factor;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::Application;
