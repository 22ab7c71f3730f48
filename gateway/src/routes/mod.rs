//! The HTTP API of SPEC §3, one module per resource.

pub mod api_keys;
pub mod auth;
pub mod bags;
pub mod bills;
pub mod epcis;
pub mod exports;
pub mod imports;
pub mod meta;
pub mod password_reset;
pub mod reports;
pub mod returns;
pub mod scans;
pub mod stats;
pub mod two_factor;
pub mod users;
