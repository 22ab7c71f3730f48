//! Result workbooks: an import's per-row report as an `.xlsx` (rust_xlsxwriter, constant memory:
//! rows are written out as they come). Three sheets: `Summary` (the counts), `Done` (every row
//! imported as it stands) and `Problems` (sheet, row, code, message, value of every other row).
//! Shared by every import (labels now; bill workbooks the same way).

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use crate::import::LabelReport;
use crate::{BagKind, LabelImport, Problem};

/// One row that was imported as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneRow<'a> {
    pub sheet: &'a str,
    pub row: u32,
    /// The code on the row (a QR).
    pub value: &'a str,
    /// What the row was taken as (`parent`, `label`, …).
    pub what: &'a str,
    /// What it went into (a label's parent, a parent's bill), if anything.
    pub into: &'a str,
}

/// The MIME type of an `.xlsx` file.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Builds a result workbook. `done_into` names the `Done` sheet's last column ("Parent", "Bill").
pub fn result_workbook<'a>(
    summary: &[(&str, String)],
    done_into: &str,
    done: impl IntoIterator<Item = DoneRow<'a>>,
    problems: &[Problem],
) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let head = |sheet: &mut Worksheet, titles: &[&str], widths: &[f64]| -> Result<(), XlsxError> {
        for (c, (t, w)) in titles.iter().zip(widths).enumerate() {
            let c = c as u16;
            sheet.write_string_with_format(0, c, *t, &bold)?;
            sheet.set_column_width(c, *w)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(())
    };

    let sheet = book.add_worksheet_with_constant_memory()?;
    sheet.set_name("Summary")?;
    head(sheet, &["What", "Value"], &[32.0, 40.0])?;
    for (i, (k, v)) in summary.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, *k)?;
        match v.parse::<f64>() {
            Ok(n) if v.chars().all(|c| c.is_ascii_digit()) => sheet.write_number(r, 1, n)?,
            _ => sheet.write_string(r, 1, v)?,
        };
    }

    let sheet = book.add_worksheet_with_constant_memory()?;
    sheet.set_name("Done")?;
    head(
        sheet,
        &["Sheet", "Row", "Value", "Imported as", done_into],
        &[18.0, 8.0, 24.0, 14.0, 24.0],
    )?;
    for (i, d) in done.into_iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, d.sheet)?;
        sheet.write_number(r, 1, d.row)?;
        sheet.write_string(r, 2, d.value)?;
        sheet.write_string(r, 3, d.what)?;
        sheet.write_string(r, 4, d.into)?;
    }

    let sheet = book.add_worksheet_with_constant_memory()?;
    sheet.set_name("Problems")?;
    head(
        sheet,
        &["Sheet", "Row", "Code", "Message", "Value"],
        &[18.0, 8.0, 22.0, 60.0, 24.0],
    )?;
    for (i, p) in problems.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, &p.sheet)?;
        sheet.write_number(r, 1, p.row)?;
        sheet.write_string(r, 2, &p.code)?;
        sheet.write_string(r, 3, &p.message)?;
        sheet.write_string(r, 4, &p.value)?;
    }
    book.save_to_buffer()
}

impl LabelReport {
    /// This report as a result workbook; `parsed` is the workbook it is about (its rows that are
    /// in no problem are the ones done).
    pub fn to_xlsx(&self, parsed: &LabelImport) -> Result<Vec<u8>, XlsxError> {
        let c = &self.counts;
        let mut summary = vec![
            ("Area", self.area.clone()),
            ("Dry run (nothing written)", yes_no(self.dry_run)),
            ("Rows read", self.rows.to_string()),
            ("Parents in the file", self.parents_in_file.to_string()),
            ("Labels in the file", self.children_in_file.to_string()),
        ];
        if !self.dry_run {
            summary.extend([
                ("Parents created", c.parents_created.to_string()),
                ("Labels created", c.children_created.to_string()),
                ("Links made", c.links_created.to_string()),
                ("Already registered (unchanged)", c.unchanged.to_string()),
                ("Nothing changed", yes_no(self.nothing_new())),
            ]);
        }
        summary.push(("Rows with problems", self.problems.len().to_string()));
        let refused: std::collections::HashSet<(&str, u32)> = self
            .problems
            .iter()
            .map(|p| (p.sheet.as_str(), p.row))
            .collect();
        let done = parsed
            .bags
            .iter()
            .filter(|b| !refused.contains(&(b.sheet.as_str(), b.row)))
            .map(|b| DoneRow {
                sheet: &b.sheet,
                row: b.row,
                value: &b.qr,
                what: match b.kind {
                    BagKind::Parent => "parent",
                    BagKind::Child => "label",
                },
                into: b.parent_qr.as_deref().unwrap_or(""),
            });
        result_workbook(&summary, "Parent", done, &self.problems)
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}
