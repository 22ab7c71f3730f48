//! The bill's QR code as inline SVG (the `qrcode` crate's renderer, one unit per module, sized by
//! the page's CSS): drawn by the server, so printing needs no internet.

use maud::{Markup, PreEscaped};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// What `encodeURIComponent` leaves alone stays (a short code scans more easily), the rest is
/// percent-encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What the QR code of a bill says: its page under `public_base_url` when one is configured,
/// otherwise the bill id alone.
pub fn payload(public_base_url: &str, bill_id: &str) -> String {
    let base = public_base_url.trim_end_matches('/');
    if base.is_empty() {
        bill_id.to_owned()
    } else {
        let id = percent_encoding::utf8_percent_encode(bill_id, COMPONENT);
        format!("{base}/#/bills/{id}")
    }
}

/// `text` as an SVG QR code (error correction M: a printed label survives a scuff), or nothing
/// if it is too long for a QR code (a bill id and a URL never are).
pub fn svg(text: &str) -> Option<Markup> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .module_dimensions(1, 1)
        .quiet_zone(true)
        .build();
    // The renderer's output holds only numbers and its own colours (never `text`): markup we
    // trust, without the XML declaration an HTML page has no use for.
    let start = image.find("<svg").unwrap_or(0);
    Some(PreEscaped(image[start..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_the_id_or_its_page() {
        assert_eq!(payload("", "BILL-1"), "BILL-1");
        assert_eq!(
            payload("https://tt.example.in/", "BILL-1 2/3"),
            "https://tt.example.in/#/bills/BILL-1%202%2F3"
        );
    }

    #[test]
    fn svg_is_one_element() {
        let s = svg("BILL-1").map(|m| m.into_string()).unwrap_or_default();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{s}");
    }
}
