//! Conversions between billing's rows and its protobuf messages: bills, statuses, times, the
//! ListBills filter and its page token, and the event payload's view of a bill.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::json;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::bill;
use tracetrack_proto::billing::v1 as pb;
use uuid::Uuid;

use crate::store::{self, BillRow};

pub(crate) fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn from_ts(t: &prost_types::Timestamp, what: &str) -> AppResult<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| AppError::invalid(format!("{what} is not a valid time")))
}

pub fn status_to_pb(status: &str) -> pb::BillStatus {
    match status {
        "new" => pb::BillStatus::New,
        "processing" => pb::BillStatus::Processing,
        "completing" => pb::BillStatus::Completing,
        "completed" => pb::BillStatus::Completed,
        "reopening" => pb::BillStatus::Reopening,
        _ => pb::BillStatus::Unspecified,
    }
}

pub(crate) fn status_from_pb(status: pb::BillStatus) -> Option<&'static str> {
    match status {
        pb::BillStatus::Unspecified => None,
        pb::BillStatus::New => Some("new"),
        pb::BillStatus::Processing => Some("processing"),
        pb::BillStatus::Completing => Some("completing"),
        pb::BillStatus::Completed => Some("completed"),
        pb::BillStatus::Reopening => Some("reopening"),
    }
}

/// A Bill as answered; the figures from bag-registry are filled in by [`apply_figures`].
pub fn to_pb(row: &BillRow) -> pb::Bill {
    pb::Bill {
        bill_id: row.bill_id.clone(),
        status: status_to_pb(&row.status) as i32,
        capacity: row.capacity,
        parent_count: row.confirmed(),
        child_count: 0,
        actual_weight_kg: 0.0,
        expected_weight_kg: row.expected_weight_kg,
        description: row.description.clone(),
        destination: row.destination.clone(),
        vehicle_number: row.vehicle_number.clone(),
        created_by: row.created_by.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(ts(row.created_at)),
        updated_at: Some(ts(row.updated_at)),
        created_by_username: row.created_by_username.clone(),
        completed_at: row.completed_at.map(ts),
    }
}

/// ListBills' filters (shared with ExportBills), without the page.
pub(crate) fn list_filter(req: &pb::ListBillsRequest) -> AppResult<store::ListFilter> {
    let status =
        pb::BillStatus::try_from(req.status).map_err(|_| AppError::invalid("unknown status"))?;
    let created_by = match req.created_by.trim() {
        "" => None,
        id => Some(
            id.parse::<Uuid>()
                .map_err(|_| AppError::invalid("created_by must be a user id"))?,
        ),
    };
    let prefix = bill::sanitize(&req.bill_id_prefix);
    Ok(store::ListFilter {
        status: status_from_pb(status).map(str::to_owned),
        prefix: Some(prefix).filter(|p| !p.is_empty()),
        from: req
            .created_from
            .as_ref()
            .map(|t| from_ts(t, "created_from"))
            .transpose()?,
        to: req
            .created_to
            .as_ref()
            .map(|t| from_ts(t, "created_to"))
            .transpose()?,
        created_by,
        after: None,
        limit: 0,
    })
}

/// The event payload's view of a bill.
pub(crate) fn snapshot(row: &BillRow) -> serde_json::Value {
    json!({
        "bill_id": row.bill_id,
        "status": row.status,
        "capacity": row.capacity,
        "parent_count": row.confirmed(),
        "expected_weight_kg": row.expected_weight_kg,
        "description": row.description,
        "destination": row.destination,
        "vehicle_number": row.vehicle_number,
        "created_by": row.created_by,
        "created_at": row.created_at,
    })
}

pub(crate) fn encode_token(at: DateTime<Utc>, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}\u{1f}{}",
        at.timestamp_micros(),
        id
    ))
}

pub(crate) fn decode_token(token: &str) -> AppResult<(DateTime<Utc>, String)> {
    let bad = || AppError::invalid("bad page_token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (micros, id) = raw.split_once('\u{1f}').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

    #[test]
    fn page_tokens_round_trip() {
        let at = Utc::now().trunc_subsecs(6);
        let back = decode_token(&encode_token(at, "Bill:7 x"));
        assert!(matches!(back, Ok((a, ref i)) if a == at && i == "Bill:7 x"));
        assert!(decode_token("not a token").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["new", "processing", "completing", "completed", "reopening"] {
            assert_eq!(status_from_pb(status_to_pb(s)), Some(s));
        }
        assert_eq!(status_to_pb("deleting"), pb::BillStatus::Unspecified);
    }
}
