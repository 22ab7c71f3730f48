//! The migration's rules, as a pure function of the old rows: what is imported, what is repaired
//! on the way, and what is rejected, skipped or reported, and why.
//!
//! Users
//! - Keep their usernames (3-50 letters, digits, `.`, `_`, `-`, else `invalid_username`,
//!   rejected) and roles (`admin`, `biller`, `dispatcher`, else `unknown_role`, rejected).
//!   Usernames are unique regardless of case in TraceTrack: of two that differ only in case the
//!   second (by old id) is rejected (`username_case_duplicate`).
//! - A dispatcher with no area (NULL, empty, `Default`) or an area TraceTrack does not know is
//!   skipped (`dispatcher_without_area`): a dispatcher must have exactly one area. Create them by
//!   hand with the right area.
//! - An email that is not an address, or that an earlier user already has (in any case), is
//!   dropped (`email_dropped`, repaired): the user is imported without one.
//! - Password hashes cannot be carried over: every imported user gets a random temporary
//!   password that nobody sees and must set a new one (an admin resets it for them).
//!
//! Bags
//! - QR ids are normalised as a scan would be (`tracetrack_domain::qr`: trimmed, upper-cased, a
//!   label text reduced to its number): a changed id is `qr_repaired`; one that fails is
//!   rejected with the service's code (`invalid_qr`; `qr_is_parent` / `qr_is_child` when the
//!   old type disagrees with the id's shape).
//! - `<qr>_DUP_<id>` ids (renamed copies made when case duplicates were merged) are rejected
//!   (`dup_id`), reported with the original they copy.
//! - Two ids equal after normalisation: the first (lowest old id) is imported, the second is
//!   rejected (`case_duplicate`), and so are its links and bill rows.
//! - Area: the bag's own (case and spaces forgiven) when TraceTrack knows it; otherwise its
//!   creator's dispatch area, otherwise `--default-area`, each `area_repaired`; otherwise the bag
//!   is rejected (`no_area`). A linked child always takes its parent's area (as in a scan).
//!
//! Links (in link order: created_at, then id)
//! - A child's first link wins: a later link to another parent is rejected (`second_parent`);
//!   the same link again is reported (`duplicate_link`).
//! - A parent holds at most its product line's capacity (the old app allowed 30 for every line):
//!   links beyond it are rejected (`over_capacity`), in link order.
//! - A link whose parent or child was rejected (or is missing, or is not a parent and a child)
//!   is rejected (`bag_rejected`, `dangling_link`, `not_parent_child`).
//! - A child whose link is rejected is still imported, unlinked, so it can be scanned into the
//!   right parent later.
//!
//! Bills
//! - Bill ids are sanitised as billing does (`bill_id_repaired` when that changes them; invalid
//!   ones `invalid_bill_id`, rejected); ids equal regardless of case: the second is rejected
//!   (`bill_case_duplicate`).
//! - A parent's first bill wins (in bill_bag order): later rows for another bill are rejected
//!   (`two_bills`); the same row again is reported (`duplicate_bill_bag`).
//! - Capacity is the old `parent_bag_count`; outside 1-500 it is repaired
//!   (`capacity_repaired`: the parents listed, at least 1, at most 500). Parents beyond it are
//!   rejected (`bill_over_capacity`), in bill_bag order.
//! - Counters (`linked_parent_count`, `total_child_bags`) that disagree with the old links are
//!   reported (`counters_disagree`); TraceTrack computes its figures from the links anyway.
//! - A bill completed in the old system is completed again when it is full after the rules
//!   above; otherwise it stays open (`completed_not_full`, reported). Other statuses follow from
//!   the parents attached (new / processing).
//! - Text fields longer than billing allows are cut (`text_truncated`).

mod areas;
mod bags;
mod bills;
mod links;
mod users;

use std::collections::{HashMap, HashSet};

use tracetrack_domain::qr::ProductLine;
use tracetrack_domain::DEFAULT_AREAS;
use tracetrack_proto::auth::v1::Role;

use super::report::{Finding, WouldImport};
use super::{LegacyBill, LegacyData, SourceCounts};
use crate::labels::BagKind;

/// Longest description, destination and vehicle number billing accepts.
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_DESTINATION: usize = 200;
pub const MAX_VEHICLE: usize = 50;
/// Largest bill capacity.
pub const MAX_BILL_CAPACITY: i64 = 500;

