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

use std::collections::{HashMap, HashSet};

use tracetrack_domain::bill;
use tracetrack_domain::qr::{self, ProductLine, Shape};
use tracetrack_domain::{ErrorCode, DEFAULT_AREAS};
use tracetrack_proto::auth::v1::Role;

use super::report::{Action, Finding, WouldImport};
use super::{LegacyData, SourceCounts};
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

struct Findings(Vec<Finding>);

impl Findings {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        table: &'static str,
        legacy_id: i64,
        subject: &str,
        kind: &'static str,
        action: Action,
        code: Option<ErrorCode>,
        detail: String,
    ) {
        self.0.push(Finding {
            table,
            legacy_id,
            subject: subject.to_owned(),
            kind,
            action,
            code: code.map(ErrorCode::as_str),
            detail,
        });
    }
}

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

/// Plans the migration of `data`.
pub fn plan(data: &LegacyData, opts: &PlanOptions) -> Plan {
    let mut f = Findings(Vec::new());
    let known_area = |a: &Option<String>| a.as_ref().filter(|a| opts.areas.contains(a)).cloned();

    // ------------------------------------------------------------------------------ users
    let mut users = Vec::new();
    let mut user_area: HashMap<i64, String> = HashMap::new();
    let mut names: HashMap<String, (i64, String)> = HashMap::new();
    let mut emails: HashMap<String, i64> = HashMap::new();
    for u in &data.users {
        if let Some(a) = known_area(&norm_area(u.dispatch_area.as_deref())) {
            user_area.insert(u.id, a);
        }
        let username = u.username.trim().to_owned();
        if !valid_username(&username) {
            f.add(
                "user",
                u.id,
                &u.username,
                "invalid_username",
                Action::Rejected,
                Some(ErrorCode::InvalidArgument),
                "a username is 3-50 letters, digits, '.', '_' or '-' in TraceTrack; create this user by hand".into(),
            );
            continue;
        }
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
                f.add(
                    "user",
                    u.id,
                    &username,
                    "unknown_role",
                    Action::Rejected,
                    Some(ErrorCode::InvalidArgument),
                    format!(
                        "role {:?} is not admin, biller or dispatcher",
                        other.unwrap_or("")
                    ),
                );
                continue;
            }
        };
        if let Some((first_id, first_name)) = names.get(&username.to_lowercase()) {
            f.add(
                "user",
                u.id,
                &username,
                "username_case_duplicate",
                Action::Rejected,
                Some(ErrorCode::UsernameTaken),
                format!(
                    "usernames are unique regardless of case: user {first_id} ({first_name:?}) is imported, this one is not"
                ),
            );
            continue;
        }
        let area = if role == Role::Dispatcher {
            match known_area(&norm_area(u.dispatch_area.as_deref())) {
                Some(a) => a,
                None => {
                    let why = match u.dispatch_area.as_deref().map(str::trim) {
                        None | Some("") => "has no dispatch area".to_owned(),
                        Some(a) if norm_area(Some(a)).is_none() => {
                            format!("has the placeholder area {a:?}")
                        }
                        Some(a) => format!("has the area {a:?}, which TraceTrack does not know"),
                    };
                    f.add(
                        "user",
                        u.id,
                        &username,
                        "dispatcher_without_area",
                        Action::Skipped,
                        Some(ErrorCode::AreaRequired),
                        format!("this dispatcher {why}; a dispatcher needs exactly one area: create them by hand with theirs"),
                    );
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
            f.add(
                "user",
                u.id,
                &username,
                "email_dropped",
                Action::Repaired,
                None,
                format!("{email:?} is not an email address: imported without one"),
            );
            email.clear();
        } else if let Some(first) = emails.get(&email).filter(|_| !email.is_empty()) {
            f.add(
                "user",
                u.id,
                &username,
                "email_dropped",
                Action::Repaired,
                Some(ErrorCode::EmailTaken),
                format!("{email:?} is also user {first}'s: imported without one"),
            );
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

    // ------------------------------------------------------------------------------- bags
    let mut bags: HashMap<i64, Bag> = HashMap::new();
    let mut by_qr: HashMap<String, (i64, String)> = HashMap::new();
    let exists: HashSet<i64> = data.bags.iter().map(|b| b.id).collect();
    // Where each original of a `_DUP_` copy is (by normalised id).
    let originals: HashMap<String, i64> = data
        .bags
        .iter()
        .filter(|b| !b.qr_id.to_uppercase().contains("_DUP_"))
        .filter_map(|b| qr::normalize(&b.qr_id).ok().map(|q| (q, b.id)))
        .fold(HashMap::new(), |mut m, (q, id)| {
            m.entry(q).or_insert(id);
            m
        });
    let mut order: Vec<i64> = Vec::new();
    for b in &data.bags {
        let upper = b.qr_id.trim().to_uppercase();
        if let Some((orig, _)) = upper.rsplit_once("_DUP_") {
            let orig = orig.trim();
            let whose = qr::normalize(orig)
                .ok()
                .and_then(|o| originals.get(&o))
                .map(|id| format!(" (bag {id})"))
                .unwrap_or_else(|| " (not in the old database)".to_owned());
            f.add(
                "bag",
                b.id,
                &b.qr_id,
                "dup_id",
                Action::Rejected,
                Some(ErrorCode::InvalidQr),
                format!("a renamed copy of {orig:?}{whose}, made when case duplicates were merged"),
            );
            continue;
        }
        let kind_raw = b.kind.as_deref().map(|k| k.trim().to_lowercase());
        let parsed = match kind_raw.as_deref() {
            Some("parent") => {
                qr::parent_id(&b.qr_id, &opts.lines).map(|(q, l)| (q, BagKind::Parent, Some(l)))
            }
            Some("child") => qr::child_id(&b.qr_id, &opts.lines).map(|q| (q, BagKind::Child, None)),
            _ => qr::normalize(&b.qr_id).and_then(|q| match qr::classify(&q, &opts.lines) {
                Shape::Parent(l) => Ok((q, BagKind::Parent, Some(l))),
                Shape::Child => Ok((q, BagKind::Child, None)),
                Shape::Unknown => qr::child_id(&q, &opts.lines).map(|q| (q, BagKind::Child, None)),
            }),
        };
        let (id, kind, line) = match parsed {
            Ok(p) => p,
            Err(e) => {
                let kind = if e.code == ErrorCode::InvalidQr {
                    "invalid_qr"
                } else {
                    "wrong_type"
                };
                f.add(
                    "bag",
                    b.id,
                    &b.qr_id,
                    kind,
                    Action::Rejected,
                    Some(e.code),
                    format!(
                        "{} (old type {:?})",
                        e.message,
                        b.kind.as_deref().unwrap_or("")
                    ),
                );
                continue;
            }
        };
        if let Some((first, first_raw)) = by_qr.get(&id) {
            f.add(
                "bag",
                b.id,
                &b.qr_id,
                "case_duplicate",
                Action::Rejected,
                Some(ErrorCode::BagExists),
                format!(
                    "the same id as bag {first} ({first_raw:?}) once normalised to {id:?}; the first is imported, this one and its links are not"
                ),
            );
            continue;
        }
        if kind_raw.as_deref() != Some("parent") && kind_raw.as_deref() != Some("child") {
            f.add(
                "bag",
                b.id,
                &b.qr_id,
                "type_repaired",
                Action::Repaired,
                None,
                format!(
                    "old type {:?}: imported as a {} by its id's shape",
                    b.kind.as_deref().unwrap_or(""),
                    if kind == BagKind::Parent {
                        "parent"
                    } else {
                        "child"
                    }
                ),
            );
        }
        if id != b.qr_id {
            f.add(
                "bag",
                b.id,
                &b.qr_id,
                "qr_repaired",
                Action::Repaired,
                None,
                format!("{:?} is imported as {id:?} (trimmed, upper-cased)", b.qr_id),
            );
        }
        by_qr.insert(id.clone(), (b.id, b.qr_id.clone()));
        order.push(b.id);
        bags.insert(
            b.id,
            Bag {
                legacy_id: b.id,
                raw: b.qr_id.clone(),
                qr: id,
                kind,
                capacity: line.map(|l| l.capacity).unwrap_or(0),
                line: line.map(|l| l.name.clone()).unwrap_or_default(),
                own_area: known_area(&norm_area(b.dispatch_area.as_deref())),
                old_area: b.dispatch_area.clone(),
                user_id: b.user_id,
            },
        );
    }

    // ------------------------------------------------------------------------------ links
    let mut first_link: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut fill: HashMap<i64, i32> = HashMap::new();
    // child old id → (parent old id, link old id)
    let mut linked: HashMap<i64, (i64, i64)> = HashMap::new();
    let subject = |id: i64| -> String {
        bags.get(&id)
            .map(|b| b.raw.clone())
            .unwrap_or_else(|| format!("bag {id}"))
    };
    // As imported, for messages.
    let name = |id: i64| -> String {
        bags.get(&id)
            .map(|b| b.qr.clone())
            .unwrap_or_else(|| format!("bag {id}"))
    };
    for l in &data.links {
        let pair = format!(
            "{} -> {}",
            subject(l.parent_bag_id),
            subject(l.child_bag_id)
        );
        if !exists.contains(&l.parent_bag_id) || !exists.contains(&l.child_bag_id) {
            f.add(
                "link",
                l.id,
                &pair,
                "dangling_link",
                Action::Rejected,
                Some(ErrorCode::BagNotFound),
                "names a bag the old database does not hold".into(),
            );
            continue;
        }
        if let Some((first_id, first_parent)) = first_link.get(&l.child_bag_id) {
            if *first_parent == l.parent_bag_id {
                f.add(
                    "link",
                    l.id,
                    &pair,
                    "duplicate_link",
                    Action::Reported,
                    None,
                    format!("the same link as link {first_id}: counted once"),
                );
            } else {
                f.add(
                    "link",
                    l.id,
                    &pair,
                    "second_parent",
                    Action::Rejected,
                    Some(ErrorCode::ChildLinkedElsewhere),
                    format!(
                        "the child is already linked to {} by link {first_id}; the first link wins",
                        name(*first_parent)
                    ),
                );
            }
            continue;
        }
        first_link.insert(l.child_bag_id, (l.id, l.parent_bag_id));
        let (p, c) = match (bags.get(&l.parent_bag_id), bags.get(&l.child_bag_id)) {
            (Some(p), Some(c)) => (p, c),
            (p, c) => {
                let which = match (p.is_none(), c.is_none()) {
                    (true, true) => "both bags are rejected",
                    (true, false) => "the parent is rejected; the child is imported unlinked",
                    _ => "the child is rejected",
                };
                f.add(
                    "link",
                    l.id,
                    &pair,
                    "bag_rejected",
                    Action::Rejected,
                    None,
                    format!("{which} (see the bag findings)"),
                );
                continue;
            }
        };
        if p.kind != BagKind::Parent || c.kind != BagKind::Child {
            f.add(
                "link",
                l.id,
                &pair,
                "not_parent_child",
                Action::Rejected,
                Some(ErrorCode::NotAParent),
                format!("links a {:?} to a {:?}", p.kind, c.kind),
            );
            continue;
        }
        let n = fill.entry(p.legacy_id).or_default();
        if *n >= p.capacity {
            f.add(
                "link",
                l.id,
                &pair,
                "over_capacity",
                Action::Rejected,
                Some(ErrorCode::ParentFull),
                format!(
                    "{} ({}) holds {} children and earlier links fill it; {} is imported unlinked",
                    p.qr, p.line, p.capacity, c.qr
                ),
            );
            continue;
        }
        *n += 1;
        linked.insert(c.legacy_id, (p.legacy_id, l.id));
    }

    // ------------------------------------------------------------------------------ areas
    let mut area_of: HashMap<i64, String> = HashMap::new();
    let resolve = |b: &Bag, f: &mut Findings| -> Option<String> {
        if let Some(a) = &b.own_area {
            return Some(a.clone());
        }
        let old = b.old_area.clone();
        let from = b
            .user_id
            .and_then(|u| {
                user_area
                    .get(&u)
                    .map(|a| (a.clone(), "its creator's dispatch area"))
            })
            .or_else(|| opts.default_area.clone().map(|a| (a, "the --default-area")));
        match from {
            Some((a, why)) => {
                f.add(
                    "bag",
                    b.legacy_id,
                    &b.raw,
                    "area_repaired",
                    Action::Repaired,
                    None,
                    format!("old area {:?}: given {why}, {a}", old.unwrap_or_default()),
                );
                Some(a)
            }
            None => {
                f.add(
                    "bag",
                    b.legacy_id,
                    &b.raw,
                    "no_area",
                    Action::Rejected,
                    Some(ErrorCode::AreaRequired),
                    format!(
                        "old area {:?} is not a TraceTrack area and neither its creator nor --default-area gives one",
                        old.unwrap_or_default()
                    ),
                );
                None
            }
        }
    };
    let mut planned_parents = Vec::new();
    let mut planned_children = Vec::new();
    for id in &order {
        let Some(b) = bags.get(id) else { continue };
        if b.kind != BagKind::Parent {
            continue;
        }
        let Some(area) = resolve(b, &mut f) else {
            continue;
        };
        area_of.insert(b.legacy_id, area.clone());
        planned_parents.push(PlannedBag {
            legacy_id: b.legacy_id,
            qr: b.qr.clone(),
            kind: BagKind::Parent,
            area,
            parent: None,
        });
    }
    for id in &order {
        let Some(b) = bags.get(id) else { continue };
        if b.kind != BagKind::Child {
            continue;
        }
        let parent = linked.get(&b.legacy_id).and_then(|(p, link)| {
            match (area_of.get(p), bags.get(p)) {
                (Some(area), Some(pb)) => Some((pb.qr.clone(), *link, area.clone())),
                _ => {
                    f.add(
                        "link",
                        *link,
                        &format!("{} -> {}", subject(*p), b.raw),
                        "bag_rejected",
                        Action::Rejected,
                        None,
                        "the parent is rejected (see the bag findings); the child is imported unlinked".into(),
                    );
                    None
                }
            }
        });
        let (parent, area) = match parent {
            Some((qr, link, area)) => (Some((qr, link)), area),
            None => match resolve(b, &mut f) {
                Some(a) => (None, a),
                None => continue,
            },
        };
        planned_children.push(PlannedBag {
            legacy_id: b.legacy_id,
            qr: b.qr.clone(),
            kind: BagKind::Child,
            area,
            parent,
        });
    }
    let planned_ids: HashSet<i64> = planned_parents.iter().map(|p| p.legacy_id).collect();

    // ------------------------------------------------------------------------------ bills
    let mut bill_index: HashMap<i64, usize> = HashMap::new();
    let mut bill_ids: HashMap<String, (i64, String)> = HashMap::new();
    let mut bills: Vec<PlannedBill> = Vec::new();
    let mut old_status: Vec<Option<String>> = Vec::new();
    let mut old_capacity: Vec<Option<i64>> = Vec::new();
    for b in &data.bills {
        let id = match bill::normalize(&b.bill_id) {
            Ok(id) => id,
            Err(e) => {
                f.add(
                    "bill",
                    b.id,
                    &b.bill_id,
                    "invalid_bill_id",
                    Action::Rejected,
                    Some(e.code),
                    format!("{}; its parents stay unattached", e.message),
                );
                continue;
            }
        };
        if let Some((first, first_raw)) = bill_ids.get(&id.to_lowercase()) {
            f.add(
                "bill",
                b.id,
                &b.bill_id,
                "bill_case_duplicate",
                Action::Rejected,
                Some(ErrorCode::BillExists),
                format!("bill ids are unique regardless of case: bill {first} ({first_raw:?}) is imported, this one is not"),
            );
            continue;
        }
        if id != b.bill_id {
            f.add(
                "bill",
                b.id,
                &b.bill_id,
                "bill_id_repaired",
                Action::Repaired,
                None,
                format!("imported as {id:?} (control and invisible characters removed, spaces collapsed)"),
            );
        }
        let mut text = |raw: &Option<String>, max: usize, what: &str| -> String {
            let s = bill::sanitize(raw.as_deref().unwrap_or(""));
            if s.chars().count() > max {
                f.add(
                    "bill",
                    b.id,
                    &b.bill_id,
                    "text_truncated",
                    Action::Repaired,
                    None,
                    format!("{what} cut to {max} characters"),
                );
                s.chars().take(max).collect()
            } else {
                s
            }
        };
        let description = text(&b.description, MAX_DESCRIPTION, "description");
        let destination = text(&b.destination, MAX_DESTINATION, "destination");
        let vehicle_number = text(&b.vehicle_number, MAX_VEHICLE, "vehicle_number");
        bill_ids.insert(id.to_lowercase(), (b.id, b.bill_id.clone()));
        bill_index.insert(b.id, bills.len());
        bills.push(PlannedBill {
            legacy_id: b.id,
            bill_id: id,
            capacity: 0,
            description,
            destination,
            vehicle_number,
            parents: Vec::new(),
            complete: false,
        });
        old_status.push(b.status.clone());
        old_capacity.push(b.parent_bag_count);
    }
    let old_bill_ids: HashMap<i64, &str> = data
        .bills
        .iter()
        .map(|b| (b.id, b.bill_id.as_str()))
        .collect();
    let bill_name = |legacy: i64| -> String {
        old_bill_ids
            .get(&legacy)
            .map(|b| (*b).to_owned())
            .unwrap_or_else(|| format!("bill {legacy}"))
    };
    let mut first_bill: HashMap<i64, (i64, i64)> = HashMap::new();
    for bb in &data.bill_bags {
        let subj = format!("{} <- {}", bill_name(bb.bill_id), subject(bb.bag_id));
        if let Some((first_row, first)) = first_bill.get(&bb.bag_id) {
            if *first == bb.bill_id {
                f.add(
                    "bill_bag",
                    bb.id,
                    &subj,
                    "duplicate_bill_bag",
                    Action::Reported,
                    None,
                    format!("the same parent on the same bill as row {first_row}: counted once"),
                );
            } else {
                f.add(
                    "bill_bag",
                    bb.id,
                    &subj,
                    "two_bills",
                    Action::Rejected,
                    Some(ErrorCode::OnOtherBill),
                    format!(
                        "the parent is already on {} (bill_bag {first_row}); the first bill wins",
                        bill_name(*first)
                    ),
                );
            }
            continue;
        }
        first_bill.insert(bb.bag_id, (bb.id, bb.bill_id));
        let Some(&bi) = bill_index.get(&bb.bill_id) else {
            f.add(
                "bill_bag",
                bb.id,
                &subj,
                "bill_rejected",
                Action::Rejected,
                Some(ErrorCode::BillNotFound),
                "its bill is not imported (see the bill findings)".into(),
            );
            continue;
        };
        match bags.get(&bb.bag_id) {
            Some(b) if b.kind == BagKind::Child => {
                f.add(
                    "bill_bag",
                    bb.id,
                    &subj,
                    "not_parent",
                    Action::Rejected,
                    Some(ErrorCode::NotAParent),
                    "a child bag cannot go on a bill".into(),
                );
            }
            Some(b) if planned_ids.contains(&b.legacy_id) => {
                bills[bi].parents.push((b.qr.clone(), bb.id));
            }
            _ => {
                f.add(
                    "bill_bag",
                    bb.id,
                    &subj,
                    "parent_not_imported",
                    Action::Rejected,
                    Some(ErrorCode::BagNotFound),
                    "the parent is rejected or missing (see the bag findings)".into(),
                );
            }
        }
    }
    // Raw figures, for the counters check.
    let mut raw_parents: HashMap<i64, HashSet<i64>> = HashMap::new();
    for bb in &data.bill_bags {
        raw_parents.entry(bb.bill_id).or_default().insert(bb.bag_id);
    }
    let mut raw_children: HashMap<i64, HashSet<i64>> = HashMap::new();
    for l in &data.links {
        raw_children
            .entry(l.parent_bag_id)
            .or_default()
            .insert(l.child_bag_id);
    }
    for b in &data.bills {
        let parents = raw_parents.get(&b.id);
        let n_parents = parents.map(|p| p.len() as i64).unwrap_or(0);
        let n_children: i64 = parents
            .map(|p| {
                p.iter()
                    .map(|id| raw_children.get(id).map(|c| c.len() as i64).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        let (lp, tc) = (
            b.linked_parent_count.unwrap_or(0),
            b.total_child_bags.unwrap_or(0),
        );
        if lp != n_parents || tc != n_children {
            f.add(
                "bill",
                b.id,
                &b.bill_id,
                "counters_disagree",
                Action::Reported,
                None,
                format!(
                    "old counters say {lp} parents and {tc} children, its rows say {n_parents} and {n_children}; TraceTrack computes the figures from the links"
                ),
            );
        }
    }
    for (i, bill) in bills.iter_mut().enumerate() {
        let listed = bill.parents.len() as i64;
        let old = old_capacity[i];
        let capacity = match old {
            Some(c) if (1..=MAX_BILL_CAPACITY).contains(&c) => c,
            _ => {
                let c = match old {
                    Some(c) if c > MAX_BILL_CAPACITY => MAX_BILL_CAPACITY,
                    _ => listed.clamp(1, MAX_BILL_CAPACITY),
                };
                f.add(
                    "bill",
                    bill.legacy_id,
                    &bill_name(bill.legacy_id),
                    "capacity_repaired",
                    Action::Repaired,
                    Some(ErrorCode::InvalidArgument),
                    format!(
                        "capacity (parent_bag_count) {} is outside 1-500: imported with {c}",
                        old.map(|c| c.to_string()).unwrap_or_else(|| "NULL".into())
                    ),
                );
                c
            }
        };
        bill.capacity = i32::try_from(capacity).unwrap_or(1);
        if listed > capacity {
            let extra = bill.parents.split_off(capacity as usize);
            for (qr, row) in extra {
                f.add(
                    "bill_bag",
                    row,
                    &format!("{} <- {qr}", bill.bill_id),
                    "bill_over_capacity",
                    Action::Rejected,
                    Some(ErrorCode::BillFull),
                    format!(
                        "{} has room for {capacity} parent(s) and earlier rows fill it; {qr} stays unattached",
                        bill.bill_id
                    ),
                );
            }
        }
        let completed = old_status[i]
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("completed"));
        if completed {
            if bill.parents.len() as i64 == capacity {
                bill.complete = true;
            } else {
                f.add(
                    "bill",
                    bill.legacy_id,
                    &bill_name(bill.legacy_id),
                    "completed_not_full",
                    Action::Reported,
                    Some(ErrorCode::BillIncomplete),
                    format!(
                        "completed in the old system, but {} of its {capacity} places are filled: imported open",
                        bill.parents.len()
                    ),
                );
            }
        }
    }

    let mut all = planned_parents;
    all.extend(planned_children);
    Plan {
        source: data.counts(),
        users,
        bags: all,
        bills,
        findings: f.0,
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
