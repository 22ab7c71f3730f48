//! Bags: QR ids normalised as a scan would be, `_DUP_` copies, case duplicates, types.

use std::collections::HashMap;

use tracetrack_domain::qr::{self, ProductLine, QrError, Shape};
use tracetrack_domain::ErrorCode;

use super::{Bag, Finding, LegacyData, Planner};
use crate::labels::BagKind;

impl Planner<'_> {
    /// The bags whose ids pass, kept for the next phases (their areas come later).
    pub(super) fn bags(&mut self) {
        let data = self.data;
        // Normalised id → the bag imported under it (old id, id as stored).
        let mut by_qr: HashMap<String, (i64, String)> = HashMap::new();
        let originals = originals(data);
        for b in &data.bags {
            let row = || Finding::on("bag", b.id, &b.qr_id);
            let upper = b.qr_id.trim().to_uppercase();
            if let Some((orig, _)) = upper.rsplit_once("_DUP_") {
                let orig = orig.trim();
                let whose = qr::normalize(orig)
                    .ok()
                    .and_then(|o| originals.get(&o))
                    .map(|id| format!(" (bag {id})"))
                    .unwrap_or_else(|| " (not in the old database)".to_owned());
                self.findings
                    .push(row().code(ErrorCode::InvalidQr).rejected(
                        "dup_id",
                        format!(
                        "a renamed copy of {orig:?}{whose}, made when case duplicates were merged"
                    ),
                    ));
                continue;
            }
            let kind_raw = b.kind.as_deref().map(|k| k.trim().to_lowercase());
            let (id, kind, line) = match parse(&b.qr_id, kind_raw.as_deref(), &self.opts.lines) {
                Ok(p) => p,
                Err(e) => {
                    let kind = if e.code == ErrorCode::InvalidQr {
                        "invalid_qr"
                    } else {
                        "wrong_type"
                    };
                    self.findings.push(row().code(e.code).rejected(
                        kind,
                        format!(
                            "{} (old type {:?})",
                            e.message,
                            b.kind.as_deref().unwrap_or("")
                        ),
                    ));
                    continue;
                }
            };
            if let Some((first, first_raw)) = by_qr.get(&id) {
                self.findings.push(row().code(ErrorCode::BagExists).rejected(
                    "case_duplicate",
                    format!(
                        "the same id as bag {first} ({first_raw:?}) once normalised to {id:?}; the first is imported, this one and its links are not"
                    ),
                ));
                continue;
            }
            if kind_raw.as_deref() != Some("parent") && kind_raw.as_deref() != Some("child") {
                self.findings.push(row().repaired(
                    "type_repaired",
                    format!(
                        "old type {:?}: imported as a {} by its id's shape",
                        b.kind.as_deref().unwrap_or(""),
                        if kind == BagKind::Parent {
                            "parent"
                        } else {
                            "child"
                        }
                    ),
                ));
            }
            if id != b.qr_id {
                self.findings.push(row().repaired(
                    "qr_repaired",
                    format!("{:?} is imported as {id:?} (trimmed, upper-cased)", b.qr_id),
                ));
            }
            by_qr.insert(id.clone(), (b.id, b.qr_id.clone()));
            self.order.push(b.id);
            let own_area = self.known_area(b.dispatch_area.as_deref());
            self.bags.insert(
                b.id,
                Bag {
                    legacy_id: b.id,
                    raw: b.qr_id.clone(),
                    qr: id,
                    kind,
                    capacity: line.map(|l| l.capacity).unwrap_or(0),
                    line: line.map(|l| l.name.clone()).unwrap_or_default(),
                    own_area,
                    old_area: b.dispatch_area.clone(),
                    user_id: b.user_id,
                },
            );
        }
    }
}

/// Where each original of a `_DUP_` copy is: normalised id → the first bag with it.
fn originals(data: &LegacyData) -> HashMap<String, i64> {
    data.bags
        .iter()
        .filter(|b| !b.qr_id.to_uppercase().contains("_DUP_"))
        .filter_map(|b| qr::normalize(&b.qr_id).ok().map(|q| (q, b.id)))
        .fold(HashMap::new(), |mut m, (q, id)| {
            m.entry(q).or_insert(id);
            m
        })
}

/// A bag's id as a scan would read it, its kind (the old type's, else the id's shape) and,
/// for a parent, its product line.
fn parse<'l>(
    raw: &str,
    old_kind: Option<&str>,
    lines: &'l [ProductLine],
) -> Result<(String, BagKind, Option<&'l ProductLine>), QrError> {
    match old_kind {
        Some("parent") => qr::parent_id(raw, lines).map(|(q, l)| (q, BagKind::Parent, Some(l))),
        Some("child") => qr::child_id(raw, lines).map(|q| (q, BagKind::Child, None)),
        _ => qr::normalize(raw).and_then(|q| match qr::classify(&q, lines) {
            Shape::Parent(l) => Ok((q, BagKind::Parent, Some(l))),
            Shape::Child => Ok((q, BagKind::Child, None)),
            Shape::Unknown => qr::child_id(&q, lines).map(|q| (q, BagKind::Child, None)),
        }),
    }
}
