//! Label-printing workbooks (SPEC §5): every sheet of an `.xlsx` file, column A a serial number
//! ("Sr. No."), column B the scanned text. Label rows (child label texts such as
//! `LABEL NO.:0016586 LOT NO.:…`, reduced to the label number by `tracetrack_domain::qr`) are
//! followed by their parent's row; a parent holds 15 or 30 labels, as its product line says.
//!
//! How rows are read (the decisions, in one place):
//! - A row with nothing in columns A and B is skipped. Columns after B are ignored.
//! - **Parent row**: column A says "Parent Code" (any case or punctuation), or column B is a QR
//!   matching a product line's parent pattern while column A holds no serial number. A parent QR
//!   *with* a serial number is where a label should be (`qr_is_parent`), unless the labels above
//!   already fill the parent's capacity (some workbooks number their parent rows too).
//! - **Header row**: column A holds text that is neither a number nor "Parent Code" and column B
//!   is neither a parent QR nor a child label (e.g. `Sr. No. | QR Code`). Skipped, wherever it is.
//! - **Label row**: everything else. Its text must be a child label (`invalid_qr`,
//!   `qr_is_parent` otherwise).
//! - **Groups**: the label rows since the previous parent row (or the sheet's start) belong to the
//!   next parent row. Groups never cross sheets.
//!
//! What is reported and what is imported:
//! - Every reported label row is left out; every other label row of a group is imported and
//!   linked to the group's parent. So a corrected workbook can be imported again: what was
//!   imported is unchanged, what was left out is created and linked.
//! - A label that appeared earlier in the file is a duplicate (`invalid_argument`) and left out.
//! - Labels beyond the parent's capacity (in row order) are `parent_full`, each on its row.
//! - A group with fewer label rows than the capacity (or more rows than the capacity when the
//!   extra ones were bad anyway) is reported once on the parent's row (`invalid_argument`); the
//!   parent and its valid labels are still imported (a parent may be partly filled).
//! - A parent row whose QR is not a parent (`invalid_qr`, `qr_is_child`) is reported on its row,
//!   and its group is not imported: linking those labels needs the right parent.
//! - Label rows at the end of a sheet with no parent row after them are reported once, on the
//!   group's first row (`invalid_argument`), and not imported: imported unlinked they could not
//!   be linked by re-importing a corrected workbook (an import leaves existing bags alone).
//! - A parent QR that closes a second group is reported on that row (`invalid_argument`); the
//!   second group's labels still go into the same parent up to its capacity.

use std::collections::HashMap;
use std::io::Cursor;

use calamine::{Data, Range, Reader, Xlsx};
use serde::Serialize;
use tracetrack_domain::qr::{self, ProductLine, QrError};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1::{BagType, ImportBag};

/// A workbook that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    #[error("not a readable .xlsx workbook: {0}")]
    Unreadable(String),
    #[error("sheet {sheet:?} cannot be read: {message}")]
    Sheet { sheet: String, message: String },
}

/// Parent or child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BagKind {
    Parent,
    Child,
}

/// One bag to import, with the row it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelBag {
    pub qr: String,
    pub kind: BagKind,
    /// Children: the parent they go into.
    pub parent_qr: Option<String>,
    pub sheet: String,
    /// 1-based, as Excel numbers rows.
    pub row: u32,
}

impl LabelBag {
    /// The record bag-registry's ImportBags takes, in `area`.
    pub fn to_import(&self, area: &str) -> ImportBag {
        ImportBag {
            qr: self.qr.clone(),
            r#type: match self.kind {
                BagKind::Parent => BagType::Parent as i32,
                BagKind::Child => BagType::Child as i32,
            },
            area: area.to_owned(),
            parent_qr: self.parent_qr.clone().unwrap_or_default(),
        }
    }
}

/// A row that was not imported as it stands, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub sheet: String,
    /// 1-based row number.
    pub row: u32,
    /// The stable code (`tracetrack_domain::ErrorCode::as_str`).
    pub code: String,
    pub message: String,
    /// The text in column B (cut to 120 characters).
    pub value: String,
}

/// What a workbook holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelImport {
    /// In import order: each parent before its children.
    pub bags: Vec<LabelBag>,
    /// In sheet order, then row order.
    pub problems: Vec<Problem>,
    /// Sheet names in workbook order.
    pub sheets: Vec<String>,
    /// Non-empty rows read (headers included).
    pub rows: u64,
}

impl LabelImport {
    pub fn parents(&self) -> usize {
        self.bags
            .iter()
            .filter(|b| b.kind == BagKind::Parent)
            .count()
    }

    pub fn children(&self) -> usize {
        self.bags.len() - self.parents()
    }

