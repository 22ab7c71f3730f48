//! A scan attempt as the log holds it: its kind, how it names its QRs before (or without)
//! bag-registry's answer, its outcome and time, and the `scan.recorded` event that carries it.

use chrono::{DateTime, SubsecRound, Utc};
use tracetrack_common::caller::Caller;
use tracetrack_common::idempotency;
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{AppError, AppResult};
use tracetrack_proto::registry::v1 as registry;
use uuid::Uuid;

use crate::feed::EVENT_TYPE;
use crate::state::SERVICE;
use crate::store::ScanEventRow;

/// Longest scanner input kept in the log (bag-registry refuses anything over 256 characters).
const MAX_LOGGED_INPUT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Parent,
    Child,
    Undo,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Parent => "parent",
            Kind::Child => "child",
            Kind::Undo => "undo",
        }
    }

    pub(crate) fn rpc(self) -> &'static str {
        match self {
            Kind::Parent => "ScanParent",
            Kind::Child => "ScanChild",
            Kind::Undo => "UndoLastChild",
        }
    }

    /// The key of this request's registry call: derived from the client's key, or from a fresh
    /// one when the client sent none (then every request is new, as it should be).
    pub(crate) fn downstream_key(self, caller: &Caller) -> String {
        let user_key = caller
            .idempotency_key
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        idempotency::derive_key(&user_key, &caller.scope(), self.rpc())
    }
}

/// At most `max` characters of `s`.
fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// How an attempt names a QR in the log before (or without) bag-registry's answer: the
/// normalised id when the input is valid, else the trimmed, upper-cased input. This is only
/// for finding the attempt later; bag-registry alone decides what is valid.
pub(crate) fn logged_qr(raw: &str) -> String {
    tracetrack_domain::qr::normalize(raw)
        .unwrap_or_else(|_| cap(&raw.trim().to_uppercase(), MAX_LOGGED_INPUT))
}

/// One scan attempt under way: who made it, which RPC, and its event as logged so far.
pub(crate) struct Attempt {
    pub caller: Caller,
    pub kind: Kind,
    pub ev: ScanEventRow,
}

impl Attempt {
    /// A fresh attempt of a logged-in user, before its outcome is known.
    pub(crate) fn new(caller: Caller, kind: Kind, raw_input: &str) -> AppResult<Self> {
        let user = caller.user()?;
        let ev = ScanEventRow {
            id: Uuid::nil(),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            user_id: user.id,
            username: user.username.clone(),
            kind: kind.as_str().to_owned(),
            area: user.area.clone().unwrap_or_default(),
            parent_qr: String::new(),
            child_qr: None,
            raw_input: cap(raw_input, MAX_LOGGED_INPUT),
            outcome: String::new(),
            parent_child_count: None,
            parent_capacity: None,
            idempotency_key: caller.idempotency_key.clone(),
        };
        Ok(Self { caller, kind, ev })
    }
}

/// Gives the attempt its id, time and outcome (and counts it).
pub(crate) fn stamp(ev: &mut ScanEventRow, outcome: &str) {
    ev.id = Uuid::now_v7();
    // Postgres keeps microseconds; the feed and the log must show the same time.
    ev.occurred_at = Utc::now().trunc_subsecs(6);
    outcome.clone_into(&mut ev.outcome);
    metrics::counter!(
        "scan_attempts_total",
        "kind" => ev.kind.clone(),
        "outcome" => ev.outcome.clone()
    )
    .increment(1);
}

/// The `scan.recorded` outbox row of `ev`.
pub(crate) fn event_row(caller: &Caller, ev: &ScanEventRow) -> AppResult<outbox::Prepared> {
    let payload = serde_json::to_value(ev).map_err(AppError::internal)?;
    Ok(outbox::prepare(
        SERVICE,
        NewEvent {
            event_type: EVENT_TYPE,
            aggregate_type: "scan",
            aggregate_id: &ev.parent_qr,
            aggregate_version: 0,
            actor: caller.actor(),
            payload,
        },
    ))
}

/// The parent as bag-registry answered it: its canonical QR, area and counts.
pub(crate) fn apply_parent(ev: &mut ScanEventRow, parent: Option<&registry::Bag>) {
    if let Some(p) = parent {
        if !p.qr.is_empty() {
            ev.parent_qr.clone_from(&p.qr);
        }
        if !p.area.is_empty() {
            ev.area.clone_from(&p.area);
        }
        ev.parent_child_count = Some(p.child_count);
        ev.parent_capacity = Some(p.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_characters() {
        assert_eq!(cap("abcdef", 3), "abc");
        assert_eq!(cap("अबक", 2), "अब");
        assert_eq!(cap("ab", 5), "ab");
    }

    #[test]
    fn logged_qr_normalises_or_falls_back() {
        assert_eq!(logged_qr("  sb00001 "), "SB00001");
        assert_eq!(logged_qr("LABEL NO.:0016586 LOT NO.:X"), "0016586");
        assert_eq!(logged_qr(" a<b "), "A<B");
    }
}
