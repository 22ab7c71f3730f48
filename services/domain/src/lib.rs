//! Domain rules shared by every TraceTrack service and the gateway.
//!
//! - [`error`]: the stable error codes and the one table mapping each to its gRPC and HTTP status.
//! - [`role`]: roles and their capabilities.

pub mod error;
pub mod role;

pub use error::{ErrorCode, GrpcCode};
pub use role::Role;
