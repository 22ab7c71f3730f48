//! Workbooks for tests: this crate's own and the hostile uploads of
//! `tests/tests/import_limits.rs` (feature `fixtures`), so both read the same file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rust_xlsxwriter::Workbook;

/// A label's QR text as the printers write it: label number `n`, the same lot.
pub fn label(n: u32) -> String {
    format!("LABEL NO.:{n:07} LOT NO.:STAR44GG24611, D.O.T.:30/09/2025")
}

/// One moong group (15 labels, then its parent `M444-00001`) and a cell at XFD1048576, the last
/// cell a sheet can have (a dense range would be 1,048,576 x 16,384 cells): under 10 KB.
pub fn far_cell_workbook() -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Sr. No.").unwrap();
    ws.write_string(0, 1, "QR Code").unwrap();
    for i in 1..=15u32 {
        ws.write_number(i, 0, f64::from(i)).unwrap();
        ws.write_string(i, 1, label(i)).unwrap();
    }
    ws.write_string(16, 0, "Parent Code").unwrap();
    ws.write_string(16, 1, "M444-00001").unwrap();
    ws.write_string(1_048_575, 16_383, "far away").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    assert!(bytes.len() < 10_000, "{}", bytes.len());
    bytes
}
