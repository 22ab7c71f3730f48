//! TraceTrack's data in and out (SPEC §5):
//! - [`labels`]: parses label-printing workbooks (a pure function over the file's bytes);
//! - [`import`]: sends bags to bag-registry's ImportBags in batches and reports per row;
//! - [`legacy`]: moves users, bags, links and bills off the old Flask system;
//! - [`session`]: login and channels for the command-line tools
//!   (`tracetrack-import-labels`, `tracetrack-migrate-legacy`).

pub mod import;
pub mod labels;
pub mod legacy;
pub mod session;
