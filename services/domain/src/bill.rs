//! Bill ids (SPEC §1 "Identifiers"): free text, 3–50 characters after sanitising (control and
//! zero-width characters removed, whitespace collapsed, trimmed), without `/?#%\`; unique
//! case-insensitively (billing's database holds a unique index on `lower(bill_id)`).

use crate::ErrorCode;

/// Shortest and longest bill id, in characters, after sanitising.
pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 50;
/// Raw input longer than this is refused before any work is done on it.
pub const MAX_RAW_LEN: usize = 1000;
/// Characters a bill id never holds (they break URLs and `LIKE` patterns).
pub const FORBIDDEN: &[char] = &['/', '?', '#', '%', '\\'];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillIdError {
    pub code: ErrorCode,
    pub message: &'static str,
}

fn invalid(message: &'static str) -> BillIdError {
    BillIdError {
        code: ErrorCode::InvalidArgument,
        message,
    }
}

/// Invisible characters that only make two equal-looking ids differ: zero-width spaces and
/// joiners, the word joiner and invisible operators, the byte-order mark, the Mongolian vowel
/// separator, the soft hyphen and the bidirectional controls.
pub fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Removes control characters (whitespace controls such as tab and newline count as
/// whitespace) and zero-width characters, collapses every run of whitespace into one space, and
/// trims. Used for bill ids and for a bill's free-text fields.
pub fn sanitize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = true;
        } else if c.is_control() || is_zero_width(c) {
            continue;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

/// The bill id a user meant: sanitised, then checked (`invalid_argument`).
pub fn normalize(raw: &str) -> Result<String, BillIdError> {
    if raw.chars().count() > MAX_RAW_LEN {
        return Err(invalid("the bill id is far too long"));
    }
    let id = sanitize(raw);
    let len = id.chars().count();
    if len < MIN_LEN {
        return Err(invalid("a bill id has at least 3 characters"));
    }
    if len > MAX_LEN {
        return Err(invalid("a bill id has at most 50 characters"));
    }
    if id.contains(FORBIDDEN) {
        return Err(invalid("a bill id cannot contain / ? # % or \\"));
    }
    Ok(id)
}

/// The form two ids are compared in: equal keys are the same bill. Matches the database's
/// `lower(bill_id)` for the ids `normalize` accepts.
pub fn key(id: &str) -> String {
    id.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitising_removes_invisible_characters_and_collapses_whitespace() {
        assert_eq!(sanitize("  BILL-001  "), "BILL-001");
        assert_eq!(sanitize("Truck \t\n  7"), "Truck 7");
        assert_eq!(sanitize("A\u{200B}B\u{FEFF}C"), "ABC");
        assert_eq!(sanitize("A \u{200B} B"), "A B");
        assert_eq!(sanitize("A\u{0007}B\u{007F}C\u{0085}D"), "ABC D");
        assert_eq!(
            sanitize("\u{00A0}Lucknow\u{3000}Run\u{2003}"),
            "Lucknow Run"
        );
        assert_eq!(sanitize("\u{202E}evil\u{202C}"), "evil");
        assert_eq!(sanitize(""), "");
        assert_eq!(sanitize(" \u{200D} "), "");
        // Hindi text keeps its letters and marks.
        assert_eq!(sanitize(" बिल  १ "), "बिल १");
    }

    #[test]
    fn lengths_count_characters_after_sanitising() {
        assert!(normalize("AB").is_err());
        assert!(normalize("  A\u{200B}B  ").is_err(), "2 visible characters");
        assert_eq!(normalize("A B").as_deref(), Ok("A B"));
        assert_eq!(normalize("ABC").as_deref(), Ok("ABC"));
        assert!(normalize(&"x".repeat(50)).is_ok());
        assert!(normalize(&"x".repeat(51)).is_err());
        assert!(normalize(&format!("  {}  ", "x".repeat(50))).is_ok());
        assert_eq!(normalize("बिल १").as_deref(), Ok("बिल १"));
        assert!(normalize(&"ब".repeat(50)).is_ok(), "characters, not bytes");
        assert!(normalize(&"x".repeat(MAX_RAW_LEN + 1)).is_err());
    }

    #[test]
    fn forbidden_characters_are_refused() {
        for bad in ["a/bc", "ab?c", "#abc", "50%off", "ab\\c"] {
            let e = normalize(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        }
        assert!(normalize("BILL-2025_01 (Jaipur) #").is_err());
        assert!(normalize("BILL-2025_01 (Jaipur) & Co.").is_ok());
    }

    #[test]
    fn keys_compare_case_insensitively() {
        assert_eq!(key("Bill-7"), key("BILL-7"));
        assert_ne!(key("Bill-7"), key("Bill-8"));
        assert_eq!(
            normalize(" bill\u{200B}-7 ").map(|i| key(&i)),
            Ok(key("BILL-7"))
        );
    }
}
