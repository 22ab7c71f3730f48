//! Label-printing workbooks (SPEC §5): every sheet of an `.xlsx` file, column A a serial number
//! ("Sr. No."), column B the scanned text. Label rows (child label texts such as
//! `LABEL NO.:0016586 LOT NO.:…`, reduced to the label number by `tracetrack_domain::qr`) are
//! followed by their parent's row; a parent holds 15 or 30 labels, as its product line says.
//!
//! How rows are read (the decisions, in one place):
//! - A row with nothing in columns A and B is skipped. Columns after B are ignored (never held:
//!   the cells are streamed, so a cell at `XFD1048576` costs nothing). Rows must be stored in
//!   ascending order (every writer does); a sheet that goes back is refused.
//! - Only the first 4 KiB of a cell are looked at, and column B's text is kept to 257 characters
//!   (a longer text is still refused as longer than 256, `qr::MAX_RAW_LEN`).
//! - Limits, refused as [`WorkbookError::TooLarge`] before anything past them is read: the
//!   archive's declared decompressed size ([`MAX_UNCOMPRESSED_BYTES`]) and files
//!   ([`MAX_ENTRIES`]), the shared strings it declares ([`MAX_SHARED_STRINGS`]), the non-empty
//!   rows of the whole workbook ([`MAX_ROWS`]).
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
//!
//! [`import`] sends what a workbook holds to bag-registry's ImportBags in batches. This crate is
//! all the gateway needs of data in: the legacy migration tool (`tracetrack-dataio`) builds on it
//! without the gateway building on that.

pub mod bills;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod import;
pub mod report;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;

use calamine::{DataRef, Reader, Xlsx, XlsxCellReader, XlsxError};
use serde::Serialize;
use tracetrack_domain::qr::{self, ProductLine, QrError};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1::{BagType, ImportBag};

/// Most bytes the archive's files may hold once decompressed, all together (their sizes as the
/// archive's directory declares them; the zip reader refuses a file that inflates past its
/// declared size). Checked before anything is decompressed.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 256 << 20;
/// Most files in the archive (a workbook has a dozen or so, plus one per sheet).
pub const MAX_ENTRIES: usize = 10_000;
/// Most non-empty rows (columns A and B) read from one workbook, all sheets together.
pub const MAX_ROWS: u64 = 1_000_000;
/// Most strings the shared-string table may declare: calamine reserves room for the declared
/// count before reading it, so a forged count would ask for terabytes.
pub const MAX_SHARED_STRINGS: u64 = 4 * MAX_ROWS;
/// How much of a cell is looked at: a long shared string can be referenced by every cell of a
/// sheet, so no cell is ever read (or copied) whole.
const CELL_PREFIX_BYTES: usize = 4096;
/// Characters of column B kept: one more than a scanned text may have, so a longer text is
/// still refused as too long (`qr::MAX_RAW_LEN`).
const KEEP_CHARS: usize = qr::MAX_RAW_LEN + 1;
/// How far into the shared-string part its `<sst>` element must start.
const SST_SCAN_BYTES: u64 = 1 << 20;

