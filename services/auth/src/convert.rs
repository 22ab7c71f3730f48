//! Conversions between auth's rows and its protobuf messages, and the audit view of a user.

use serde_json::json;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::Role;
use tracetrack_proto::auth::v1 as pb;

use crate::store::UserRow;

pub(crate) use tracetrack_common::time::ts;

pub(crate) fn role_to_pb(role: &str) -> pb::Role {
    match role {
        "admin" => pb::Role::Admin,
        "biller" => pb::Role::Biller,
        "dispatcher" => pb::Role::Dispatcher,
        _ => pb::Role::Unspecified,
    }
}

pub(crate) fn role_from_pb(role: i32) -> AppResult<Role> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Biller) => Ok(Role::Biller),
        Ok(pb::Role::Dispatcher) => Ok(Role::Dispatcher),
        _ => Err(AppError::invalid(
            "role must be admin, biller or dispatcher",
        )),
    }
}

pub fn to_pb(u: &UserRow) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        username: u.username.clone(),
        email: u.email.clone(),
        role: role_to_pb(&u.role) as i32,
        dispatch_area: u.dispatch_area.clone().unwrap_or_default(),
        active: u.active,
        locked_until: u.locked_until.map(ts),
        must_change_password: u.must_change_password,
        created_at: Some(ts(u.created_at)),
        last_login_at: u.last_login_at.map(ts),
    }
}

pub(crate) fn audit_view(u: &UserRow) -> serde_json::Value {
    json!({
        "username": u.username, "email": u.email, "role": u.role,
        "dispatch_area": u.dispatch_area, "active": u.active,
        "must_change_password": u.must_change_password,
    })
}
