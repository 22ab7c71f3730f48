//! Areas: a bag's own when TraceTrack knows it, else its creator's, else `--default-area`; a
//! linked child takes its parent's.

use std::collections::HashMap;

use tracetrack_domain::ErrorCode;

use super::{Bag, Finding, PlannedBag, Planner};
use crate::labels::BagKind;

impl Planner<'_> {
    /// The bags imported, parents first (in old order), then children; notes the parents
    /// imported for the bill rows.
    pub(super) fn areas(&mut self) -> Vec<PlannedBag> {
        // Parent old id → its area.
        let mut area_of: HashMap<i64, String> = HashMap::new();
        let mut planned = Vec::new();
        for id in &self.order {
            let Some(b) = self.bags.get(id) else { continue };
            if b.kind != BagKind::Parent {
                continue;
            }
            let (area, finding) = self.area(b);
            self.findings.extend(finding);
            let Some(area) = area else { continue };
            area_of.insert(b.legacy_id, area.clone());
            planned.push(PlannedBag {
                legacy_id: b.legacy_id,
                qr: b.qr.clone(),
                kind: BagKind::Parent,
                area,
                parent: None,
            });
        }
        self.planned_parents = planned.iter().map(|p| p.legacy_id).collect();
        for id in &self.order {
            let Some(b) = self.bags.get(id) else { continue };
            if b.kind != BagKind::Child {
                continue;
            }
            let parent = match self.linked.get(&b.legacy_id) {
                Some(&(p, link)) => match (area_of.get(&p), self.bags.get(&p)) {
                    (Some(area), Some(pb)) => Some((pb.qr.clone(), link, area.clone())),
                    _ => {
                        let pair = format!("{} -> {}", self.subject(p), b.raw);
                        self.findings.push(Finding::on("link", link, pair).rejected(
                            "bag_rejected",
                            "the parent is rejected (see the bag findings); the child is imported unlinked",
                        ));
                        None
                    }
                },
                None => None,
            };
            let (parent, area) = match parent {
                Some((qr, link, area)) => (Some((qr, link)), area),
                None => {
                    let (area, finding) = self.area(b);
                    self.findings.extend(finding);
                    match area {
                        Some(a) => (None, a),
                        None => continue,
                    }
                }
            };
            planned.push(PlannedBag {
                legacy_id: b.legacy_id,
                qr: b.qr.clone(),
                kind: BagKind::Child,
                area,
                parent,
            });
        }
        planned
    }

    /// A bag's area unless it is linked: its own, or a repaired one (with the finding that
    /// says so), or none (with the finding that rejects the bag).
    fn area(&self, b: &Bag) -> (Option<String>, Option<Finding>) {
        if let Some(a) = &b.own_area {
            return (Some(a.clone()), None);
        }
        let old = b.old_area.clone().unwrap_or_default();
        let from = b
            .user_id
            .and_then(|u| {
                self.user_area
                    .get(&u)
                    .map(|a| (a.clone(), "its creator's dispatch area"))
            })
            .or_else(|| {
                self.opts
                    .default_area
                    .clone()
                    .map(|a| (a, "the --default-area"))
            });
        let row = Finding::on("bag", b.legacy_id, &b.raw);
        match from {
            Some((a, why)) => {
                let finding = row.repaired("area_repaired", format!("old area {old:?}: given {why}, {a}"));
                (Some(a), Some(finding))
            }
            None => (
                None,
                Some(row.code(ErrorCode::AreaRequired).rejected(
                    "no_area",
                    format!(
                        "old area {old:?} is not a TraceTrack area and neither its creator nor --default-area gives one"
                    ),
                )),
            ),
        }
    }
}
