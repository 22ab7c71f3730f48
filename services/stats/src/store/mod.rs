//! stats' reads of its read models, with typed rows: the dashboard's figures, scans per hour and
//! per user, the audit trail and bag histories, and the EPCIS export's source events; and the
//! consumer's writes ([`projection`]; what each event changes is worked out in
//! [`crate::apply`]), and the tables' upkeep ([`upkeep`]). Every statement is schema-qualified.

mod activity;
mod audit;
mod dashboard;
mod epcis;
mod projection;
mod reports;
mod upkeep;

pub use activity::*;
pub use audit::*;
pub use dashboard::*;
pub use epcis::*;
pub use projection::*;
pub use reports::*;
pub use upkeep::*;
