//! Generated gRPC code for TraceTrack's services, plus the file descriptor set for reflection.

/// Every TraceTrack proto file, encoded as one `FileDescriptorSet` (for gRPC reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tracetrack_descriptor.bin"));

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("tracetrack.auth.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod registry {
    pub mod v1 {
        tonic::include_proto!("tracetrack.registry.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod scan {
    pub mod v1 {
        tonic::include_proto!("tracetrack.scan.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod stats {
    pub mod v1 {
        tonic::include_proto!("tracetrack.stats.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod billing {
    pub mod v1 {
        tonic::include_proto!("tracetrack.billing.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod events {
    pub mod v1 {
        tonic::include_proto!("tracetrack.events.v1");
    }
}

impl billing::v1::BillStatus {
    /// The name the HTTP API, the import report and the reports give `status`: `new`,
    /// `processing`, `completing`, `completed` or `reopening`; empty when it is unspecified or
    /// unknown.
    pub fn name_of(status: i32) -> &'static str {
        match Self::try_from(status) {
            Ok(Self::New) => "new",
            Ok(Self::Processing) => "processing",
            Ok(Self::Completing) => "completing",
            Ok(Self::Completed) => "completed",
            Ok(Self::Reopening) => "reopening",
            Ok(Self::Unspecified) | Err(_) => "",
        }
    }
}

pub use prost_types::Timestamp;