/// A workbook that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    #[error("not a readable .xlsx workbook: {0}")]
    Unreadable(String),
    #[error("sheet {sheet:?} cannot be read: {message}")]
    Sheet { sheet: String, message: String },
    /// Over one of the limits above: refused before (or instead of) reading further.
    #[error("the workbook is too large to read: {what} is over the limit of {limit}")]
    TooLarge { what: &'static str, limit: String },
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
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
    /// Bill workbooks, `on_other_bill`: the bill the parent is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_bill_id: Option<String>,
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
///
/// The archive is checked first (files, their declared decompressed sizes, the shared-string
/// count), then each sheet's cells are streamed in file order: only columns A and B are kept,
/// so a cell far away (`XFD1048576`) costs nothing, and at most [`MAX_ROWS`] rows are read.
pub fn parse_workbook(bytes: &[u8], lines: &[ProductLine]) -> Result<LabelImport, WorkbookError> {
    parse_with_limit(bytes, lines, MAX_ROWS)
}

fn parse_with_limit(
    bytes: &[u8],
    lines: &[ProductLine],
    max_rows: u64,
) -> Result<LabelImport, WorkbookError> {
    let mut parser = Parser::new(lines);
    parser.max_rows = max_rows;
    let sheets = each_sheet(bytes, 1, |name, rows| parser.sheet(name, rows))?;
    parser.out.sheets = sheets;
    Ok(parser.out)
}

/// Opens a workbook (after [`check_archive`]) and hands each worksheet's rows to `read`, in
/// workbook order: columns A and B, and the columns after them up to `last_col` (0-based; at
/// most [`EXTRA_COLUMNS`] past B). Every sheet's name, in workbook order (chart sheets too).
pub(crate) fn each_sheet(
    bytes: &[u8],
    last_col: u32,
    mut read: impl FnMut(
        &str,
        &mut dyn Iterator<Item = Result<SheetRow, WorkbookError>>,
    ) -> Result<(), WorkbookError>,
) -> Result<Vec<String>, WorkbookError> {
    let parts = check_archive(bytes)?;
    let (reader, over_budget) = Budgeted::new(bytes, parts);
    let too_much_read = || WorkbookError::TooLarge {
        what: "what its parts read more than once inflate to",
        limit: mib(REOPEN_BYTES),
    };
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(reader).map_err(|e: XlsxError| {
        if over_budget.get() {
            too_much_read()
        } else {
            WorkbookError::Unreadable(e.to_string())
        }
    })?;
    let mut sheets = Vec::new();
    for name in book.sheet_names() {
        let sheet_error = |e: XlsxError| {
            if over_budget.get() {
                too_much_read()
            } else {
                WorkbookError::Sheet {
                    sheet: name.clone(),
                    message: e.to_string(),
                }
            }
        };
        sheets.push(name.clone());
        let cells = match book.worksheet_cells_reader(&name) {
            Ok(cells) => cells,
            // A chart sheet: no cells (as calamine's own ranges treat it).
            Err(XlsxError::NotAWorksheet(_)) => continue,
            Err(e) => return Err(sheet_error(e)),
        };
        let mut rows = SheetRows::new(cells, last_col).map(|r| r.map_err(&sheet_error));
        read(&name, &mut rows)?;
    }
    Ok(sheets)
}

/// What parts opened again may inflate, all together (declared sizes). calamine opens each part
/// once, so a workbook needs next to nothing; what this stops is a workbook listing many sheets
/// that are all the same highly compressed part, inflated again for each.
const REOPEN_BYTES: u64 = 64 << 20;

/// The upload as calamine reads it. Every opening of a part seeks to the start of its data
/// (zip's `find_content`): the second and later openings of a part count its declared size
/// against [`REOPEN_BYTES`], and past it the seek fails and the shared flag says why.
struct Budgeted<'a> {
    inner: Cursor<&'a [u8]>,
    /// Where each part's data starts: its declared size, and whether it was opened yet.
    parts: HashMap<u64, (u64, bool)>,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<'a> Budgeted<'a> {
    fn new(bytes: &'a [u8], parts: HashMap<u64, u64>) -> (Self, Rc<Cell<bool>>) {
        let over = Rc::new(Cell::new(false));
        let budget = Self {
            inner: Cursor::new(bytes),
            parts: parts
                .into_iter()
                .map(|(at, size)| (at, (size, false)))
                .collect(),
            left: REOPEN_BYTES,
            over: over.clone(),
        };
        (budget, over)
    }
}

impl Read for Budgeted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for Budgeted<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        if let Some((size, opened)) = self.parts.get_mut(&at) {
            if *opened {
                match self.left.checked_sub(*size) {
                    Some(left) => self.left = left,
                    None => {
                        self.over.set(true);
                        return Err(io::Error::other("a part is read again and again"));
                    }
                }
            }
            *opened = true;
        }
        Ok(at)
    }
}

