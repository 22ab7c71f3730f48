//! Domain rules shared by every TraceTrack service and the gateway.
//!
//! - [`bill`]: bill id sanitising and validation.
//! - [`error`]: the stable error codes and the one table mapping each to its gRPC and HTTP status.
//! - [`qr`]: QR normalisation, label extraction, product lines, parent/child shapes.
//! - [`role`]: roles and their capabilities.

pub mod bill;
pub mod error;
pub mod qr;
pub mod role;

pub use error::{ErrorCode, GrpcCode};
pub use role::Role;

/// The dispatch areas a fresh installation knows (SPEC §1); configuration may change them.
pub const DEFAULT_AREAS: &[&str] = &[
    "lucknow",
    "indore",
    "jaipur",
    "hisar",
    "sri_ganganagar",
    "sangaria",
    "bathinda",
    "raipur",
    "ranchi",
    "akola",
];
