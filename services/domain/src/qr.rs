//! QR identifiers (SPEC §1 "Identifiers"): normalisation, label-number extraction, product lines
//! and the parent/child classification every service and the gateway share.

use std::sync::OnceLock;

use regex::Regex;

use crate::ErrorCode;

/// Longest raw scanner input accepted.
pub const MAX_RAW_LEN: usize = 256;
/// Longest normalised id.
pub const MAX_ID_LEN: usize = 100;
const FORBIDDEN: &[char] = &['<', '>', '"', '\'', '%', ';', '&'];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrError {
    pub code: ErrorCode,
    pub message: &'static str,
}

fn invalid(message: &'static str) -> QrError {
    QrError {
        code: ErrorCode::InvalidQr,
        message,
    }
}

fn label_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // "LABEL NO.:0016586", "LABEL NO: 0016586", "LABEL NO 0016586", "LABEL NO.-0016586"
    RE.get_or_init(|| {
        Regex::new(r"LABEL\s*NO\.?\s*[:\-]?\s*([A-Z0-9]+)").unwrap_or_else(|_| unreachable!())
    })
}

fn child_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Z0-9]{4,20}$").unwrap_or_else(|_| unreachable!()))
}

/// Trims, upper-cases, reduces a printed label text to its label number, and validates the id.
pub fn normalize(raw: &str) -> Result<String, QrError> {
    if raw.chars().count() > MAX_RAW_LEN {
        return Err(invalid("the scanned text is longer than 256 characters"));
    }
    let upper = raw.trim().to_uppercase();
    let id = match label_regex().captures(&upper) {
        Some(c) => c.get(1).map(|m| m.as_str().to_owned()).unwrap_or_default(),
        None => upper,
    };
    if id.is_empty() {
        return Err(invalid("the scanned code is empty"));
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(invalid("the code is longer than 100 characters"));
    }
    if id.chars().any(|c| c.is_control() || FORBIDDEN.contains(&c)) {
        return Err(invalid("the code contains characters a label never has"));
    }
    Ok(id)
}

/// Whether a normalised id has the shape of a child label.
pub fn is_child_shape(id: &str) -> bool {
    child_regex().is_match(id)
}

/// A product line: which QRs are its parents, and what a parent holds and weighs.
#[derive(Debug, Clone)]
pub struct ProductLine {
    pub name: String,
    pub parent_pattern: Regex,
    pub capacity: i32,
    pub parent_weight_kg: f64,
    pub child_weight_kg: f64,
}

impl ProductLine {
    pub fn new(
        name: &str,
        pattern: &str,
        capacity: i32,
        parent_weight_kg: f64,
        child_weight_kg: f64,
    ) -> Result<Self, regex::Error> {
        Ok(Self {
            name: name.to_owned(),
            parent_pattern: Regex::new(pattern)?,
            capacity,
            parent_weight_kg,
            child_weight_kg,
        })
    }

    /// The SPEC's defaults: mustard (SB + 5 digits, 30 × 1 kg) and moong (M444- + 5 digits, 15 × 1 kg).
    pub fn defaults() -> Vec<ProductLine> {
        vec![
            Self::new("mustard", r"^SB\d{5}$", 30, 30.0, 1.0).unwrap_or_else(|_| unreachable!()),
            Self::new("moong", r"^M444-\d{5}$", 15, 15.0, 1.0).unwrap_or_else(|_| unreachable!()),
        ]
    }
}

/// What a normalised id is, by shape alone.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// Matches a product line's parent pattern: a parent, registered or not, forever.
    Parent(&'a ProductLine),
    /// Has the shape of a child label.
    Child,
    /// Neither.
    Unknown,
}

pub fn classify<'a>(id: &str, lines: &'a [ProductLine]) -> Shape<'a> {
    if let Some(line) = lines.iter().find(|l| l.parent_pattern.is_match(id)) {
        Shape::Parent(line)
    } else if is_child_shape(id) {
        Shape::Child
    } else {
        Shape::Unknown
    }
}