/// Refuses an archive too large to read, from its central directory alone: too many files, or
/// more than [`MAX_UNCOMPRESSED_BYTES`] declared in all. No file can inflate past its declared
/// size (the zip reader fails it: zip's `Crc32Reader::with_size_limit`), so the declared sizes
/// bound what calamine decompresses. Then the shared-string count calamine would reserve room
/// for is checked. Returns where each part's data starts, with its declared size.
fn check_archive(bytes: &[u8]) -> Result<HashMap<u64, u64>, WorkbookError> {
    let unreadable = |e: zip::result::ZipError| WorkbookError::Unreadable(e.to_string());
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(unreadable)?;
    if zip.len() > MAX_ENTRIES {
        return Err(WorkbookError::TooLarge {
            what: "the number of files in the archive",
            limit: format!("{MAX_ENTRIES} files"),
        });
    }
    let mut total: u64 = 0;
    let mut shared_strings = Vec::new();
    let mut parts = HashMap::new();
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(unreadable)?;
        total = total.saturating_add(entry.size());
        if let Some(at) = entry.data_start() {
            let size = parts.entry(at).or_insert(0);
            *size = entry.size().max(*size);
        }
        if total > MAX_UNCOMPRESSED_BYTES {
            return Err(WorkbookError::TooLarge {
                what: "the archive's decompressed size",
                limit: mib(MAX_UNCOMPRESSED_BYTES),
            });
        }
        // calamine finds parts by name regardless of case.
        if entry
            .name_raw()
            .to_ascii_lowercase()
            .ends_with(b"sharedstrings.xml")
        {
            shared_strings.push(i);
        }
    }
    for i in shared_strings {
        let part = zip.by_index(i).map_err(unreadable)?;
        let mut head = Vec::new();
        part.take(SST_SCAN_BYTES)
            .read_to_end(&mut head)
            .map_err(|e| WorkbookError::Unreadable(e.to_string()))?;
        match sst_unique_count(&head) {
            Some(Ok(n)) if n <= MAX_SHARED_STRINGS => {}
            Some(Ok(_)) => {
                return Err(WorkbookError::TooLarge {
                    what: "the shared-string table",
                    limit: format!("{MAX_SHARED_STRINGS} strings"),
                })
            }
            Some(Err(())) => {
                return Err(WorkbookError::Unreadable(
                    "the shared-string table's uniqueCount is not a number".into(),
                ))
            }
            None if head.len() as u64 >= SST_SCAN_BYTES => {
                return Err(WorkbookError::Unreadable(format!(
                    "the shared-string table does not start within its first {}",
                    mib(SST_SCAN_BYTES)
                )))
            }
            // No <sst> element, or no count: calamine reserves nothing (and fails on the former).
            None => {}
        }
    }
    Ok(parts)
}

