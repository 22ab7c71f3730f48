//! Conversions between auth's rows and its protobuf messages, and the audit view of a user.

use serde_json::json;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::Role;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::events::v1::Actor;

use crate::store::UserRow;

pub(crate) use tracetrack_common::time::ts;

/// The audit's actor for `u` acting on their own account from `ip` (a password reset, a second
/// factor), before any session exists.
pub(crate) fn self_actor(u: &UserRow, ip: String) -> Actor {
    Actor {
        user_id: u.id.to_string(),
        username: u.username.clone(),
        ip,
        ..Actor::default()
    }
}

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

/// A user as admins see them: `restrictions` has the password change only (whether an admin
/// must enrol depends on the configuration: [`user_to_pb`]).
pub fn to_pb(u: &UserRow) -> pb::User {
    user_to_pb(u, false)
}

/// A user with the restrictions in force, in the order they apply: the password change, then
/// (admins, when `require_2fa_for_admins`) enrolment of a second factor.
pub fn user_to_pb(u: &UserRow, require_2fa_for_admins: bool) -> pb::User {
    let mut restrictions = Vec::new();
    if u.must_change_password {
        restrictions.push("change_password".to_owned());
    }
    if require_2fa_for_admins && u.role == "admin" && !u.two_factor_enabled {
        restrictions.push("enrol_2fa".to_owned());
    }
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
        two_factor_enabled: u.two_factor_enabled,
        restrictions,
    }
}

pub(crate) fn audit_view(u: &UserRow) -> serde_json::Value {
    json!({
        "username": u.username, "email": u.email, "role": u.role,
        "dispatch_area": u.dispatch_area, "active": u.active,
        "must_change_password": u.must_change_password,
        "two_factor_enabled": u.two_factor_enabled,
    })
}
