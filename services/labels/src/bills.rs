//! Bill workbooks (issue 16 §3): parents loaded onto trucks, every sheet of an `.xlsx` file.
//! Column A a serial number ("Sr. No."), column B a parent's QR; after a bill's parent rows, a
//! row whose column A says "Bill" (any case or punctuation; "Bill No." and "Bill Id" too) and
//! whose column B holds the bill id.
//!
//! How rows are read (the decisions, in one place; the archive checks and limits are the label
//! workbook's, [`crate::parse_workbook`]):
//! - A row with nothing in columns A and B is skipped. A **header row** (column A text that is
//!   neither a number nor "Bill", column B neither a parent QR nor a child label, e.g.
//!   `Sr. No. | QR Code`) is skipped, wherever it is.
//! - A **bill row** may say more in the columns after B: C the capacity (a whole number 1-500),
//!   D the destination, E the vehicle number, F a description. They are used only when the
//!   import **creates** the bill; an existing bill is never changed by an import (so a re-run
//!   changes nothing). Without a capacity a new bill's capacity is the number of its parent rows
//!   in the file (at most 500; parents past the capacity are refused `bill_full`, each on its row).
//! - Every other row is a **parent row**: its column B is read as a scan reads a QR
//!   (`tracetrack_domain::qr::normalize`); whether it is a parent, registered, free is decided
//!   by billing and bag-registry exactly as for a scan (`bag_not_found`, `not_a_parent`,
//!   `on_other_bill` with the bill, `bill_full`, …), each reported on its row.
//! - **Groups**: the parent rows since the previous bill row (or the sheet's start) go onto the
//!   next bill row's bill. Groups never cross sheets. Two bill rows with the same id (compared
//!   case-insensitively) are one bill: their parents together (a truck spread over two sheets);
//!   the first row that gives a capacity, destination, … is the one used, and a later row that
//!   gives another value is reported (`invalid_argument`) and its parents still loaded.
//!
//! What is reported (`Problem`s, by sheet and row) and left out:
//! - A parent row whose text cannot be a QR (`invalid_qr`, `qr`'s code), or whose QR appeared
//!   earlier in the file (`invalid_argument`, naming the first row).
//! - A bill row whose id is not a valid bill id, or whose capacity is not 1-500
//!   (`invalid_argument`): its group is left out (loading it needs the right bill).
//! - A bill row with no parent rows above it (`invalid_argument`), unless its bill got parents
//!   from an earlier row.
//! - Parent rows at the end of a sheet with no bill row after them: reported once, on the
//!   group's first row (`invalid_argument`), and left out.

use std::collections::HashMap;

use serde::Serialize;
use tracetrack_domain::qr::{self, ProductLine};
use tracetrack_domain::{bill, ErrorCode};

use crate::{each_sheet, shown, ColumnA, Problem, SheetRow, WorkbookError, MAX_ROWS};

/// A bill's largest capacity (billing's rule).
pub const MAX_CAPACITY: i32 = 500;

/// One parent row to load, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentRow {
    /// Normalised, as a scan would send it.
    pub qr: String,
    pub sheet: String,
    /// 1-based.
    pub row: u32,
}

/// One bill of the workbook and its parents in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BillGroup {
    /// Sanitised, as entered on its first bill row.
    pub bill_id: String,
    /// Its first bill row.
    pub sheet: String,
    pub row: u32,
    /// What a new bill is created with (columns C-F of its bill rows).
    pub capacity: Option<i32>,
    pub destination: Option<String>,
    pub vehicle_number: Option<String>,
    pub description: Option<String>,
    pub parents: Vec<ParentRow>,
}

impl BillGroup {
    /// The capacity a new bill gets: the row's, else its parents' number (1-500).
    pub fn capacity_for_new(&self) -> i32 {
        self.capacity.unwrap_or_else(|| {
            i32::try_from(self.parents.len())
                .unwrap_or(MAX_CAPACITY)
                .clamp(1, MAX_CAPACITY)
        })
    }
}