/// The `uniqueCount` of the first `<sst>` start tag in `xml` (skipping what an XML reader
/// skips: comments, processing instructions, declarations, end tags), `Some(Err)` when it is
/// not a plain number, `Some(Ok(0))` when the tag has no count, `None` when no `<sst>` tag starts
/// (completely) in `xml`. Every `uniqueCount` of the tag counts (the largest is returned).
fn sst_unique_count(xml: &[u8]) -> Option<Result<u64, ()>> {
    fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }
    let mut i = 0;
    while let Some(lt) = find(xml, i, b"<") {
        let rest = &xml[lt..];
        let skip_to = |end: &[u8]| find(xml, lt, end).map(|e| e + end.len());
        if rest.starts_with(b"<!--") {
            i = skip_to(b"-->")?;
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            i = skip_to(b"]]>")?;
            continue;
        }
        if rest.starts_with(b"<?") {
            i = skip_to(b"?>")?;
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"</") {
            i = skip_to(b">")?;
            continue;
        }
        // A start tag: its name, then attributes up to the '>' outside quotes.
        let name_len = rest[1..]
            .iter()
            .position(|c| c.is_ascii_whitespace() || *c == b'>' || *c == b'/')
            .unwrap_or(rest.len() - 1);
        let name = &rest[1..1 + name_len];
        let local = name.rsplit(|c| *c == b':').next().unwrap_or(name);
        let mut quote = None;
        let mut end = None;
        for (k, c) in rest.iter().enumerate().skip(1 + name_len) {
            match (quote, *c) {
                (None, b'"' | b'\'') => quote = Some(*c),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => {
                    end = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        if local != b"sst" {
            i = lt + end + 1;
            continue;
        }
        return Some(unique_count(&rest[1 + name_len..end]));
    }
    None
}

/// The largest `uniqueCount="…"` among a start tag's attributes (0 if none).
fn unique_count(attrs: &[u8]) -> Result<u64, ()> {
    let mut most = 0u64;
    let mut rest = attrs;
    while let Some(p) = rest.windows(11).position(|w| w == b"uniqueCount") {
        let before_ok = p == 0 || rest[p - 1].is_ascii_whitespace();
        let after = &rest[p + 11..];
        rest = after;
        let after = after.trim_ascii_start();
        let Some(after) = after.strip_prefix(b"=") else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let after = after.trim_ascii_start();
        let Some((&q, value)) = after.split_first() else {
            return Err(());
        };
        if q != b'"' && q != b'\'' {
            return Err(());
        }
        let len = value.iter().position(|c| *c == q).ok_or(())?;
        let digits = value[..len].trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = if digits.len() > 19 {
            u64::MAX
        } else {
            std::str::from_utf8(digits)
                .map_err(|_| ())?
                .parse::<u64>()
                .map_err(|_| ())?
        };
        most = most.max(n);
    }
    Ok(most)
}

/// Most columns read after column B (bill workbooks: capacity, destination, vehicle number,
/// description).
pub(crate) const EXTRA_COLUMNS: usize = 4;

/// One row's columns A and B (and the ones after, when asked for), as read.
pub(crate) struct SheetRow {
    /// 0-based.
    pub(crate) index: u32,
    pub(crate) a: ColumnA,
    pub(crate) b: String,
    /// Columns C, D, …: their text (a cell's first 4 KiB), trimmed.
    pub(crate) extra: [String; EXTRA_COLUMNS],
}

/// A sheet's rows with something in column A or B, from calamine's cell stream (rows must come
/// in ascending order, as every writer stores them).
struct SheetRows<'a, RS: Read + Seek> {
    cells: XlsxCellReader<'a, RS>,
    pending: Option<SheetRow>,
    done: bool,
    /// The last column kept (0-based).
    last_col: u32,
}

impl<'a, RS: Read + Seek> SheetRows<'a, RS> {
    fn new(cells: XlsxCellReader<'a, RS>, last_col: u32) -> Self {
        Self {
            cells,
            pending: None,
            done: false,
            last_col: last_col.min(1 + EXTRA_COLUMNS as u32),
        }
    }
}

impl<RS: Read + Seek> Iterator for SheetRows<'_, RS> {
    type Item = Result<SheetRow, XlsxError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let cell = match self.cells.next_cell() {
                Ok(Some(cell)) => cell,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let (row, col) = cell.get_position();
            let value = cell.get_value();
            if col > self.last_col || matches!(value, DataRef::Empty) {
                continue;
            }
            let flushed = match &self.pending {
                Some(p) if p.index == row => None,
                Some(p) if p.index > row => {
                    self.done = true;
                    return Some(Err(XlsxError::Unexpected(
                        "rows are not in ascending order",
                    )));
                }
                _ => self.pending.replace(SheetRow {
                    index: row,
                    a: ColumnA::Empty,
                    b: String::new(),
                    extra: Default::default(),
                }),
            };
            if let Some(p) = self.pending.as_mut() {
                match col {
                    0 => p.a = column_a(value),
                    1 => p.b = column_b(value),
                    c => p.extra[c as usize - 2] = cell_text(value).trim().to_owned(),
                }
            }
            if let Some(row) = flushed {
                return Some(Ok(row));
            }
        }
        self.pending.take().map(Ok)
    }
}

/// What column A says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnA {
    Empty,
    Serial,
    ParentMarker,
    /// "Bill" (any case or punctuation): a bill workbook's bill row.
    BillMarker,
    Text,
}

/// A cell's text (its first [`CELL_PREFIX_BYTES`]): integral numbers without a decimal point
/// (a label number typed as a number has lost its leading zeros, which cannot be recovered).
fn cell_text<'c>(cell: &'c DataRef<'_>) -> Cow<'c, str> {
    let text: Cow<'c, str> = match cell {
        DataRef::Empty => Cow::Borrowed(""),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}").into(),
        DataRef::Float(f) => f.to_string().into(),
        DataRef::Int(i) => i.to_string().into(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cow::Borrowed(s),
        DataRef::SharedString(s) => Cow::Borrowed(s),
        DataRef::Bool(b) => b.to_string().into(),
        DataRef::DateTime(d) => d.to_string().into(),
        DataRef::Error(e) => e.to_string().into(),
    };
    match text {
        Cow::Borrowed(s) if s.len() > CELL_PREFIX_BYTES => {
            let mut end = CELL_PREFIX_BYTES;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Cow::Borrowed(&s[..end])
        }
        other => other,
    }
}