/// What TraceTrack is configured with (its product lines and areas) and the fallback area.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub lines: Vec<ProductLine>,
    pub areas: Vec<String>,
    pub default_area: Option<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            lines: ProductLine::defaults(),
            areas: DEFAULT_AREAS.iter().map(|a| (*a).to_owned()).collect(),
            default_area: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUser {
    pub legacy_id: i64,
    pub username: String,
    pub email: String,
    pub role: Role,
    /// Dispatchers only.
    pub area: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBag {
    pub legacy_id: i64,
    pub qr: String,
    pub kind: BagKind,
    pub area: String,
    /// Children: their parent (the link's old id beside it).
    pub parent: Option<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBill {
    pub legacy_id: i64,
    pub bill_id: String,
    pub capacity: i32,
    pub description: String,
    pub destination: String,
    pub vehicle_number: String,
    /// Parent QRs in attach order, each with its bill_bag row's old id.
    pub parents: Vec<(String, i64)>,
    /// Completed in the old system and full here.
    pub complete: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub source: SourceCounts,
    pub users: Vec<PlannedUser>,
    /// Parents first, then children.
    pub bags: Vec<PlannedBag>,
    pub bills: Vec<PlannedBill>,
    pub findings: Vec<Finding>,
}

impl Plan {
    pub fn would_import(&self) -> WouldImport {
        let parents = self
            .bags
            .iter()
            .filter(|b| b.kind == BagKind::Parent)
            .count();
        WouldImport {
            users: self.users.len(),
            parents,
            children: self.bags.len() - parents,
            links: self.bags.iter().filter(|b| b.parent.is_some()).count(),
            bills: self.bills.len(),
            bill_parents: self.bills.iter().map(|b| b.parents.len()).sum(),
            bills_to_complete: self.bills.iter().filter(|b| b.complete).count(),
        }
    }
}

/// Normalises an old area name (`Sri Ganganagar` → `sri_ganganagar`); None for none.
pub fn norm_area(raw: Option<&str>) -> Option<String> {
    let a: String = raw?
        .trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if a.is_empty() || a == "default" || a == "none" || a == "null" {
        None
    } else {
        Some(a)
    }
}

/// auth's username rule.
pub fn valid_username(u: &str) -> bool {
    (3..=50).contains(&u.chars().count())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// auth's email rule (empty is allowed: no email).
pub fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
}

/// Plans the migration of `data`: the phases in order, each handing the next what it needs.
pub fn plan(data: &LegacyData, opts: &PlanOptions) -> Plan {
    let mut p = Planner::new(data, opts);
    let users = p.users();
    p.bags();
    p.links();
    let bags = p.areas();
    let mut bills = p.bills();
    p.bill_rows(&mut bills);
    p.counters();
    p.capacities(&mut bills);
    Plan {
        source: data.counts(),
        users,
        bags,
        bills: bills.into_iter().map(|d| d.bill).collect(),
        findings: p.findings,
    }
}

/// The plan being built: the options, the findings so far, and what one phase hands the next.
struct Planner<'a> {
    data: &'a LegacyData,
    opts: &'a PlanOptions,
    findings: Vec<Finding>,
    /// Old bill ids as stored, by old row id (for messages).
    bill_names: HashMap<i64, &'a str>,
    /// users → areas: each user's dispatch area where TraceTrack knows it (rejected users too).
    user_area: HashMap<i64, String>,
    /// bags → links, areas, bill rows: the bags whose ids pass, by old id.
    bags: HashMap<i64, Bag>,
    /// bags → areas: their old ids in old order.
    order: Vec<i64>,
    /// links → areas: child old id → (parent old id, link old id), the links that hold.
    linked: HashMap<i64, (i64, i64)>,
    /// areas → bill rows: the old ids of the parents imported.
    planned_parents: HashSet<i64>,
}

/// The rule that the first of several rows wins (a child's first link, a parent's first
/// bill): per key (the child, the parent), the first row and what it names (parent, bill).
#[derive(Debug, Default)]
struct FirstWins(HashMap<i64, (i64, i64)>);

/// What a row is to [`FirstWins`].
enum Seen {
    /// The first row of its key: it wins.
    First,
    /// The same as the row that won (`first_row`): counted once.
    Again { first_row: i64 },
    /// Names another than the row that won (`first_row`, naming `first`).
    Other { first_row: i64, first: i64 },
}

impl FirstWins {
    /// Row `row` of `key` names `names`.
    fn see(&mut self, key: i64, row: i64, names: i64) -> Seen {
        match self.0.get(&key) {
            None => {
                self.0.insert(key, (row, names));
                Seen::First
            }
            Some(&(first_row, first)) if first == names => Seen::Again { first_row },
            Some(&(first_row, first)) => Seen::Other { first_row, first },
        }
    }
}

/// A bag whose id passes (its area is settled in the areas phase).
#[derive(Debug, Clone)]
struct Bag {
    legacy_id: i64,
    raw: String,
    qr: String,
    kind: BagKind,
    capacity: i32,
    line: String,
    own_area: Option<String>,
    old_area: Option<String>,
    user_id: Option<i64>,
}

impl<'a> Planner<'a> {
    fn new(data: &'a LegacyData, opts: &'a PlanOptions) -> Self {
        Self {
            data,
            opts,
            findings: Vec::new(),
            bill_names: data
                .bills
                .iter()
                .map(|b| (b.id, b.bill_id.as_str()))
                .collect(),
            user_area: HashMap::new(),
            bags: HashMap::new(),
            order: Vec::new(),
            linked: HashMap::new(),
            planned_parents: HashSet::new(),
        }
    }

    /// An old area name, normalised, when TraceTrack knows it.
    fn known_area(&self, raw: Option<&str>) -> Option<String> {
        norm_area(raw).filter(|a| self.opts.areas.contains(a))
    }

    /// A bag as the old database stores it, for a finding's subject.
    fn subject(&self, id: i64) -> String {
        self.bags
            .get(&id)
            .map(|b| b.raw.clone())
            .unwrap_or_else(|| format!("bag {id}"))
    }

    /// A bag as imported, for messages.
    fn name(&self, id: i64) -> String {
        self.bags
            .get(&id)
            .map(|b| b.qr.clone())
            .unwrap_or_else(|| format!("bag {id}"))
    }

    /// A bill as the old database stores it.
    fn bill_name(&self, legacy: i64) -> String {
        self.bill_names
            .get(&legacy)
            .map(|b| (*b).to_owned())
            .unwrap_or_else(|| format!("bill {legacy}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::{LegacyBag, LegacyBill, LegacyBillBag, LegacyLink, LegacyUser};
    use super::*;

    fn bag(id: i64, qr: &str, kind: &str, area: Option<&str>) -> LegacyBag {
        LegacyBag {
            id,
            qr_id: qr.into(),
            kind: Some(kind.into()),
            dispatch_area: area.map(Into::into),
            user_id: Some(1),
        }
    }

    fn link(id: i64, p: i64, c: i64) -> LegacyLink {
        LegacyLink {
            id,
            parent_bag_id: p,
            child_bag_id: c,
        }
    }

    fn kinds(p: &Plan) -> Vec<(&'static str, i64, &'static str)> {
        p.findings
            .iter()
            .map(|f| (f.table, f.legacy_id, f.kind))
            .collect()
    }

    #[test]
    fn every_rule_once() {
        let mut data = LegacyData {
            users: vec![
                LegacyUser {
                    id: 1,
                    username: "ravi".into(),
                    email: Some("Ravi@Example.in".into()),
                    role: Some("dispatcher".into()),
                    dispatch_area: Some("Lucknow".into()),
                },
                LegacyUser {
                    id: 2,
                    username: "Ravi".into(),
                    role: Some("biller".into()),
                    ..Default::default()
                },
                LegacyUser {
                    id: 3,
                    username: "sita".into(),
                    email: Some("ravi@example.in".into()),
                    role: Some("dispatcher".into()),
                    dispatch_area: Some("Default".into()),
                },
                LegacyUser {
                    id: 4,
                    username: "gita".into(),
                    email: Some("ravi@example.in".into()),
                    role: Some("admin".into()),
                    ..Default::default()
                },
            ],
            bags: vec![
                bag(10, "SB00001", "parent", Some("lucknow")),
                bag(11, " sb00002 ", "parent", Some("Default")),
                bag(12, "SB00001_DUP_12", "parent", Some("lucknow")),
                bag(13, "M444-00001", "parent", None),
                bag(14, "Sb00001", "parent", Some("lucknow")),
                bag(15, "free text id", "child", Some("lucknow")),
            ],
            ..Default::default()
        };
        // 31 children for SB00001; child 100 also linked to SB00002 later; 16 for the moong.
        for i in 0..31 {
            data.bags
                .push(bag(100 + i, &format!("c{i:05}"), "child", Some("lucknow")));
            data.links.push(link(1000 + i, 10, 100 + i));
        }
        data.links.push(link(2000, 11, 100));
        data.links.push(link(2001, 10, 101));
        for i in 0..16 {
            data.bags
                .push(bag(200 + i, &format!("D{i:05}"), "child", None));
            data.links.push(link(3000 + i, 13, 200 + i));
        }
        data.bills = vec![
            LegacyBill {
                id: 1,
                bill_id: "BILL-1".into(),
                parent_bag_count: Some(1),
                linked_parent_count: Some(1),
                total_child_bags: Some(31),
                status: Some("completed".into()),
                ..Default::default()
            },
            LegacyBill {
                id: 2,
                bill_id: "bill-1".into(),
                ..Default::default()
            },
            LegacyBill {
                id: 3,
                bill_id: "BILL-3".into(),
                parent_bag_count: Some(1),
                linked_parent_count: Some(2),
                total_child_bags: Some(0),
                ..Default::default()
            },
        ];
        data.bill_bags = vec![
            LegacyBillBag {
                id: 1,
                bill_id: 1,
                bag_id: 10,
            },
            LegacyBillBag {
                id: 2,
                bill_id: 3,
                bag_id: 10,
            },
            LegacyBillBag {
                id: 3,
                bill_id: 3,
                bag_id: 11,
            },
            LegacyBillBag {
                id: 4,
                bill_id: 3,
                bag_id: 13,
            },
        ];
        let p = plan(&data, &PlanOptions::default());
        let k = kinds(&p);
        let has = |t: &str, id: i64, kind: &str| {
            assert!(
                k.iter().any(|(a, b, c)| *a == t && *b == id && *c == kind),
                "{t} {id} {kind} missing in {k:#?}"
            )
        };
        has("user", 2, "username_case_duplicate");
        has("user", 3, "dispatcher_without_area");
        has("user", 4, "email_dropped");
        has("bag", 11, "qr_repaired");
        has("bag", 11, "area_repaired");
        has("bag", 12, "dup_id");
        has("bag", 13, "area_repaired");
        has("bag", 14, "case_duplicate");
        has("bag", 15, "invalid_qr");
        has("bag", 100, "qr_repaired");
        has("link", 1030, "over_capacity");
        has("link", 2000, "second_parent");
        has("link", 2001, "duplicate_link");
        has("link", 3015, "over_capacity");
        has("bill", 2, "bill_case_duplicate");
        has("bill", 3, "counters_disagree");
        has("bill_bag", 2, "two_bills");
        has("bill_bag", 4, "bill_over_capacity");
        assert!(!k.iter().any(|(t, id, _)| *t == "bill" && *id == 1));
        let w = p.would_import();
        assert_eq!(w.users, 2);
        assert_eq!((w.parents, w.children, w.links), (3, 47, 45));
        assert_eq!((w.bills, w.bill_parents, w.bills_to_complete), (2, 2, 1));
        // Parents come first; a linked child takes its parent's area.
        assert!(p.bags[..3].iter().all(|b| b.kind == BagKind::Parent));
        let d0 = p.bags.iter().find(|b| b.qr == "D00000").unwrap();
        assert_eq!(d0.area, "lucknow");
        assert_eq!(d0.parent.as_ref().unwrap().0, "M444-00001");
    }

    #[test]
    fn no_area_anywhere_rejects_unless_a_default_is_given() {
        let data = LegacyData {
            bags: vec![LegacyBag {
                id: 1,
                qr_id: "SB00001".into(),
                kind: Some("parent".into()),
                dispatch_area: None,
                user_id: None,
            }],
            ..Default::default()
        };
        let p = plan(&data, &PlanOptions::default());
        assert_eq!(p.findings[0].kind, "no_area");
        assert!(p.bags.is_empty());
        let p = plan(
            &data,
            &PlanOptions {
                default_area: Some("jaipur".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.findings[0].kind, "area_repaired");
        assert_eq!(p.bags[0].area, "jaipur");
    }

    #[test]
    fn temporary_passwords_pass_the_policy_shape() {
        for name in ["abc", "ravi", "admin"] {
            let p = super::super::apply::temporary_password(name);
            assert!(p.len() >= 20);
            assert!(!p.to_lowercase().contains(name));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.contains('-'));
        }
    }
}