/// What a bill workbook holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BillImport {
    /// In the order their first bill row comes.
    pub bills: Vec<BillGroup>,
    /// In sheet order, then row order.
    pub problems: Vec<Problem>,
    /// Sheet names in workbook order.
    pub sheets: Vec<String>,
    /// Non-empty rows read (headers included).
    pub rows: u64,
}

impl BillImport {
    /// Parent rows to load, all bills together.
    pub fn parents(&self) -> usize {
        self.bills.iter().map(|b| b.parents.len()).sum()
    }
}

/// Parses a bill workbook (every sheet); `lines` are the product lines in force (they tell a
/// header row from a parent row).
pub fn parse_bill_workbook(
    bytes: &[u8],
    lines: &[ProductLine],
) -> Result<BillImport, WorkbookError> {
    let mut parser = BillParser {
        lines,
        out: BillImport::default(),
        seen: HashMap::new(),
        by_key: HashMap::new(),
        max_rows: MAX_ROWS,
    };
    let sheets = each_sheet(bytes, 5, |name, rows| parser.sheet(name, rows))?;
    parser.out.sheets = sheets;
    Ok(parser.out)
}

struct BillParser<'a> {
    lines: &'a [ProductLine],
    out: BillImport,
    /// Parent QRs taken so far: where each was.
    seen: HashMap<String, (String, u32)>,
    /// Bill key → index in `out.bills`.
    by_key: HashMap<String, usize>,
    max_rows: u64,
}