fn column_a(cell: &DataRef<'_>) -> ColumnA {
    match cell {
        DataRef::Empty => ColumnA::Empty,
        DataRef::Int(_) | DataRef::Float(_) => ColumnA::Serial,
        other => {
            let text = cell_text(other);
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
                    .take(12)
                    .collect();
                if squashed == "parentcode" {
                    ColumnA::ParentMarker
                } else if matches!(squashed.as_str(), "bill" | "billno" | "billid") {
                    ColumnA::BillMarker
                } else {
                    ColumnA::Text
                }
            }
        }
    }
}

/// Column B's text, kept to [`KEEP_CHARS`] characters. A longer text keeps its length past
/// `qr::MAX_RAW_LEN` (so it is refused as too long, as a whole one would be) and its first
/// non-blank characters (shown in the report).
fn column_b(cell: &DataRef<'_>) -> String {
    let raw = cell_text(cell);
    let text = raw.trim_start();
    if text.trim_end().is_empty() {
        return String::new();
    }
    if raw.chars().count() <= KEEP_CHARS {
        return raw.into_owned();
    }
    let text_chars = text.chars().count();
    if text_chars >= KEEP_CHARS {
        text.chars().take(KEEP_CHARS).collect()
    } else {
        format!("{}{text}", " ".repeat(KEEP_CHARS - text_chars))
    }
}

pub(crate) fn shown(value: &str) -> String {
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
    /// Non-empty rows read at most ([`MAX_ROWS`]).
    max_rows: u64,
}

impl<'a> Parser<'a> {
    fn new(lines: &'a [ProductLine]) -> Self {
        Self {
            lines,
            out: LabelImport::default(),
            children: HashMap::new(),
            parents: HashMap::new(),
            max_rows: MAX_ROWS,
        }
    }

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

