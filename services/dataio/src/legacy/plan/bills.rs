//! Bills: ids sanitised as billing does, their parents in bill_bag order, old counters checked,
//! capacities repaired, completion carried over when the bill is full.

use std::collections::{HashMap, HashSet};

use tracetrack_domain::bill;
use tracetrack_domain::ErrorCode;

use super::{
    Finding, FirstWins, LegacyBill, PlannedBill, Planner, Seen, MAX_BILL_CAPACITY, MAX_DESCRIPTION,
    MAX_DESTINATION, MAX_VEHICLE,
};
use crate::labels::BagKind;

/// A bill being planned, with what its old row says that the last phase needs.
pub(super) struct Draft {
    pub(super) bill: PlannedBill,
    old_status: Option<String>,
    old_capacity: Option<i64>,
}

impl Planner<'_> {
    /// The bills whose ids pass, with their texts; no parents and no capacity yet.
    pub(super) fn bills(&mut self) -> Vec<Draft> {
        let data = self.data;
        // Lower-cased bill id → the bill imported under it (old id, id as stored).
        let mut bill_ids: HashMap<String, (i64, String)> = HashMap::new();
        let mut bills = Vec::new();
        for b in &data.bills {
            let row = || Finding::on("bill", b.id, &b.bill_id);
            let id = match bill::normalize(&b.bill_id) {
                Ok(id) => id,
                Err(e) => {
                    self.findings.push(row().code(e.code).rejected(
                        "invalid_bill_id",
                        format!("{}; its parents stay unattached", e.message),
                    ));
                    continue;
                }
            };
            if let Some((first, first_raw)) = bill_ids.get(&id.to_lowercase()) {
                self.findings.push(row().code(ErrorCode::BillExists).rejected(
                    "bill_case_duplicate",
                    format!("bill ids are unique regardless of case: bill {first} ({first_raw:?}) is imported, this one is not"),
                ));
                continue;
            }
            if id != b.bill_id {
                self.findings.push(row().repaired(
                    "bill_id_repaired",
                    format!("imported as {id:?} (control and invisible characters removed, spaces collapsed)"),
                ));
            }
            let description = self.text(b, &b.description, MAX_DESCRIPTION, "description");
            let destination = self.text(b, &b.destination, MAX_DESTINATION, "destination");
            let vehicle_number = self.text(b, &b.vehicle_number, MAX_VEHICLE, "vehicle_number");
            bill_ids.insert(id.to_lowercase(), (b.id, b.bill_id.clone()));
            bills.push(Draft {
                bill: PlannedBill {
                    legacy_id: b.id,
                    bill_id: id,
                    capacity: 0,
                    description,
                    destination,
                    vehicle_number,
                    parents: Vec::new(),
                    complete: false,
                },
                old_status: b.status.clone(),
                old_capacity: b.parent_bag_count,
            });
        }
        bills
    }

    /// A text field of `b` sanitised as billing does, cut to `max` characters.
    fn text(&mut self, b: &LegacyBill, raw: &Option<String>, max: usize, what: &str) -> String {
        let s = bill::sanitize(raw.as_deref().unwrap_or(""));
        if s.chars().count() > max {
            self.findings.push(
                Finding::on("bill", b.id, &b.bill_id)
                    .repaired("text_truncated", format!("{what} cut to {max} characters")),
            );
            s.chars().take(max).collect()
        } else {
            s
        }
    }

    /// The bill_bag rows, in attach order: a parent's first bill wins; only parents imported
    /// are attached.
    pub(super) fn bill_rows(&mut self, bills: &mut [Draft]) {
        let data = self.data;
        // Old bill id → its place in `bills`.
        let index: HashMap<i64, usize> = bills
            .iter()
            .enumerate()
            .map(|(i, d)| (d.bill.legacy_id, i))
            .collect();
        // Parent old id → its first row (row old id, bill old id).
        let mut first_bill = FirstWins::default();
        for bb in &data.bill_bags {
            let subject = format!(
                "{} <- {}",
                self.bill_name(bb.bill_id),
                self.subject(bb.bag_id)
            );
            let row = || Finding::on("bill_bag", bb.id, &subject);
            let finding = match first_bill.see(bb.bag_id, bb.id, bb.bill_id) {
                Seen::First => None,
                Seen::Again { first_row } => Some(row().reported(
                    "duplicate_bill_bag",
                    format!("the same parent on the same bill as row {first_row}: counted once"),
                )),
                Seen::Other { first_row, first } => Some(
                    row().code(ErrorCode::OnOtherBill).rejected(
                        "two_bills",
                        format!(
                            "the parent is already on {} (bill_bag {first_row}); the first bill wins",
                            self.bill_name(first)
                        ),
                    ),
                ),
            };
            if let Some(finding) = finding {
                self.findings.push(finding);
                continue;
            }
            let Some(&bi) = index.get(&bb.bill_id) else {
                self.findings
                    .push(row().code(ErrorCode::BillNotFound).rejected(
                        "bill_rejected",
                        "its bill is not imported (see the bill findings)",
                    ));
                continue;
            };
            match self.bags.get(&bb.bag_id) {
                Some(b) if b.kind == BagKind::Child => {
                    self.findings.push(
                        row()
                            .code(ErrorCode::NotAParent)
                            .rejected("not_parent", "a child bag cannot go on a bill"),
                    );
                }
                Some(b) if self.planned_parents.contains(&b.legacy_id) => {
                    bills[bi].bill.parents.push((b.qr.clone(), bb.id));
                }
                _ => {
                    self.findings
                        .push(row().code(ErrorCode::BagNotFound).rejected(
                            "parent_not_imported",
                            "the parent is rejected or missing (see the bag findings)",
                        ));
                }
            }
        }
    }

    /// Reports old counters that disagree with the old rows (TraceTrack computes its own).
    pub(super) fn counters(&mut self) {
        let data = self.data;
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
                self.findings.push(Finding::on("bill", b.id, &b.bill_id).reported(
                    "counters_disagree",
                    format!(
                        "old counters say {lp} parents and {tc} children, its rows say {n_parents} and {n_children}; TraceTrack computes the figures from the links"
                    ),
                ));
            }
        }
    }

    /// Each bill's capacity (repaired outside 1-500), the parents beyond it, and whether a bill
    /// completed in the old system is complete here.
    pub(super) fn capacities(&mut self, bills: &mut [Draft]) {
        for Draft {
            bill,
            old_status,
            old_capacity: old,
        } in bills.iter_mut()
        {
            let name = self.bill_name(bill.legacy_id);
            let row = || Finding::on("bill", bill.legacy_id, &name);
            let listed = bill.parents.len() as i64;
            let capacity = match *old {
                Some(c) if (1..=MAX_BILL_CAPACITY).contains(&c) => c,
                _ => {
                    let c = match *old {
                        Some(c) if c > MAX_BILL_CAPACITY => MAX_BILL_CAPACITY,
                        _ => listed.clamp(1, MAX_BILL_CAPACITY),
                    };
                    let finding = row().code(ErrorCode::InvalidArgument).repaired(
                        "capacity_repaired",
                        format!(
                            "capacity (parent_bag_count) {} is outside 1-500: imported with {c}",
                            old.map(|c| c.to_string()).unwrap_or_else(|| "NULL".into())
                        ),
                    );
                    self.findings.push(finding);
                    c
                }
            };
            bill.capacity = i32::try_from(capacity).unwrap_or(1);
            if listed > capacity {
                let extra = bill.parents.split_off(capacity as usize);
                for (qr, row) in extra {
                    self.findings.push(
                        Finding::on("bill_bag", row, format!("{} <- {qr}", bill.bill_id))
                            .code(ErrorCode::BillFull)
                            .rejected(
                                "bill_over_capacity",
                                format!(
                                    "{} has room for {capacity} parent(s) and earlier rows fill it; {qr} stays unattached",
                                    bill.bill_id
                                ),
                            ),
                    );
                }
            }
            let completed = old_status
                .as_deref()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("completed"));
            if completed {
                if bill.parents.len() as i64 == capacity {
                    bill.complete = true;
                } else {
                    let finding = row().code(ErrorCode::BillIncomplete).reported(
                        "completed_not_full",
                        format!(
                            "completed in the old system, but {} of its {capacity} places are filled: imported open",
                            bill.parents.len()
                        ),
                    );
                    self.findings.push(finding);
                }
            }
        }
    }
}