/// A field of a bill row: what the row says, if anything.
fn field(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

impl BillParser<'_> {
    fn problem(&mut self, sheet: &str, row: u32, code: ErrorCode, message: String, value: &str) {
        self.out.problems.push(Problem {
            sheet: sheet.to_owned(),
            row,
            code: code.as_str().to_owned(),
            message,
            value: shown(value),
            other_bill_id: None,
        });
    }

    fn sheet(
        &mut self,
        sheet: &str,
        rows: &mut dyn Iterator<Item = Result<SheetRow, WorkbookError>>,
    ) -> Result<(), WorkbookError> {
        let mut group: Vec<ParentRow> = Vec::new();
        for r in rows {
            let r = r?;
            if r.a == ColumnA::Empty && r.b.trim().is_empty() {
                continue;
            }
            if self.out.rows >= self.max_rows {
                return Err(WorkbookError::TooLarge {
                    what: "the number of non-empty rows",
                    limit: format!("{} rows", self.max_rows),
                });
            }
            self.out.rows += 1;
            let row = r.index + 1;
            if r.a == ColumnA::BillMarker {
                self.bill_row(sheet, row, &r, std::mem::take(&mut group));
                continue;
            }
            let is_header = r.a == ColumnA::Text
                && qr::parent_id(&r.b, self.lines).is_err()
                && qr::child_id(&r.b, self.lines).is_err();
            if is_header {
                continue;
            }
            match qr::normalize(&r.b) {
                Err(e) => self.problem(sheet, row, e.code, e.message.to_owned(), &r.b),
                Ok(id) => match self.seen.get(&id) {
                    Some((first_sheet, first_row)) => {
                        let message = format!(
                            "this parent appears earlier in the file ({first_sheet} row {first_row}); left out"
                        );
                        self.problem(sheet, row, ErrorCode::InvalidArgument, message, &r.b);
                    }
                    None => {
                        self.seen.insert(id.clone(), (sheet.to_owned(), row));
                        group.push(ParentRow {
                            qr: id,
                            sheet: sheet.to_owned(),
                            row,
                        });
                    }
                },
            }
        }
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            let (first_row, last_row, value) = (first.row, last.row, first.qr.clone());
            self.problem(
                sheet,
                first_row,
                ErrorCode::InvalidArgument,
                format!(
                    "rows {first_row}-{last_row}: {} parent rows at the end of the sheet have no Bill row after them; not imported",
                    group.len()
                ),
                &value,
            );
        }
        Ok(())
    }

    fn bill_row(&mut self, sheet: &str, row: u32, r: &SheetRow, group: Vec<ParentRow>) {
        let left_out = |n: usize| {
            if n == 0 {
                String::new()
            } else {
                format!("; the {n} parent rows above are not imported")
            }
        };
        let id = match bill::normalize(&r.b) {
            Ok(id) => id,
            Err(e) => {
                let message = format!("{}{}", e.message, left_out(group.len()));
                self.problem(sheet, row, e.code, message, &r.b);
                return;
            }
        };
        let [capacity, destination, vehicle, description] = r.extra.clone();
        let capacity = match field(&capacity) {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(c) if c.fract() == 0.0 && (1.0..=f64::from(MAX_CAPACITY)).contains(&c) => {
                    Some(c as i32)
                }
                _ => {
                    let message = format!(
                        "the capacity (column C) is a whole number from 1 to {MAX_CAPACITY}, not {text:?}{}",
                        left_out(group.len())
                    );
                    self.problem(sheet, row, ErrorCode::InvalidArgument, message, &r.b);
                    return;
                }
            },
        };
        let row_says = BillGroup {
            bill_id: id.clone(),
            sheet: sheet.to_owned(),
            row,
            capacity,
            destination: field(&destination),
            vehicle_number: field(&vehicle),
            description: field(&description),
            parents: Vec::new(),
        };
        let key = bill::key(&id);
        let Some(&at) = self.by_key.get(&key) else {
            if group.is_empty() {
                self.problem(
                    sheet,
                    row,
                    ErrorCode::InvalidArgument,
                    "no parent rows above this Bill row".to_owned(),
                    &r.b,
                );
                return;
            }
            self.by_key.insert(key, self.out.bills.len());
            self.out.bills.push(BillGroup {
                parents: group,
                ..row_says
            });
            return;
        };
        // The same bill again: its parents join the first group; the first values stand.
        let mut differs = Vec::new();
        let first = &mut self.out.bills[at];
        first.parents.extend(group);
        merge(
            &mut first.capacity,
            row_says.capacity,
            "capacity",
            &mut differs,
        );
        merge(
            &mut first.destination,
            row_says.destination,
            "destination",
            &mut differs,
        );
        merge(
            &mut first.vehicle_number,
            row_says.vehicle_number,
            "vehicle number",
            &mut differs,
        );
        merge(
            &mut first.description,
            row_says.description,
            "description",
            &mut differs,
        );
        if !differs.is_empty() {
            let (first_sheet, first_row) = (first.sheet.clone(), first.row);
            let message = format!(
                "this bill's {} differs from its first Bill row ({first_sheet} row {first_row}), which is the one used; its parents are imported",
                differs.join(", ")
            );
            self.problem(sheet, row, ErrorCode::InvalidArgument, message, &r.b);
        }
    }
}

/// Takes `later` when nothing was given before; notes `what` when both were given and differ.
fn merge<T: PartialEq>(
    first: &mut Option<T>,
    later: Option<T>,
    what: &str,
    differs: &mut Vec<String>,
) {
    match (first.as_ref(), later) {
        (None, later) => *first = later,
        (Some(a), Some(b)) if *a != b => differs.push(what.to_owned()),
        _ => {}
    }
}

/// What happened to one bill of the workbook.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BillOutcome {
    pub bill_id: String,
    /// Its first bill row.
    pub sheet: String,
    pub row: u32,
    /// Created by this import (else it existed: left as it was).
    pub created: bool,
    /// The bill after the import.
    pub status: String,
    pub capacity: i32,
    pub parent_count: i32,
    /// Parents attached by this import.
    pub attached: u64,
    /// Parents that were on this bill already.
    pub already_attached: u64,
    /// Parent rows refused (each in `problems`).
    pub refused: u64,
}

/// One parent row that is on its bill after the import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoneParent {
    pub sheet: String,
    pub row: u32,
    pub qr: String,
    pub bill_id: String,
    /// Attached now, or on this bill already (a re-run).
    pub already_attached: bool,
}

