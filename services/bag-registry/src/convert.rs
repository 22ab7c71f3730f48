//! Conversions between bag-registry's rows and its protobuf messages, times, and the page token
//! of SearchBags and ListChildren.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr::QrError;
use tracetrack_proto::registry::v1 as pb;

use crate::store::BagRow;

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref()
        .and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
}

pub(crate) fn qr_err(e: QrError) -> AppError {
    AppError::new(e.code, e.message)
}

pub(crate) fn page_size(n: u32) -> i64 {
    match n {
        0 => 50,
        n => i64::from(n.min(200)),
    }
}

pub(crate) fn encode_token(parts: &[String]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
}

pub(crate) fn decode_token(token: &str) -> AppResult<Vec<String>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split('\u{1f}').map(str::to_owned).collect())
        .ok_or_else(|| AppError::invalid("bad page_token"))
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
