//! TraceTrack's HTTP gateway: thin by design — no business rules and no database; it translates
//! HTTP to gRPC and back. The services enforce every rule themselves.

pub mod app;
pub mod config;
pub mod ctx;
pub mod document;
pub mod dto;
pub mod error;
pub mod extract;
pub mod filters;
pub mod health;
pub mod i18n;
pub mod live;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod web;

pub use config::Settings;
pub use startup::Application;