    /// Reads one sheet's rows (ascending, only those with something in column A or B).
    fn sheet(
        &mut self,
        sheet: &str,
        rows: impl Iterator<Item = Result<SheetRow, WorkbookError>>,
    ) -> Result<(), WorkbookError> {
        let mut group: Vec<LabelRow> = Vec::new();
        for r in rows {
            let SheetRow { index, a, b, .. } = r?;
            if a == ColumnA::Empty && b.trim().is_empty() {
                continue;
            }
            if self.out.rows >= self.max_rows {
                return Err(WorkbookError::TooLarge {
                    what: "the number of non-empty rows",
                    limit: format!("{} rows", self.max_rows),
                });
            }
            self.out.rows += 1;
            let row = index + 1;
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
            if matches!(a, ColumnA::Text | ColumnA::BillMarker) && id.is_err() {
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
        Ok(())
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
    use crate::fixtures::{far_cell_workbook, label};
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

    // ------------------------------------------------------------------ hostile workbooks

    use std::io::Write;
    use std::time::{Duration, Instant};

    /// A zip entry as stored: its compressed bytes and what the directory declares.
    struct RawEntry {
        name: String,
        /// 0 stored, 8 deflated.
        method: u16,
        crc: u32,
        data: Vec<u8>,
        size: u64,
    }

    /// The entries of `zip` exactly as stored (nothing decompressed).
    fn raw_entries(zip_bytes: &[u8]) -> Vec<RawEntry> {
        let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut f = zip.by_index_raw(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                RawEntry {
                    name: f.name().unwrap().into_owned(),
                    method: match f.compression() {
                        zip::CompressionMethod::Stored => 0,
                        _ => 8,
                    },
                    crc: f.crc32(),
                    data,
                    size: f.size(),
                }
            })
            .collect()
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in data {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn stored(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.to_owned(),
            method: 0,
            crc: crc32(data),
            data: data.to_vec(),
            size: data.len() as u64,
        }
    }

    /// A zip archive written by hand, declaring what the entries say (sizes may lie).
    fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for e in entries {
            let offset = out.len() as u32;
            let header = |sig: u32, central: bool| {
                let mut h = Vec::new();
                h.extend_from_slice(&sig.to_le_bytes());
                if central {
                    h.extend_from_slice(&20u16.to_le_bytes()); // made by
                }
                h.extend_from_slice(&20u16.to_le_bytes()); // needed
                h.extend_from_slice(&0u16.to_le_bytes()); // flags
                h.extend_from_slice(&e.method.to_le_bytes());
                h.extend_from_slice(&0u32.to_le_bytes()); // time, date
                h.extend_from_slice(&e.crc.to_le_bytes());
                h.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
                h.extend_from_slice(&(e.size as u32).to_le_bytes());
                h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes()); // extra
                if central {
                    h.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
                    h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
                    h.extend_from_slice(&offset.to_le_bytes());
                }
                h.extend_from_slice(e.name.as_bytes());
                h
            };
            out.extend(header(0x0403_4b50, false));
            out.extend_from_slice(&e.data);
            central.extend(header(0x0201_4b50, true));
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // disks
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment
        out
    }

    /// `len` zero bytes, deflated (raw deflate data, as a zip entry holds it).
    fn deflated_zeros(len: u64) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9));
        w.start_file("zeros", options).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        let bytes = w.finish().unwrap().into_inner();
        raw_entries(&bytes).remove(0).data
    }

    fn small_book() -> Vec<u8> {
        let labels: Vec<String> = (1..=15).map(label).collect();
        let mut rows = vec![];
        for (i, l) in labels.iter().enumerate() {
            rows.push((N(i as f64 + 1.0), S(l)));
        }
        rows.push((S("Parent Code"), S("M444-00001")));
        book(&[("Sheet1", rows)])
    }

    /// `book`'s entries, the one named `name` replaced by `with`.
    fn replaced(book: &[u8], name: &str, with: RawEntry) -> Vec<u8> {
        let mut entries = raw_entries(book);
        let i = entries.iter().position(|e| e.name == name).unwrap();
        entries[i] = with;
        raw_zip(&entries)
    }

    fn too_large(r: Result<LabelImport, WorkbookError>) -> &'static str {
        match r {
            Err(WorkbookError::TooLarge { what, .. }) => what,
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn the_hand_written_archive_reads_like_the_original() {
        let book = small_book();
        let copy = raw_zip(&raw_entries(&book));
        let out = parse_workbook(&copy, &ProductLine::defaults()).unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!((out.parents(), out.children()), (1, 15));
        // Stored instead of deflated, correct sizes and CRCs: the same.
        let sheet = raw_entries(&book)
            .into_iter()
            .find(|e| e.name == "xl/worksheets/sheet1.xml")
            .unwrap();
        let mut xml = Vec::new();
        flate_inflate(&sheet, &mut xml);
        let copy = replaced(&book, "xl/worksheets/sheet1.xml", stored(&sheet.name, &xml));
        let out = parse_workbook(&copy, &ProductLine::defaults()).unwrap();
        assert_eq!((out.parents(), out.children()), (1, 15));
    }

    /// Inflates one raw entry through the zip reader.
    fn flate_inflate(e: &RawEntry, out: &mut Vec<u8>) {
        let one = raw_zip(&[RawEntry {
            name: e.name.clone(),
            method: e.method,
            crc: e.crc,
            data: e.data.clone(),
            size: e.size,
        }]);
        let mut zip = zip::ZipArchive::new(Cursor::new(one)).unwrap();
        zip.by_index(0).unwrap().read_to_end(out).unwrap();
    }

    #[test]
    fn a_cell_at_xfd1048576_costs_nothing() {
        let bytes = far_cell_workbook();
        let started = Instant::now();
        let out = parse_workbook(&bytes, &ProductLine::defaults()).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!((out.parents(), out.children(), out.rows), (1, 15, 17));

        // Columns A and B far down are still read, in order.
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.write_string(0, 0, "Sr. No.").unwrap();
        ws.write_string(1_048_575, 1, label(7)).unwrap();
        ws.write_string(1_048_575, 16_383, "far away").unwrap();
        let out = parse_workbook(&wb.save_to_buffer().unwrap(), &ProductLine::defaults()).unwrap();
        assert_eq!(out.rows, 2);
        assert_eq!(
            codes(&out.problems),
            vec![("Sheet1".into(), 1_048_576, "invalid_argument".into())]
        );
    }

    #[test]
    fn rows_out_of_order_are_refused() {
        let book = small_book();
        let sheet = "xl/worksheets/sheet1.xml";
        let xml = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="5"><c r="A5"><v>1</v></c></row><row r="2"><c r="A2"><v>2</v></c></row>
</sheetData></worksheet>"#;
        let r = parse_workbook(&replaced(&book, sheet, stored(sheet, xml)), &[]);
        assert!(
            matches!(&r, Err(WorkbookError::Sheet { message, .. }) if message.contains("ascending")),
            "{r:?}"
        );
    }

    #[test]
    fn long_cells_are_kept_short_and_still_refused_as_too_long() {
        let long = format!("{}{}", " ".repeat(300), label(3));
        let huge = "x".repeat(30_000);
        let rows = vec![
            (N(1.0), S(long.as_str())),
            (N(2.0), S(huge.as_str())),
            (E, S("M444-00001")),
        ];
        let out = parse_workbook(&book(&[("S", rows)]), &ProductLine::defaults()).unwrap();
        let p: Vec<_> = out
            .problems
            .iter()
            .map(|p| (p.row, p.code.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(p[0].0, 1);
        assert_eq!(p[0].1, "invalid_qr");
        assert!(p[0].2.contains("longer than 256"), "{p:?}");
        assert_eq!(out.problems[0].value, shown(&label(3)));
        assert_eq!(p[1].0, 2);
        assert!(p[1].2.contains("longer than 256"), "{p:?}");
        assert_eq!(out.problems[1].value, "x".repeat(120));
        assert_eq!(out.rows, 3);
        assert_eq!(
            column_b(&DataRef::SharedString(&huge)).chars().count(),
            KEEP_CHARS
        );
    }

    #[test]
    fn too_many_rows_are_refused() {
        // max + 1 rows of one shared string: small on disk, refused once the cap is passed (a
        // cap of 1,000 here: a million rows take seconds in a debug build).
        let max = 1_000;
        let mut xml = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for r in 1..=max + 1 {
            xml.push_str(&format!(
                r#"<row r="{r}"><c r="B{r}" t="s"><v>0</v></c></row>"#
            ));
        }
        xml.push_str("</sheetData></worksheet>");
        let book = small_book();
        let sheet = "xl/worksheets/sheet1.xml";
        let bytes = replaced(&book, sheet, stored(sheet, xml.as_bytes()));
        let r = parse_with_limit(&bytes, &ProductLine::defaults(), max);
        assert_eq!(too_large(r), "the number of non-empty rows");
        let out = parse_with_limit(&bytes, &ProductLine::defaults(), max + 1).unwrap();
        assert_eq!(out.rows, max + 1);
    }

    #[test]
    fn an_archive_declaring_more_than_the_cap_is_refused_unread() {
        let mut entries = raw_entries(&small_book());
        // Declares 300 MiB, holds nothing: never read, refused on the directory alone.
        entries.push(RawEntry {
            name: "xl/media/big.bin".into(),
            method: 0,
            crc: 0,
            data: Vec::new(),
            size: 300 << 20,
        });
        let r = parse_workbook(&raw_zip(&entries), &ProductLine::defaults());
        assert_eq!(too_large(r), "the archive's decompressed size");
        let e = parse_workbook(&raw_zip(&entries), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the workbook is too large to read: the archive's decompressed size is over the limit of 256 MiB"
        );

        let mut entries = raw_entries(&small_book());
        for i in 0..=MAX_ENTRIES {
            entries.push(stored(&format!("xl/media/{i}.bin"), b""));
        }
        let r = parse_workbook(&raw_zip(&entries), &ProductLine::defaults());
        assert_eq!(too_large(r), "the number of files in the archive");
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_is_decompressed() {
        let zeros = deflated_zeros(300 << 20);
        assert!(zeros.len() < 1 << 20, "{}", zeros.len());
        let sheet = "xl/worksheets/sheet1.xml";
        let bomb = RawEntry {
            name: sheet.into(),
            method: 8,
            crc: 0,
            data: zeros.clone(),
            size: 300 << 20,
        };
        let bytes = replaced(&small_book(), sheet, bomb);
        let started = Instant::now();
        let r = parse_workbook(&bytes, &ProductLine::defaults());
        assert_eq!(too_large(r), "the archive's decompressed size");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );

        // The same bomb declaring 1 KiB: the zip reader stops at the declared size.
        let liar = RawEntry {
            name: sheet.into(),
            method: 8,
            crc: 0,
            data: zeros,
            size: 1024,
        };
        let bytes = replaced(&small_book(), sheet, liar);
        let started = Instant::now();
        let r = parse_workbook(&bytes, &ProductLine::defaults());
        assert!(
            matches!(
                &r,
                Err(WorkbookError::Sheet { .. } | WorkbookError::Unreadable(_))
            ),
            "{r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn many_sheets_of_one_big_part_are_refused() {
        // 40 sheets, all the same 16 MiB part (which deflates to almost nothing): read once
        // each, that is 640 MiB of XML from a workbook of some 100 KB.
        let book = small_book();
        let mut xml = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">"#,
        );
        let cells = r#"<c r="C1"><v>1</v></c>"#.repeat(1 << 10);
        while xml.len() < 16 << 20 {
            xml.push_str(&cells);
        }
        xml.push_str("</row></sheetData></worksheet>");
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9));
        w.start_file("s", options).unwrap();
        w.write_all(xml.as_bytes()).unwrap();
        let sheet_part = raw_entries(&w.finish().unwrap().into_inner()).remove(0);
        let part = "xl/worksheets/sheet1.xml";
        let book = replaced(
            &book,
            part,
            RawEntry {
                name: part.into(),
                ..sheet_part
            },
        );
        let wb = "xl/workbook.xml";
        let mut workbook = Vec::new();
        flate_inflate(
            &raw_entries(&book)
                .into_iter()
                .find(|e| e.name == wb)
                .unwrap(),
            &mut workbook,
        );
        let workbook = String::from_utf8(workbook).unwrap();
        let start = workbook.find("<sheet ").unwrap();
        let end = start + workbook[start..].find("/>").unwrap() + 2;
        let one = &workbook[start..end];
        let many: String = (1..=40)
            .map(|i| {
                one.replace("name=\"Sheet1\"", &format!("name=\"S{i}\""))
                    .replace("sheetId=\"1\"", &format!("sheetId=\"{i}\""))
            })
            .collect();
        let workbook = format!("{}{many}{}", &workbook[..start], &workbook[end..]);
        let bytes = replaced(&book, wb, stored(wb, workbook.as_bytes()));
        assert!(bytes.len() < 200_000, "{}", bytes.len());
        let started = Instant::now();
        let r = parse_workbook(&bytes, &ProductLine::defaults());
        assert_eq!(
            too_large(r),
            "what its parts read more than once inflate to"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_forged_shared_string_count_is_refused() {
        let book = small_book();
        let part = "xl/sharedStrings.xml";
        let original = raw_entries(&book)
            .into_iter()
            .find(|e| e.name == part)
            .unwrap();
        let mut xml = Vec::new();
        flate_inflate(&original, &mut xml);
        let xml = String::from_utf8(xml).unwrap();
        let (head, tail) = xml.split_once("uniqueCount=\"").unwrap();
        let (_, tail) = tail.split_once('"').unwrap();
        let decl_end = head.find("?>").unwrap() + 2;
        // The workbook's own table, its count and what comes before <sst> changed.
        let sst = |count: &str, prolog: &str| {
            format!(
                "{}{prolog}{}uniqueCount=\"{count}\"{tail}",
                &head[..decl_end],
                &head[decl_end..]
            )
        };
        // What calamine would reserve room for up front: 10^12 strings (24 TB).
        for (count, prolog) in [
            ("1000000000000", ""),
            ("99999999999999999999999", ""),
            ("1000000000000", "<!-- <sst uniqueCount=\"1\"> -->"),
        ] {
            let xml = sst(count, prolog);
            let r = parse_workbook(
                &replaced(&book, part, stored(part, xml.as_bytes())),
                &ProductLine::defaults(),
            );
            assert_eq!(too_large(r), "the shared-string table", "{xml}");
        }
        let xml = sst("-5", "");
        let r = parse_workbook(&replaced(&book, part, stored(part, xml.as_bytes())), &[]);
        assert!(matches!(r, Err(WorkbookError::Unreadable(_))), "{r:?}");
        // A true count reads as before.
        let xml = sst("16", "<!-- a comment -->");
        let out = parse_workbook(
            &replaced(&book, part, stored(part, xml.as_bytes())),
            &ProductLine::defaults(),
        )
        .unwrap();
        assert_eq!(out.rows, 16);

        assert_eq!(
            sst_unique_count(b"<?xml?><x:sst uniqueCount='7'/>"),
            Some(Ok(7))
        );
        assert_eq!(sst_unique_count(b"<sst count=\"3\">"), Some(Ok(0)));
        assert_eq!(sst_unique_count(b"<sst uniqueCount=\"3\""), None);
        assert_eq!(
            sst_unique_count(b"<other uniqueCount=\"9\"><sst>"),
            Some(Ok(0))
        );
    }
}