/// Normalises a QR scanned where a child is expected.
pub fn child_id(raw: &str, lines: &[ProductLine]) -> Result<String, QrError> {
    let id = normalize(raw)?;
    match classify(&id, lines) {
        Shape::Parent(_) => Err(QrError {
            code: ErrorCode::QrIsParent,
            message: "that is a parent bag, scan a child",
        }),
        Shape::Child => Ok(id),
        Shape::Unknown => Err(invalid(
            "not a child label: 4-20 letters or digits expected",
        )),
    }
}

/// Normalises a QR scanned where a parent is expected; returns its product line.
pub fn parent_id<'a>(
    raw: &str,
    lines: &'a [ProductLine],
) -> Result<(String, &'a ProductLine), QrError> {
    let id = normalize(raw)?;
    match classify(&id, lines) {
        Shape::Parent(line) => Ok((id, line)),
        Shape::Child => Err(QrError {
            code: ErrorCode::QrIsChild,
            message: "that is a child label, scan a parent bag",
        }),
        Shape::Unknown => Err(invalid("not a parent bag code of any product line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_texts_reduce_to_their_number() {
        for raw in [
            "LABEL NO.:0016586 LOT NO.:STAR44GG24611, D.O.T.:30/09/2025",
            "  label no.:0016586 lot no.:star44gg24611, d.o.t.:30/09/2025  ",
            "LABEL NO: 0016586 LOT NO: X",
            "LABEL NO 0016586",
            "Label No.-0016586, Lot No.:A1",
        ] {
            assert_eq!(normalize(raw).unwrap(), "0016586", "{raw}");
        }
    }

    #[test]
    fn plain_codes_are_trimmed_and_upper_cased() {
        assert_eq!(normalize("  sb00001 \r\n").unwrap(), "SB00001");
        assert_eq!(normalize("m444-00012").unwrap(), "M444-00012");
        assert_eq!(normalize("ab12cd").unwrap(), "AB12CD");
    }

    #[test]
    fn bad_input_is_invalid_qr() {
        let long = "A".repeat(257);
        for raw in [
            "",
            "   ",
            long.as_str(),
            "AB<12",
            "A'B",
            "50%",
            "A;B",
            "A&B",
            "A\"B",
            "A\u{7}B",
        ] {
            assert_eq!(
                normalize(raw).unwrap_err().code,
                ErrorCode::InvalidQr,
                "{raw:?}"
            );
        }
        assert_eq!(
            normalize(&"A".repeat(101)).unwrap_err().code,
            ErrorCode::InvalidQr
        );
        assert!(normalize(&"A".repeat(100)).is_ok());
        assert!(
            normalize(&"A".repeat(256)).is_err(),
            "within the raw limit but over 100"
        );
    }

    #[test]
    fn parents_and_children_by_shape() {
        let lines = ProductLine::defaults();
        assert_eq!(parent_id("sb12345", &lines).unwrap().1.name, "mustard");
        assert_eq!(parent_id("M444-00001", &lines).unwrap().1.capacity, 15);
        assert_eq!(
            parent_id("0016586", &lines).unwrap_err().code,
            ErrorCode::QrIsChild
        );
        assert_eq!(
            parent_id("SB1234", &lines).unwrap_err().code,
            ErrorCode::QrIsChild
        );
        assert_eq!(
            parent_id("M444-1", &lines).unwrap_err().code,
            ErrorCode::InvalidQr
        );
        assert_eq!(
            child_id("LABEL NO.:0016586 LOT NO.:X", &lines).unwrap(),
            "0016586"
        );
        assert_eq!(
            child_id("SB00001", &lines).unwrap_err().code,
            ErrorCode::QrIsParent
        );
        assert_eq!(
            child_id("ABC", &lines).unwrap_err().code,
            ErrorCode::InvalidQr
        );
        assert_eq!(
            child_id(&"A".repeat(21), &lines).unwrap_err().code,
            ErrorCode::InvalidQr
        );
        // Uniqueness is case-insensitive by construction.
        assert_eq!(
            child_id("ab12", &lines).unwrap(),
            child_id("AB12", &lines).unwrap()
        );
    }
}
