//! GS1 EPCIS 2.0 events from the event store (`stats.audit_events`), for the EPCIS export.
//!
//! # Identifiers
//!
//! QR ids are free text (SPEC §1), not GS1 keys, so bags, bills and areas are named by one private
//! URN scheme, each id percent-encoded as UTF-8 (every byte outside RFC 3986's unreserved
//! `A-Z a-z 0-9 - . _ ~`), so any valid id gives a valid URI and the id can be decoded back:
//!
//! | what | URI | example |
//! |---|---|---|
//! | bag (parent or child) | `urn:tracetrack:bag:<QR>` | `urn:tracetrack:bag:SB12345`, `urn:tracetrack:bag:LOT%2F7` |
//! | bill (a `bol` business transaction) | `urn:tracetrack:bill:<bill id>` | `urn:tracetrack:bill:TRUCK%2014` |
//! | area (`bizLocation`) | `urn:tracetrack:area:<area>` | `urn:tracetrack:area:lucknow` |
//! | return ticket (an `rma` business transaction) | `urn:tracetrack:ticket:<ticket id>` | `urn:tracetrack:ticket:RTN-20261205-0001` |
//!
//! # Events
//!
//! | source event | EPCIS events |
//! |---|---|
//! | `registry.bag_registered` | ObjectEvent ADD `commissioning`, `active` |
//! | `registry.child_linked` | (a child first seen here: ObjectEvent ADD `commissioning`, then) AggregationEvent ADD `packing` |
//! | `registry.child_unlinked` (unlink, undo) | AggregationEvent DELETE `unpacking` |
//! | `registry.child_moved` | AggregationEvent DELETE `unpacking` from the old parent (if any), then ADD `packing` into the new |
//! | `registry.bag_deleted` | ObjectEvent DELETE `decommissioning`, `inactive` |
//! | `billing.parent_attached` | TransactionEvent ADD `loading`, bizTransaction `bol` = the bill, epcList = the parent |
//! | `billing.parent_detached` | TransactionEvent DELETE `unloading` |
//! | `billing.bill_deleted` with parents | TransactionEvent DELETE `unloading` of those parents |
//! | `billing.parent_returned` | TransactionEvent DELETE `receiving`, `returned`, bizTransactions `bol` = the bill and `rma` = the return ticket, at the ticket's area |
//!
//! `registry.bags_imported` carries per-batch counts only, so bags created by a bulk import have no
//! commissioning events (their later links, moves and bills do appear).
//!
//! Each `eventID` is `urn:uuid:` + a name-based (version 5, SHA-1) UUID of the source event's id
//! and the EPCIS event's role in it (`commissioning`, `pack`, …): the same source event always
//! gives the same ids, in every export. `eventTime` is the source event's time (UTC);
//! `eventTimeZoneOffset` the business time zone's offset at that moment.

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::Value;
use sha1::{Digest, Sha1};
use uuid::Uuid;

/// The JSON-LD context of an EPCIS 2.0 document.
pub const CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";

/// The source event types that become EPCIS events.
pub const SOURCE_TYPES: &[&str] = &[
    "registry.bag_registered",
    "registry.child_linked",
    "registry.child_unlinked",
    "registry.child_moved",
    "registry.bag_deleted",
    "billing.parent_attached",
    "billing.parent_detached",
    "billing.bill_deleted",
    "billing.parent_returned",
];

/// Namespace of the events' name-based UUIDs (a fixed random UUID; never change it, or every
/// event id changes).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_4c2e_9a57_4d0b_8f3e_2c71_d5a9_e804);

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn urn(kind: &str, id: &str) -> String {
    format!("urn:tracetrack:{kind}:{}", utf8_percent_encode(id, ENCODE))
}

/// A bag's URI: `urn:tracetrack:bag:<percent-encoded QR>`.
pub fn bag_uri(qr: &str) -> String {
    urn("bag", qr)
}

/// A return ticket's URI: `urn:tracetrack:ticket:<percent-encoded ticket id>`.
pub fn ticket_uri(ticket_id: &str) -> String {
    urn("ticket", ticket_id)
}

