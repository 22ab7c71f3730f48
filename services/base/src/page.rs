//! Keyset pages, as every List call pages: the page size a caller may ask for, and the opaque
//! page token — the sort key of the previous page's last row, its parts joined by a unit
//! separator and base64url-encoded. A token that does not decode is `invalid_argument`.

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::{AppError, AppResult};

/// Rows in a page when the caller does not say.
pub const DEFAULT_SIZE: u32 = 50;
/// The most rows a page holds, whatever the caller asks.
pub const MAX_SIZE: u32 = 200;

const SEPARATOR: char = '\u{1f}';

/// The page size for a requested one (0: the default; capped at [`MAX_SIZE`]).
pub fn size(requested: u32) -> i64 {
    i64::from(match requested {
        0 => DEFAULT_SIZE,
        n => n.min(MAX_SIZE),
    })
}

fn bad() -> AppError {
    AppError::invalid("bad page_token")
}

/// A token for a sort key of several parts.
pub fn encode<S: AsRef<str>>(parts: &[S]) -> String {
    let joined: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(joined.join(&SEPARATOR.to_string()))
}

/// The parts of a token made by [`encode`], however many.
pub fn parts(token: &str) -> AppResult<Vec<String>> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?
        .split(SEPARATOR)
        .map(str::to_owned)
        .collect())
}

/// The parts of a token made by [`encode`] (exactly `n` of them).
pub fn decode(token: &str, n: usize) -> AppResult<Vec<String>> {
    let parts = parts(token)?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(bad())
    }
}

/// A token for the most common key: a time (to the microsecond) and an id.
pub fn encode_at(at: DateTime<Utc>, id: &str) -> String {
    encode(&[at.timestamp_micros().to_string().as_str(), id])
}

/// The time and id of a token made by [`encode_at`].
pub fn decode_at(token: &str) -> AppResult<(DateTime<Utc>, String)> {
    let mut parts = decode(token, 2)?.into_iter();
    let (micros, id) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(size(0), 50);
        assert_eq!(size(7), 7);
        assert_eq!(size(10_000), 200);
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let at = DateTime::from_timestamp_micros(1_733_000_000_123_456).unwrap_or_default();
        assert_eq!(
            decode_at(&encode_at(at, "a:b")).ok(),
            Some((at, "a:b".to_owned()))
        );
        assert_eq!(
            decode(&encode(&["x", "", "z"]), 3).ok(),
            Some(vec!["x".to_owned(), String::new(), "z".to_owned()])
        );
        assert!(decode(&encode(&["x", "y"]), 3).is_err());
        assert!(decode_at("not base64!").is_err());
        assert!(decode_at(&encode(&["soon", "id"])).is_err());
    }
}