    /// Sorts problems by sheet (workbook order), then row.
    pub fn sort_problems(problems: &mut [Problem], sheets: &[String]) {
        let pos = |s: &str| sheets.iter().position(|n| n == s).unwrap_or(usize::MAX);
        problems.sort_by_key(|p| (pos(&p.sheet), p.row));
    }
}

/// Parses a label-printing workbook (every sheet) against the product lines in force.
pub fn parse_workbook(bytes: &[u8], lines: &[ProductLine]) -> Result<LabelImport, WorkbookError> {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e: calamine::XlsxError| WorkbookError::Unreadable(e.to_string()))?;
    let mut parser = Parser::new(lines);
    for name in book.sheet_names() {
        let range = book
            .worksheet_range(&name)
            .map_err(|e| WorkbookError::Sheet {
                sheet: name.clone(),
                message: e.to_string(),
            })?;
        parser.out.sheets.push(name.clone());
        parser.sheet(&name, &range);
    }
    Ok(parser.out)
}

/// What column A says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnA {
    Empty,
    Serial,
    ParentMarker,
    Text,
}

fn column_a(cell: Option<&Data>) -> ColumnA {
    match cell {
        None | Some(Data::Empty) => ColumnA::Empty,
        Some(Data::Int(_) | Data::Float(_)) => ColumnA::Serial,
        Some(other) => {
            let text = other.to_string();
            let text = text.trim();
            if text.is_empty() {
                ColumnA::Empty
            } else if text.parse::<f64>().is_ok() {
                ColumnA::Serial
            } else {
                let squashed: String = text
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect();
                if squashed == "parentcode" {
                    ColumnA::ParentMarker
                } else {
                    ColumnA::Text
                }
            }
        }
    }
}

