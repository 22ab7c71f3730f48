//! Times between chrono and protobuf's `Timestamp`.

use chrono::{DateTime, Utc};

use crate::error::{AppError, AppResult};

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A caller's timestamp; `what` names the field in the error when it is not a valid time.
pub fn from_ts(t: &prost_types::Timestamp, what: &str) -> AppResult<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| AppError::invalid(format!("{what} is not a valid time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_bad_ones_are_refused() {
        let t = DateTime::from_timestamp(1_733_000_000, 123_456_789).unwrap_or_default();
        assert_eq!(from_ts(&ts(t), "at").ok(), Some(t));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            from_ts(&bad, "from").err().map(|e| e.message),
            Some("from is not a valid time".to_owned())
        );
    }
}
