//! Conversions between bag-registry's rows and its protobuf messages.

use chrono::{DateTime, Utc};
use tracetrack_common::{time, AppError};
use tracetrack_domain::qr::QrError;
use tracetrack_proto::registry::v1 as pb;

use crate::store::BagRow;

pub use tracetrack_common::time::ts;

/// A time filter: absent (or not a valid time) means no bound.
pub(crate) fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| time::from_ts(t, "").ok())
}

pub(crate) fn qr_err(e: QrError) -> AppError {
    AppError::new(e.code, e.message)
}

impl BagRow {
    pub fn to_pb(&self) -> pb::Bag {
        let parent = self.is_parent();
        pb::Bag {
            qr: self.qr.clone(),
            r#type: if parent {
                pb::BagType::Parent
            } else {
                pb::BagType::Child
            } as i32,
            product_line: self.product_line.clone().unwrap_or_default(),
            status: self.status.clone(),
            child_count: self.child_count,
            capacity: self.capacity.unwrap_or(0),
            weight_kg: if parent {
                f64::from(self.child_count) * self.child_weight_kg
            } else {
                self.child_weight_kg
            },
            expected_weight_kg: if parent {
                self.parent_weight_kg.unwrap_or(0.0)
            } else {
                self.child_weight_kg
            },
            area: self.area.clone(),
            parent_qr: self.parent_qr.clone().unwrap_or_default(),
            bill_id: self.bill_id.clone().unwrap_or_default(),
            frozen: self.frozen,
            created_at: Some(ts(self.created_at)),
            created_by: self.created_by.map(|u| u.to_string()).unwrap_or_default(),
            linked_at: self.linked_at.map(ts),
            linked_by: self.linked_by.map(|u| u.to_string()).unwrap_or_default(),
        }
    }
}
