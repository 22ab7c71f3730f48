//! Roles (SPEC §1 "Roles").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Biller,
    Dispatcher,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Biller, Role::Dispatcher];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Biller => "biller",
            Role::Dispatcher => "dispatcher",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Dispatchers belong to exactly one area and see only it; the others see every area.
    pub fn is_area_scoped(self) -> bool {
        matches!(self, Role::Dispatcher)
    }

    /// Register bags, unlink or move children, delete unlinked bags, and work on bills.
    pub fn can_manage_bags_and_bills(self) -> bool {
        matches!(self, Role::Admin | Role::Biller)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse(""), None);
    }

    #[test]
    fn capabilities() {
        assert!(Role::Dispatcher.is_area_scoped());
        assert!(!Role::Biller.is_area_scoped());
        assert!(!Role::Dispatcher.can_manage_bags_and_bills());
        assert!(Role::Biller.can_manage_bags_and_bills());
    }
}
