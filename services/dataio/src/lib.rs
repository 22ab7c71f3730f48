//! TraceTrack's data in and out (SPEC §5):
//! - [`labels`]: parses label-printing workbooks (a pure function over the file's bytes) and
//!   [`import`] sends bags to bag-registry's ImportBags in batches, reporting per row — both
//!   from the small `tracetrack-labels` crate, which the gateway shares;
//! - [`legacy`]: moves users, bags, links and bills off the old Flask system;
//! - [`session`]: login and channels for the command-line tools
//!   (`tracetrack-import-labels`, `tracetrack-migrate-legacy`).

pub use tracetrack_labels as labels;
pub use tracetrack_labels::import;
pub mod legacy;
pub mod session;