/// A bill's URI: `urn:tracetrack:bill:<percent-encoded bill id>`.
pub fn bill_uri(bill_id: &str) -> String {
    urn("bill", bill_id)
}

/// An area's URI: `urn:tracetrack:area:<percent-encoded area>`.
pub fn area_uri(area: &str) -> String {
    urn("area", area)
}

/// UUID version 5 (RFC 9562 §5.5) of `name` in `namespace`.
pub fn uuid_v5(namespace: Uuid, name: &[u8]) -> Uuid {
    let mut h = Sha1::new();
    h.update(namespace.as_bytes());
    h.update(name);
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The stable id of the EPCIS event playing `role` in source event `source`.
pub fn event_id(source: Uuid, role: &str) -> String {
    format!(
        "urn:uuid:{}",
        uuid_v5(EVENT_ID_NAMESPACE, format!("{source}/{role}").as_bytes())
    )
}

/// `±HH:MM` for an offset from UTC in seconds.
pub fn offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// One stored event, as the export reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Source {
    pub occurred_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: Value,
    /// The business time zone's offset from UTC at `occurred_at`, in seconds.
    pub offset_secs: i32,
}

#[derive(Debug, Serialize)]
struct Location {
    id: String,
}

#[derive(Debug, Serialize)]
struct BizTransaction {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bizTransaction")]
    uri: String,
}

/// An EPCIS event, fields in the standard's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    event_time: String,
    event_time_zone_offset: String,
    #[serde(rename = "parentID", skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    #[serde(rename = "childEPCs", skip_serializing_if = "Option::is_none")]
    child_epcs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epc_list: Option<Vec<String>>,
    action: &'static str,
    biz_step: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_transaction_list: Option<Vec<BizTransaction>>,
}

impl Event {
    fn new(
        src: &Source,
        kind: &'static str,
        role: &str,
        action: &'static str,
        biz_step: &'static str,
    ) -> Self {
        Self {
            kind,
            event_id: event_id(src.event_id, role),
            event_time: src.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            event_time_zone_offset: offset(src.offset_secs),
            parent_id: None,
            child_epcs: None,
            epc_list: None,
            action,
            biz_step,
            disposition: None,
            biz_location: None,
            biz_transaction_list: None,
        }
    }

