//! The JSON shapes of SPEC §3, with their OpenAPI schemas, and conversions from the protos.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tracetrack_proto::auth::v1 as auth;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::scan::v1 as scan;
use utoipa::ToSchema;

pub fn rfc3339(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref()
        .and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

pub fn timestamp(s: &Option<String>) -> Result<Option<prost_types::Timestamp>, String> {
    match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| {
                let d = d.with_timezone(&Utc);
                Some(prost_types::Timestamp {
                    seconds: d.timestamp(),
                    nanos: d.timestamp_subsec_nanos() as i32,
                })
            })
            .map_err(|_| format!("{s:?} is not an RFC 3339 time")),
    }
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

/// Keyset-paginated list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass back as `page_token` for the next page; absent on the last page.
    pub next_page_token: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn new(items: Vec<T>, token: String) -> Self {
        Self {
            items,
            next_page_token: non_empty(&token),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    /// admin, biller or dispatcher.
    pub role: String,
    pub dispatch_area: Option<String>,
    pub active: bool,
    pub locked_until: Option<String>,
    pub must_change_password: bool,
    pub created_at: Option<String>,
    pub last_login_at: Option<String>,
    /// A confirmed second factor (TOTP).
    pub two_factor_enabled: bool,
    /// What the user must do before anything else, in order: `change_password`, `enrol_2fa`.
    pub restrictions: Vec<String>,
}

pub fn role_name(r: i32) -> String {
    match auth::Role::try_from(r) {
        Ok(auth::Role::Admin) => "admin",
        Ok(auth::Role::Biller) => "biller",
        Ok(auth::Role::Dispatcher) => "dispatcher",
        _ => "",
    }
    .to_owned()
}

pub fn role_value(name: &str) -> Option<auth::Role> {
    match name {
        "admin" => Some(auth::Role::Admin),
        "biller" => Some(auth::Role::Biller),
        "dispatcher" => Some(auth::Role::Dispatcher),
        _ => None,
    }
}

impl From<auth::User> for User {
    fn from(u: auth::User) -> Self {
        Self {
            role: role_name(u.role),
            dispatch_area: non_empty(&u.dispatch_area),
            locked_until: rfc3339(&u.locked_until),
            created_at: rfc3339(&u.created_at),
            last_login_at: rfc3339(&u.last_login_at),
            id: u.id,
            username: u.username,
            email: u.email,
            active: u.active,
            must_change_password: u.must_change_password,
            two_factor_enabled: u.two_factor_enabled,
            restrictions: u.restrictions,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bag {
    pub qr: String,
    /// parent or child.
    #[serde(rename = "type")]
    pub kind: String,
    pub product_line: Option<String>,
    /// Parents: open or full. Children: unlinked or linked.
    pub status: String,
    pub child_count: i32,
    pub capacity: Option<i32>,
    pub weight_kg: f64,
    pub expected_weight_kg: f64,
    pub area: String,
    pub parent_qr: Option<String>,
    pub bill_id: Option<String>,
    pub frozen: bool,
    pub created_at: Option<String>,
    pub created_by: Option<String>,
}

impl From<reg::Bag> for Bag {
    fn from(b: reg::Bag) -> Self {
        let parent = b.r#type == reg::BagType::Parent as i32;
        Self {
            kind: if parent { "parent" } else { "child" }.into(),
            product_line: non_empty(&b.product_line),
            capacity: parent.then_some(b.capacity),
            parent_qr: non_empty(&b.parent_qr),
            bill_id: non_empty(&b.bill_id),
            created_at: rfc3339(&b.created_at),
            created_by: non_empty(&b.created_by),
            qr: b.qr,
            status: b.status,
            child_count: b.child_count,
            weight_kg: b.weight_kg,
            expected_weight_kg: b.expected_weight_kg,
            area: b.area,
            frozen: b.frozen,
        }
    }
}

pub fn bag(b: Option<reg::Bag>) -> Option<Bag> {
    b.map(Bag::from)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanEvent {
    pub id: String,
    pub occurred_at: Option<String>,
    pub user_id: String,
    pub username: String,
    /// parent, child or undo.
    pub kind: String,
    pub area: String,
    pub parent_qr: Option<String>,
    pub child_qr: Option<String>,
    pub raw_input: String,
    /// ok, created, already_linked, or the error code.
    pub outcome: String,
    pub parent_child_count: i32,
    pub parent_capacity: i32,
}

impl From<&scan::ScanEvent> for ScanEvent {
    fn from(e: &scan::ScanEvent) -> Self {
        Self {
            id: e.id.clone(),
            occurred_at: rfc3339(&e.occurred_at),
            user_id: e.user_id.clone(),
            username: e.username.clone(),
            kind: match scan::ScanKind::try_from(e.kind) {
                Ok(scan::ScanKind::Parent) => "parent",
                Ok(scan::ScanKind::Child) => "child",
                Ok(scan::ScanKind::Undo) => "undo",
                _ => "",
            }
            .into(),
            area: e.area.clone(),
            parent_qr: non_empty(&e.parent_qr),
            child_qr: non_empty(&e.child_qr),
            raw_input: e.raw_input.clone(),
            outcome: e.outcome.clone(),
            parent_child_count: e.parent_child_count,
            parent_capacity: e.parent_capacity,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable error code.
    pub code: String,
    pub request_id: String,
    /// Whether the same request (same idempotency key) may succeed if sent again later
    /// (`unavailable`, `rate_limited`, `conflict`, `unauthenticated` after a new login, …), or
    /// the answer is definitive. Offline queues keep retryable requests and drop definitive ones.
    pub retryable: bool,
}
