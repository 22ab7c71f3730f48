//! Conversions between billing's rows and its protobuf messages: bills, statuses, times, the
//! ListBills filter, and the event payload's view of a bill.

use serde_json::json;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::bill;
use tracetrack_proto::billing::v1 as pb;
use uuid::Uuid;

use crate::store::{self, BillRow};

pub(crate) use tracetrack_common::time::{from_ts, ts};

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
        driver_name: row.driver_name.clone(),
        driver_phone: row.driver_phone.clone(),
        seal_number: row.seal_number.clone(),
        created_by: row.created_by.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(ts(row.created_at)),
        updated_at: Some(ts(row.updated_at)),
        created_by_username: row.created_by_username.clone(),
        completed_at: row.completed_at.map(ts),
        returned_count: row.returned_count,
        returned_child_count: row.returned_child_count,
        returned_actual_weight_kg: row.returned_actual_weight_kg,
        returned_expected_weight_kg: row.returned_expected_weight_kg,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in ["new", "processing", "completing", "completed", "reopening"] {
            assert_eq!(status_from_pb(status_to_pb(s)), Some(s));
        }
        assert_eq!(status_to_pb("deleting"), pb::BillStatus::Unspecified);
    }
}
