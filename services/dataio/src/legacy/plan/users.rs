//! Users: usernames, roles, case duplicates, dispatch areas, emails.

use std::collections::HashMap;

use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;

use super::{norm_area, valid_email, valid_username, Finding, PlannedUser, Planner};

impl Planner<'_> {
    /// The users imported; notes every user's known dispatch area for the areas phase.
    pub(super) fn users(&mut self) -> Vec<PlannedUser> {
        let data = self.data;
        let mut users = Vec::new();
        // Lower-cased username → the user imported under it (old id, username).
        let mut names: HashMap<String, (i64, String)> = HashMap::new();
        // Email → the old id of the user imported with it.
        let mut emails: HashMap<String, i64> = HashMap::new();
        for u in &data.users {
            if let Some(a) = self.known_area(u.dispatch_area.as_deref()) {
                self.user_area.insert(u.id, a);
            }
            let username = u.username.trim().to_owned();
            if !valid_username(&username) {
                self.findings.push(
                    Finding::on("user", u.id, &u.username)
                        .code(ErrorCode::InvalidArgument)
                        .rejected("invalid_username", "a username is 3-50 letters, digits, '.', '_' or '-' in TraceTrack; create this user by hand"),
                );
                continue;
            }
            let row = || Finding::on("user", u.id, &username);
            let role = match u
                .role
                .as_deref()
                .map(|r| r.trim().to_lowercase())
                .as_deref()
            {
                Some("admin") => Role::Admin,
                Some("biller") => Role::Biller,
                Some("dispatcher") => Role::Dispatcher,
                other => {
                    self.findings
                        .push(row().code(ErrorCode::InvalidArgument).rejected(
                            "unknown_role",
                            format!(
                                "role {:?} is not admin, biller or dispatcher",
                                other.unwrap_or("")
                            ),
                        ));
                    continue;
                }
            };
            if let Some((first_id, first_name)) = names.get(&username.to_lowercase()) {
                self.findings.push(row().code(ErrorCode::UsernameTaken).rejected(
                    "username_case_duplicate",
                    format!(
                        "usernames are unique regardless of case: user {first_id} ({first_name:?}) is imported, this one is not"
                    ),
                ));
                continue;
            }
            let area = if role == Role::Dispatcher {
                match self.known_area(u.dispatch_area.as_deref()) {
                    Some(a) => a,
                    None => {
                        let why = match u.dispatch_area.as_deref().map(str::trim) {
                            None | Some("") => "has no dispatch area".to_owned(),
                            Some(a) if norm_area(Some(a)).is_none() => {
                                format!("has the placeholder area {a:?}")
                            }
                            Some(a) => {
                                format!("has the area {a:?}, which TraceTrack does not know")
                            }
                        };
                        self.findings.push(row().code(ErrorCode::AreaRequired).skipped(
                            "dispatcher_without_area",
                            format!("this dispatcher {why}; a dispatcher needs exactly one area: create them by hand with theirs"),
                        ));
                        continue;
                    }
                }
            } else {
                String::new()
            };
            let mut email = u
                .email
                .as_deref()
                .map(|e| e.trim().to_lowercase())
                .unwrap_or_default();
            if !email.is_empty() && !valid_email(&email) {
                self.findings.push(row().repaired(
                    "email_dropped",
                    format!("{email:?} is not an email address: imported without one"),
                ));
                email.clear();
            } else if let Some(first) = emails.get(&email).filter(|_| !email.is_empty()) {
                self.findings
                    .push(row().code(ErrorCode::EmailTaken).repaired(
                        "email_dropped",
                        format!("{email:?} is also user {first}'s: imported without one"),
                    ));
                email.clear();
            }
            if !email.is_empty() {
                emails.insert(email.clone(), u.id);
            }
            names.insert(username.to_lowercase(), (u.id, username.clone()));
            users.push(PlannedUser {
                legacy_id: u.id,
                username,
                email,
                role,
                area,
            });
        }
        users
    }
}