/// What importing a bill workbook did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BillReport {
    /// Parsed only: nothing was sent.
    pub dry_run: bool,
    /// Non-empty rows read.
    pub rows: u64,
    pub bills_in_file: u64,
    pub parents_in_file: u64,
    pub bills_created: u64,
    pub attached: u64,
    pub already_attached: u64,
    pub bills: Vec<BillOutcome>,
    /// Every parent row on its bill after the import, in file order.
    pub done: Vec<DoneParent>,
    /// Every row not imported as it stands (the workbook's, billing's and bag-registry's), by
    /// sheet and row.
    pub problems: Vec<Problem>,
}

impl BillReport {
    /// The report of a dry run: what the workbook holds, nothing sent.
    pub fn dry_run(parsed: &BillImport) -> Self {
        Self {
            dry_run: true,
            rows: parsed.rows,
            bills_in_file: parsed.bills.len() as u64,
            parents_in_file: parsed.parents() as u64,
            problems: parsed.problems.clone(),
            ..Self::default()
        }
    }

    /// A report to fill in as the bills are sent.
    pub fn start(parsed: &BillImport) -> Self {
        Self {
            dry_run: false,
            ..Self::dry_run(parsed)
        }
    }

    /// True when the import created no bill and attached no parent (a re-run).
    pub fn nothing_changed(&self) -> bool {
        self.bills_created == 0 && self.attached == 0
    }

    /// Sorts the problems by sheet (workbook order), then row.
    pub fn finish(&mut self, parsed: &BillImport) {
        crate::LabelImport::sort_problems(&mut self.problems, &parsed.sheets);
        let pos = |s: &str| {
            parsed
                .sheets
                .iter()
                .position(|n| n == s)
                .unwrap_or(usize::MAX)
        };
        self.done.sort_by_key(|d| (pos(&d.sheet), d.row));
    }

    /// This report as a result workbook: `Summary`, `Done` (every parent row on its bill, as
    /// attached or already on this bill, and each bill row as created or existing), `Problems`.
    pub fn to_xlsx(&self) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut summary = vec![
            ("Dry run (nothing written)", yes_no(self.dry_run)),
            ("Rows read", self.rows.to_string()),
            ("Bills in the file", self.bills_in_file.to_string()),
            ("Parents in the file", self.parents_in_file.to_string()),
        ];
        if !self.dry_run {
            summary.extend([
                ("Bills created", self.bills_created.to_string()),
                ("Parents attached", self.attached.to_string()),
                (
                    "Already on their bill (unchanged)",
                    self.already_attached.to_string(),
                ),
                ("Nothing changed", yes_no(self.nothing_changed())),
            ]);
        }
        summary.push(("Rows with problems", self.problems.len().to_string()));
        let bills = self.bills.iter().map(|b| crate::report::DoneRow {
            sheet: &b.sheet,
            row: b.row,
            value: &b.bill_id,
            what: if b.created {
                "bill (created)"
            } else {
                "bill (existing)"
            },
            into: "",
        });
        let parents = self.done.iter().map(|d| crate::report::DoneRow {
            sheet: &d.sheet,
            row: d.row,
            value: &d.qr,
            what: if d.already_attached {
                "already on this bill"
            } else {
                "attached"
            },
            into: &d.bill_id,
        });
        crate::report::result_workbook(&summary, "Bill", bills.chain(parents), &self.problems)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rust_xlsxwriter::Workbook;

    use super::*;

    fn codes(p: &[Problem]) -> Vec<(String, u32, String)> {
        p.iter()
            .map(|p| (p.sheet.clone(), p.row, p.code.clone()))
            .collect()
    }

