//! Links, in link order: the first link of a child wins, and a parent holds its line's capacity.

use std::collections::{HashMap, HashSet};

use tracetrack_domain::ErrorCode;

use super::{Finding, FirstWins, Planner, Seen};
use crate::labels::BagKind;

impl Planner<'_> {
    /// The links that hold, kept for the areas phase.
    pub(super) fn links(&mut self) {
        let data = self.data;
        let exists: HashSet<i64> = data.bags.iter().map(|b| b.id).collect();
        // Child old id → its first link (link old id, parent old id).
        let mut first_link = FirstWins::default();
        // Parent old id → the children linked to it so far.
        let mut fill: HashMap<i64, i32> = HashMap::new();
        for l in &data.links {
            let pair = format!(
                "{} -> {}",
                self.subject(l.parent_bag_id),
                self.subject(l.child_bag_id)
            );
            let row = || Finding::on("link", l.id, &pair);
            if !exists.contains(&l.parent_bag_id) || !exists.contains(&l.child_bag_id) {
                self.findings
                    .push(row().code(ErrorCode::BagNotFound).rejected(
                        "dangling_link",
                        "names a bag the old database does not hold",
                    ));
                continue;
            }
            let finding = match first_link.see(l.child_bag_id, l.id, l.parent_bag_id) {
                Seen::First => None,
                Seen::Again { first_row } => Some(row().reported(
                    "duplicate_link",
                    format!("the same link as link {first_row}: counted once"),
                )),
                Seen::Other { first_row, first } => Some(
                    row().code(ErrorCode::ChildLinkedElsewhere).rejected(
                        "second_parent",
                        format!(
                            "the child is already linked to {} by link {first_row}; the first link wins",
                            self.name(first)
                        ),
                    ),
                ),
            };
            if let Some(finding) = finding {
                self.findings.push(finding);
                continue;
            }
            let (p, c) = match (
                self.bags.get(&l.parent_bag_id),
                self.bags.get(&l.child_bag_id),
            ) {
                (Some(p), Some(c)) => (p, c),
                (p, c) => {
                    let which = match (p.is_none(), c.is_none()) {
                        (true, true) => "both bags are rejected",
                        (true, false) => "the parent is rejected; the child is imported unlinked",
                        _ => "the child is rejected",
                    };
                    self.findings.push(
                        row().rejected("bag_rejected", format!("{which} (see the bag findings)")),
                    );
                    continue;
                }
            };
            if p.kind != BagKind::Parent || c.kind != BagKind::Child {
                self.findings
                    .push(row().code(ErrorCode::NotAParent).rejected(
                        "not_parent_child",
                        format!("links a {:?} to a {:?}", p.kind, c.kind),
                    ));
                continue;
            }
            let n = fill.entry(p.legacy_id).or_default();
            if *n >= p.capacity {
                self.findings.push(row().code(ErrorCode::ParentFull).rejected(
                    "over_capacity",
                    format!(
                        "{} ({}) holds {} children and earlier links fill it; {} is imported unlinked",
                        p.qr, p.line, p.capacity, c.qr
                    ),
                ));
                continue;
            }
            *n += 1;
            self.linked.insert(c.legacy_id, (p.legacy_id, l.id));
        }
    }
}