/// A cell's text: integral numbers without a decimal point (a label number typed as a number
/// has lost its leading zeros, which cannot be recovered).
fn cell_text(cell: Option<&Data>) -> String {
    match cell {
        None | Some(Data::Empty) => String::new(),
        Some(Data::Float(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(other) => other.to_string(),
    }
}

fn shown(value: &str) -> String {
    value.trim().chars().take(120).collect()
}

struct LabelRow {
    row: u32,
    value: String,
    id: Result<String, QrError>,
}

struct ParentSeen {
    sheet: String,
    row: u32,
    capacity: i32,
    linked: i32,
}

struct Parser<'a> {
    lines: &'a [ProductLine],
    out: LabelImport,
    /// Children imported so far: where each came from.
    children: HashMap<String, (String, u32)>,
    parents: HashMap<String, ParentSeen>,
}

impl<'a> Parser<'a> {
    fn new(lines: &'a [ProductLine]) -> Self {
        Self {
            lines,
            out: LabelImport::default(),
            children: HashMap::new(),
            parents: HashMap::new(),
        }
    }

    fn problem(&mut self, sheet: &str, row: u32, code: ErrorCode, message: String, value: &str) {
        self.out.problems.push(Problem {
            sheet: sheet.to_owned(),
            row,
            code: code.as_str().to_owned(),
            message,
            value: shown(value),
        });
    }

    fn sheet(&mut self, sheet: &str, range: &Range<Data>) {
        let (Some(start), Some(end)) = (range.start(), range.end()) else {
            return;
        };
        let mut group: Vec<LabelRow> = Vec::new();
        for r in start.0..=end.0 {
            let a_cell = range.get_value((r, 0));
            let b_cell = range.get_value((r, 1));
            let a = column_a(a_cell);
            let b = cell_text(b_cell);
            if a == ColumnA::Empty && b.trim().is_empty() {
                continue;
            }
            self.out.rows += 1;
            let row = r + 1;
            let as_parent = qr::parent_id(&b, self.lines).ok();
            let is_parent_row = match (a, &as_parent) {
                (ColumnA::ParentMarker, _) => true,
                (ColumnA::Serial, Some((_, line))) => group.len() >= line.capacity.max(0) as usize,
                (_, Some(_)) => true,
                _ => false,
            };
            if is_parent_row {
                let parent = qr::parent_id(&b, self.lines).map(|(id, line)| (id, line.capacity));
                self.close_group(sheet, row, &b, parent, std::mem::take(&mut group));
                continue;
            }
            let id = qr::child_id(&b, self.lines);
            if a == ColumnA::Text && id.is_err() {
                // A header (`Sr. No. | QR Code`) or a note: not a label.
                continue;
            }
            group.push(LabelRow { row, value: b, id });
        }
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            let (first_row, last_row, value) = (first.row, last.row, first.value.clone());
            self.problem(
                sheet,
                first_row,
                ErrorCode::InvalidArgument,
                format!(
                    "rows {first_row}-{last_row}: {} label rows at the end of the sheet have no parent row after them; not imported",
                    group.len()
                ),
                &value,
            );
        }
    }

    fn close_group(
        &mut self,
        sheet: &str,
        row: u32,
        value: &str,
        parent: Result<(String, i32), QrError>,
        group: Vec<LabelRow>,
    ) {
        let span = match (group.first(), group.last()) {
            (Some(f), Some(l)) => format!(
                "the {} label rows above (rows {}-{})",
                group.len(),
                f.row,
                l.row
            ),
            _ => "no label rows".to_owned(),
        };
        let (parent_qr, capacity) = match parent {
            Ok(p) => p,
            Err(e) => {
                let message = if group.is_empty() {
                    e.message.to_owned()
                } else {
                    format!("{}; {span} are not imported", e.message)
                };
                self.problem(sheet, row, e.code, message, value);
                return;
            }
        };
        let again = self
            .parents
            .get(&parent_qr)
            .map(|p| (p.sheet.clone(), p.row));
        match &again {
            Some((first_sheet, first_row)) => {
                self.problem(
                    sheet,
                    row,
                    ErrorCode::InvalidArgument,
                    format!(
                        "{parent_qr} already closed the group at sheet {first_sheet:?} row {first_row}; {span} go into it as far as it has room"
                    ),
                    value,
                );
            }
            None => {
                self.parents.insert(
                    parent_qr.clone(),
                    ParentSeen {
                        sheet: sheet.to_owned(),
                        row,
                        capacity,
                        linked: 0,
                    },
                );
                self.out.bags.push(LabelBag {
                    qr: parent_qr.clone(),
                    kind: BagKind::Parent,
                    parent_qr: None,
                    sheet: sheet.to_owned(),
                    row,
                });
            }
        }
        let rows = group.len();
        let mut overflowed = false;
        for label in group {
            let id = match label.id {
                Ok(id) => id,
                Err(e) => {
                    self.problem(sheet, label.row, e.code, e.message.to_owned(), &label.value);
                    continue;
                }
            };
            if let Some((s, r)) = self.children.get(&id).cloned() {
                self.problem(
                    sheet,
                    label.row,
                    ErrorCode::InvalidArgument,
                    format!("label {id} is a duplicate of sheet {s:?} row {r}"),
                    &label.value,
                );
                continue;
            }
            let Some(p) = self.parents.get_mut(&parent_qr) else {
                continue;
            };
            if p.linked >= p.capacity {
                overflowed = true;
                let message = format!(
                    "{parent_qr} already holds {} labels, its capacity; label {id} is not imported",
                    p.capacity
                );
                self.problem(
                    sheet,
                    label.row,
                    ErrorCode::ParentFull,
                    message,
                    &label.value,
                );
                continue;
            }
            p.linked += 1;
            self.children
                .insert(id.clone(), (sheet.to_owned(), label.row));
            self.out.bags.push(LabelBag {
                qr: id,
                kind: BagKind::Child,
                parent_qr: Some(parent_qr.clone()),
                sheet: sheet.to_owned(),
                row: label.row,
            });
        }
        let capacity_rows = capacity.max(0) as usize;
        if again.is_none() && !overflowed && rows != capacity_rows {
            self.problem(
                sheet,
                row,
                ErrorCode::InvalidArgument,
                format!(
                    "{parent_qr} follows {rows} label rows, but a parent of its line holds {capacity}; imported with its valid labels"
                ),
                value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rust_xlsxwriter::Workbook;

    enum Cell<'a> {
        N(f64),
        S(&'a str),
        E,
    }
    use Cell::{E, N, S};

    fn book(sheets: &[(&str, Vec<(Cell, Cell)>)]) -> Vec<u8> {
        let mut wb = Workbook::new();
        for (name, rows) in sheets {
            let ws = wb.add_worksheet();
            ws.set_name(*name).unwrap();
            for (i, (a, b)) in rows.iter().enumerate() {
                for (col, cell) in [(0u16, a), (1u16, b)] {
                    match cell {
                        N(n) => {
                            ws.write_number(i as u32, col, *n).unwrap();
                        }
                        S(s) => {
                            ws.write_string(i as u32, col, *s).unwrap();
                        }
                        E => {}
                    }
                }
            }
        }
        wb.save_to_buffer().unwrap()
    }

    fn label(n: u32) -> String {
        format!("LABEL NO.:{n:07} LOT NO.:STAR44GG24611, D.O.T.:30/09/2025")
    }

    fn codes(p: &[Problem]) -> Vec<(String, u32, String)> {
        p.iter()
            .map(|p| (p.sheet.clone(), p.row, p.code.clone()))
            .collect()
    }

    #[test]
    fn a_moong_group_then_a_parent_code_row() {
        let labels: Vec<String> = (1..=15).map(label).collect();
        let mut rows = vec![(S("Sr. No."), S("QR Code"))];
        for (i, l) in labels.iter().enumerate() {
            rows.push((N(i as f64 + 1.0), S(l)));
        }
        rows.push((S("Parent Code"), S("m444-00001")));
        let out = parse_workbook(&book(&[("Day 1", rows)]), &ProductLine::defaults()).unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(out.parents(), 1);
        assert_eq!(out.children(), 15);
        assert_eq!(out.bags[0].qr, "M444-00001");
        assert_eq!(out.bags[0].row, 17);
        assert_eq!(out.bags[1].qr, "0000001");
        assert_eq!(out.bags[1].parent_qr.as_deref(), Some("M444-00001"));
        assert_eq!(out.bags[1].row, 2);
        assert_eq!(out.rows, 17);
    }

    #[test]
    fn short_long_and_orphan_groups() {
        let lines = ProductLine::defaults();
        let mut rows = vec![];
        // 14 labels then a moong parent with no serial: short group.
        for i in 1..=14 {
            rows.push((N(i as f64), S(Box::leak(label(i).into_boxed_str()))));
        }
        rows.push((E, S("M444-00002")));
        // 16 labels then a moong parent: the 16th is parent_full.
        for i in 101..=116 {
            rows.push((N(i as f64), S(Box::leak(label(i).into_boxed_str()))));
        }
        rows.push((S("Parent Code"), S("M444-00003")));
        // A serial-numbered parent QR inside a group, then 2 more labels, no parent.
        rows.push((N(1.0), S(Box::leak(label(201).into_boxed_str()))));
        rows.push((N(2.0), S("SB00009")));
        rows.push((N(3.0), S(Box::leak(label(1).into_boxed_str()))));
        let out = parse_workbook(&book(&[("S", rows)]), &lines).unwrap();
        assert_eq!(
            codes(&out.problems),
            vec![
                ("S".into(), 15, "invalid_argument".into()),
                ("S".into(), 31, "parent_full".into()),
                ("S".into(), 33, "invalid_argument".into()),
            ],
            "{:#?}",
            out.problems
        );
        assert_eq!(out.parents(), 2);
        assert_eq!(out.children(), 14 + 15);
    }

    #[test]
    fn bad_labels_duplicates_and_bad_parents() {
        let lines = ProductLine::defaults();
        let l1 = label(1);
        let mut rows = vec![(S("Sr. No."), S("Scanned text"))];
        rows.push((N(1.0), S(&l1)));
        rows.push((N(2.0), S("LABEL NO.:<12>")));
        rows.push((N(3.0), S(&l1)));
        rows.push((N(4.0), S("SB00001")));
        rows.push((S("Parent Code"), S("0016586")));
        let out = parse_workbook(&book(&[("Sheet1", rows)]), &lines).unwrap();
        assert_eq!(
            codes(&out.problems),
            vec![("Sheet1".into(), 6, "qr_is_child".into())],
            "{:#?}",
            out.problems
        );
        assert!(out.bags.is_empty());

        let rows = vec![
            (N(1.0), S(l1.as_str())),
            (N(2.0), S("LABEL NO.:<12>")),
            (N(3.0), S(l1.as_str())),
            (N(4.0), S("SB00001")),
            (E, S("M444-00001")),
        ];
        let out = parse_workbook(&book(&[("Sheet1", rows)]), &lines).unwrap();
        assert_eq!(
            codes(&out.problems),
            vec![
                ("Sheet1".into(), 2, "invalid_qr".into()),
                ("Sheet1".into(), 3, "invalid_argument".into()),
                ("Sheet1".into(), 4, "qr_is_parent".into()),
                ("Sheet1".into(), 5, "invalid_argument".into()),
            ],
            "{:#?}",
            out.problems
        );
        assert_eq!(out.children(), 1);
    }

    #[test]
    fn a_parent_used_twice_fills_up_to_capacity() {
        let lines = ProductLine::defaults();
        let mut rows = vec![];
        for i in 1..=10 {
            rows.push((N(i as f64), S(Box::leak(label(i).into_boxed_str()))));
        }
        rows.push((E, S("M444-00005")));
        for i in 11..=20 {
            rows.push((N(i as f64), S(Box::leak(label(i).into_boxed_str()))));
        }
        rows.push((E, S("M444-00005")));
        let out = parse_workbook(&book(&[("A", rows)]), &lines).unwrap();
        let c = codes(&out.problems);
        assert_eq!(c[0], ("A".into(), 11, "invalid_argument".into()));
        assert_eq!(c[1], ("A".into(), 22, "invalid_argument".into()));
        assert_eq!(c[2..].len(), 5);
        assert!(c[2..].iter().all(|p| p.2 == "parent_full"));
        assert_eq!(out.parents(), 1);
        assert_eq!(out.children(), 15);
    }

    #[test]
    fn not_a_workbook() {
        assert!(parse_workbook(b"hello", &ProductLine::defaults()).is_err());
    }
}