    #[test]
    fn groups_bills_overrides_and_every_reported_row() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.set_name("Truck 1").unwrap();
        ws.write_string(0, 0, "Sr. No.").unwrap();
        ws.write_string(0, 1, "QR Code").unwrap();
        for i in 0..3u32 {
            ws.write_number(i + 1, 0, f64::from(i + 1)).unwrap();
            ws.write_string(i + 1, 1, format!("sb1000{i}")).unwrap();
        }
        // Row 5: a torn code; row 6: SB10000 again.
        ws.write_number(4, 0, 4.0).unwrap();
        ws.write_string(4, 1, "SB<torn>").unwrap();
        ws.write_number(5, 0, 5.0).unwrap();
        ws.write_string(5, 1, "SB10000").unwrap();
        ws.write_string(6, 0, "Bill").unwrap();
        ws.write_string(6, 1, "  TRK-1 ").unwrap();
        ws.write_number(6, 2, 10.0).unwrap();
        ws.write_string(6, 3, "Jaipur").unwrap();
        ws.write_string(6, 4, "RJ14 1234").unwrap();
        // A second truck with a bad capacity, then one with no parents.
        ws.write_string(7, 1, "SB10010").unwrap();
        ws.write_string(8, 0, "BILL NO.").unwrap();
        ws.write_string(8, 1, "TRK-2").unwrap();
        ws.write_string(8, 2, "many").unwrap();
        ws.write_string(9, 0, "bill").unwrap();
        ws.write_string(9, 1, "TRK-3").unwrap();
        let ws = wb.add_worksheet();
        ws.set_name("Truck 1 (more)").unwrap();
        ws.write_number(0, 0, 1.0).unwrap();
        ws.write_string(0, 1, "M444-00001").unwrap();
        ws.write_string(1, 0, "Bill").unwrap();
        ws.write_string(1, 1, "trk-1").unwrap();
        ws.write_number(1, 2, 12.0).unwrap();
        ws.write_string(2, 1, "SB10020").unwrap();
        let out =
            parse_bill_workbook(&wb.save_to_buffer().unwrap(), &ProductLine::defaults()).unwrap();
        assert_eq!(out.sheets, ["Truck 1", "Truck 1 (more)"]);
        assert_eq!(out.rows, 13);
        assert_eq!(out.bills.len(), 1, "{:?}", out.bills);
        let b = &out.bills[0];
        assert_eq!(
            (b.bill_id.as_str(), b.sheet.as_str(), b.row, b.capacity),
            ("TRK-1", "Truck 1", 7, Some(10))
        );
        assert_eq!(b.destination.as_deref(), Some("Jaipur"));
        assert_eq!(b.vehicle_number.as_deref(), Some("RJ14 1234"));
        assert_eq!(b.description, None);
        let parents: Vec<_> = b
            .parents
            .iter()
            .map(|p| (p.qr.as_str(), p.sheet.as_str(), p.row))
            .collect();
        assert_eq!(
            parents,
            [
                ("SB10000", "Truck 1", 2),
                ("SB10001", "Truck 1", 3),
                ("SB10002", "Truck 1", 4),
                ("M444-00001", "Truck 1 (more)", 1),
            ]
        );
        let t = |s: &str, r: u32, c: &str| (s.to_owned(), r, c.to_owned());
        assert_eq!(
            codes(&out.problems),
            [
                t("Truck 1", 5, "invalid_qr"),
                t("Truck 1", 6, "invalid_argument"),
                t("Truck 1", 9, "invalid_argument"),
                t("Truck 1", 10, "invalid_argument"),
                t("Truck 1 (more)", 2, "invalid_argument"),
                t("Truck 1 (more)", 3, "invalid_argument"),
            ]
        );
        assert!(out.problems[1].message.contains("Truck 1 row 2"));
        assert!(out.problems[2].message.contains("1 parent rows above"));
        assert!(out.problems[4].message.contains("capacity"));
        assert!(out.problems[5].message.contains("no Bill row after them"));
        assert_eq!(b.capacity_for_new(), 10);
    }

    #[test]
    fn a_new_bills_capacity_is_its_parents_up_to_500() {
        let mut g = BillGroup::default();
        assert_eq!(g.capacity_for_new(), 1);
        for i in 0..700 {
            g.parents.push(ParentRow {
                qr: format!("SB{i:05}"),
                sheet: "S".into(),
                row: i,
            });
        }
        assert_eq!(g.capacity_for_new(), 500);
        g.parents.truncate(42);
        assert_eq!(g.capacity_for_new(), 42);
    }
}
