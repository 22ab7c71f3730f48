//! billing's rules for what a request may say (ids, free text, capacity, who manages bills) and
//! the errors it answers with.

use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{bill, qr, ErrorCode, Role};

pub(crate) const MANAGERS: &[Role] = &[Role::Admin, Role::Biller];
/// Bill statuses that accept no attach, detach or capacity change.
pub(crate) const CLOSED: &[&str] = &["completing", "completed", "reopening"];
pub(crate) const MAX_DESCRIPTION: usize = 500;
pub(crate) const MAX_DESTINATION: usize = 200;
pub(crate) const MAX_VEHICLE: usize = 50;
pub(crate) const MAX_DRIVER_NAME: usize = 100;
pub(crate) const MAX_SEAL: usize = 50;
/// A phone number: at most 20 characters.
pub(crate) const MAX_PHONE: usize = 20;

pub(crate) fn qr_err(e: qr::QrError) -> AppError {
    AppError::new(e.code, e.message)
}

/// The bill a request names: an id that cannot exist is simply not found.
pub(crate) fn named_bill(raw: &str) -> AppResult<String> {
    bill::normalize(raw).map_err(|_| bill_not_found())
}

/// A free-text field: sanitised, at most `max` characters.
pub(crate) fn text(raw: &str, max: usize, what: &str) -> AppResult<String> {
    if raw.chars().count() > max * 4 {
        return Err(AppError::invalid(format!(
            "{what} has more than {max} characters"
        )));
    }
    let s = bill::sanitize(raw);
    if s.chars().count() > max {
        return Err(AppError::invalid(format!(
            "{what} has more than {max} characters"
        )));
    }
    Ok(s)
}

/// A driver's phone number: empty, or digits with an optional leading `+` and spaces or dashes
/// between them (at most [`MAX_PHONE`] characters, at least 6 digits).
pub(crate) fn phone(raw: &str) -> AppResult<String> {
    let s = text(raw, MAX_PHONE, "driver_phone")?;
    let body = s.strip_prefix('+').unwrap_or(&s);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    let ok = s.is_empty()
        || (digits >= 6
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c == '-'));
    if ok {
        Ok(s)
    } else {
        Err(AppError::invalid(
            "driver_phone is digits, with an optional leading + and spaces or dashes",
        ))
    }
}

pub(crate) fn capacity(c: i32) -> AppResult<i32> {
    if (1..=500).contains(&c) {
        Ok(c)
    } else {
        Err(AppError::invalid("capacity is 1 to 500 parent bags"))
    }
}

pub(crate) fn conflict(message: &str) -> AppError {
    AppError::new(ErrorCode::Conflict, message)
}

pub(crate) fn on_other_bill(other: &str) -> AppError {
    AppError::new(ErrorCode::OnOtherBill, "this parent is on another bill")
        .with_detail("other_bill_id", other)
}

pub(crate) fn not_on_bill(parent: &str) -> AppError {
    AppError::new(ErrorCode::BagNotFound, "that parent is not on this bill")
        .with_detail("parent_qr", parent)
}

pub(crate) fn below_attached(attached: i32) -> AppError {
    AppError::new(
        ErrorCode::CapacityBelowAttached,
        "the capacity cannot be below the parents attached",
    )
    .with_detail("attached", attached)
}

pub fn bill_not_found() -> AppError {
    AppError::new(ErrorCode::BillNotFound, "no bill with that id")
}

pub fn bill_completed() -> AppError {
    AppError::new(
        ErrorCode::BillCompleted,
        "the bill is completed; reopen it first",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_sanitised_and_bounded() {
        assert_eq!(
            text("  Jaipur\u{200B}  depot ", 20, "x").ok(),
            Some("Jaipur depot".into())
        );
        assert!(text(&"a".repeat(21), 20, "x").is_err());
        assert!(capacity(0).is_err());
        assert!(capacity(501).is_err());
        assert_eq!(capacity(500).ok(), Some(500));
    }
}