    fn at(mut self, area: Option<&str>) -> Self {
        self.biz_location = area
            .filter(|a| !a.is_empty())
            .map(|a| Location { id: area_uri(a) });
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn commissioning(src: &Source, qr: &str, area: Option<&str>) -> Event {
    Event {
        epc_list: Some(vec![bag_uri(qr)]),
        disposition: Some("active"),
        ..Event::new(src, "ObjectEvent", "commissioning", "ADD", "commissioning")
    }
    .at(area)
}

fn aggregation(
    src: &Source,
    role: &str,
    add: bool,
    parent: &str,
    child: &str,
    area: Option<&str>,
) -> Event {
    let (action, step) = if add {
        ("ADD", "packing")
    } else {
        ("DELETE", "unpacking")
    };
    Event {
        parent_id: Some(bag_uri(parent)),
        child_epcs: Some(vec![bag_uri(child)]),
        ..Event::new(src, "AggregationEvent", role, action, step)
    }
    .at(area)
}

fn transaction(
    src: &Source,
    role: &str,
    add: bool,
    bill_id: &str,
    parents: Vec<String>,
    area: Option<&str>,
) -> Event {
    let (action, step) = if add {
        ("ADD", "loading")
    } else {
        ("DELETE", "unloading")
    };
    Event {
        epc_list: Some(parents.iter().map(|p| bag_uri(p)).collect()),
        biz_transaction_list: Some(vec![BizTransaction {
            kind: "bol",
            uri: bill_uri(bill_id),
        }]),
        ..Event::new(src, "TransactionEvent", role, action, step)
    }
    .at(area)
}

/// The EPCIS events one source event stands for, in order (none for other types, or when a
/// field the mapping needs is missing).
pub fn events(src: &Source) -> Vec<Event> {
    let p = &src.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let area = s("area");
    let mapped = (|| -> Option<Vec<Event>> {
        Some(match src.event_type.as_str() {
            "registry.bag_registered" => vec![commissioning(src, s("bag")?, area)],
            "registry.child_linked" => {
                let (parent, child) = (s("parent_qr")?, s("child_qr")?);
                let mut out = Vec::with_capacity(2);
                if p.get("created").and_then(Value::as_bool).unwrap_or(false) {
                    out.push(commissioning(src, child, area));
                }
                out.push(aggregation(src, "pack", true, parent, child, area));
                out
            }
            "registry.child_unlinked" => {
                vec![aggregation(
                    src,
                    "unpack",
                    false,
                    s("parent_qr")?,
                    s("child_qr")?,
                    area,
                )]
            }
            "registry.child_moved" => {
                let child = s("child_qr")?;
                let mut out = Vec::with_capacity(2);
                if let Some(from) = s("from_parent_qr") {
                    out.push(aggregation(
                        src,
                        "unpack",
                        false,
                        from,
                        child,
                        s("from_area").or(area),
                    ));
                }
                out.push(aggregation(
                    src,
                    "pack",
                    true,
                    s("to_parent_qr")?,
                    child,
                    area,
                ));
                out
            }
            "registry.bag_deleted" => vec![Event {
                epc_list: Some(vec![bag_uri(s("bag")?)]),
                disposition: Some("inactive"),
                ..Event::new(
                    src,
                    "ObjectEvent",
                    "decommissioning",
                    "DELETE",
                    "decommissioning",
                )
            }
            .at(area)],
            "billing.parent_attached" => vec![transaction(
                src,
                "attach",
                true,
                s("bill_id")?,
                vec![s("parent_qr")?.to_owned()],
                area,
            )],
            "billing.parent_detached" => vec![transaction(
                src,
                "detach",
                false,
                s("bill_id")?,
                vec![s("parent_qr")?.to_owned()],
                area,
            )],
            "billing.parent_returned" => vec![Event {
                epc_list: Some(vec![bag_uri(s("parent_qr")?)]),
                disposition: Some("returned"),
                biz_transaction_list: Some(vec![
                    BizTransaction {
                        kind: "bol",
                        uri: bill_uri(s("bill_id")?),
                    },
                    BizTransaction {
                        kind: "rma",
                        uri: ticket_uri(s("ticket_id")?),
                    },
                ]),
                ..Event::new(src, "TransactionEvent", "return", "DELETE", "receiving")
            }
            .at(area)],
            "billing.bill_deleted" => {
                let parents: Vec<String> = p
                    .get("parents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                if parents.is_empty() {
                    Vec::new()
                } else {
                    vec![transaction(
                        src,
                        "detach",
                        false,
                        s("bill_id")?,
                        parents,
                        None,
                    )]
                }
            }
            _ => Vec::new(),
        })
    })();
    mapped.unwrap_or_else(|| {
        tracing::warn!(event_id = %src.event_id, event_type = %src.event_type, "event lacks a field the EPCIS export needs; left out");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn uuid_v5_matches_the_rfc_example() {
        // RFC 9562 appendix A.4: "www.example.com" in the DNS namespace.
        let dns = Uuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        assert_eq!(
            uuid_v5(dns, b"www.example.com").to_string(),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn ids_are_uris_of_one_scheme() {
        assert_eq!(bag_uri("SB12345"), "urn:tracetrack:bag:SB12345");
        assert_eq!(bag_uri("LOT/7 A"), "urn:tracetrack:bag:LOT%2F7%20A");
        assert_eq!(bag_uri("ÄB-1_2.3~"), "urn:tracetrack:bag:%C3%84B-1_2.3~");
        assert_eq!(bill_uri("TRUCK 14"), "urn:tracetrack:bill:TRUCK%2014");
        assert_eq!(area_uri("lucknow"), "urn:tracetrack:area:lucknow");
    }

    #[test]
    fn offsets() {
        assert_eq!(offset(19_800), "+05:30");
        assert_eq!(offset(0), "+00:00");
        assert_eq!(offset(-12_600), "-03:30");
    }

    fn src(event_type: &str, payload: Value) -> Source {
        Source {
            occurred_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            event_id: Uuid::parse_str("0190a0f0-0000-7000-8000-000000000001").unwrap(),
            event_type: event_type.into(),
            payload,
            offset_secs: 19_800,
        }
    }

    #[test]
    fn a_new_child_is_commissioned_then_packed_with_stable_ids() {
        let s = src(
            "registry.child_linked",
            json!({"parent_qr": "SB1", "child_qr": "CH1", "area": "lucknow", "created": true}),
        );
        let out: Vec<Value> = events(&s)
            .iter()
            .map(|e| serde_json::from_str(&e.to_json()).unwrap())
            .collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["type"], "ObjectEvent");
        assert_eq!(out[0]["bizStep"], "commissioning");
        assert_eq!(out[0]["epcList"], json!(["urn:tracetrack:bag:CH1"]));
        assert_eq!(out[1]["type"], "AggregationEvent");
        assert_eq!(out[1]["action"], "ADD");
        assert_eq!(out[1]["parentID"], "urn:tracetrack:bag:SB1");
        assert_eq!(out[1]["childEPCs"], json!(["urn:tracetrack:bag:CH1"]));
        assert_eq!(out[1]["bizLocation"]["id"], "urn:tracetrack:area:lucknow");
        assert_eq!(out[1]["eventTime"], "2024-05-01T10:00:00.123456Z");
        assert_eq!(out[1]["eventTimeZoneOffset"], "+05:30");
        assert_ne!(out[0]["eventID"], out[1]["eventID"]);
        let again: Vec<String> = events(&s).iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(
            again,
            [
                out[0]["eventID"].as_str().unwrap(),
                out[1]["eventID"].as_str().unwrap()
            ]
        );
        assert!(again[0].starts_with("urn:uuid:"));
    }

    #[test]
    fn a_move_unpacks_then_packs_and_missing_fields_give_nothing() {
        let s = src(
            "registry.child_moved",
            json!({"child_qr": "CH1", "from_parent_qr": "SB1", "to_parent_qr": "SB2", "area": "indore", "from_area": "lucknow"}),
        );
        let out = events(&s);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].action, out[0].biz_step), ("DELETE", "unpacking"));
        assert_eq!(out[0].parent_id.as_deref(), Some("urn:tracetrack:bag:SB1"));
        assert_eq!((out[1].action, out[1].biz_step), ("ADD", "packing"));
        assert_eq!(out[1].parent_id.as_deref(), Some("urn:tracetrack:bag:SB2"));
        assert!(events(&src("registry.child_moved", json!({"child_qr": "CH1"}))).is_empty());
        assert!(events(&src("auth.login_succeeded", json!({}))).is_empty());
    }

    #[test]
    fn bills_are_bol_transactions() {
        let s = src(
            "billing.parent_attached",
            json!({"bill_id": "TRUCK 14", "parent_qr": "SB1", "area": "lucknow"}),
        );
        let v: Value = serde_json::from_str(&events(&s)[0].to_json()).unwrap();
        assert_eq!(v["type"], "TransactionEvent");
        assert_eq!(v["action"], "ADD");
        assert_eq!(
            v["bizTransactionList"],
            json!([{"type": "bol", "bizTransaction": "urn:tracetrack:bill:TRUCK%2014"}])
        );
        assert_eq!(v["epcList"], json!(["urn:tracetrack:bag:SB1"]));
        let d = src(
            "billing.bill_deleted",
            json!({"bill_id": "B1", "parents": ["SB1", "SB2"]}),
        );
        assert_eq!(events(&d)[0].epc_list.as_ref().unwrap().len(), 2);
        let empty = src(
            "billing.bill_deleted",
            json!({"bill_id": "B1", "parents": []}),
        );
        assert!(events(&empty).is_empty());
    }
}
