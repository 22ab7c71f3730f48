//! /api/v1/exports/{bags,bills,scans}.{csv,xlsx} (admin): every row matching the lists' filters,
//! no row cap. Each owning service streams its rows in chunks from one read-only snapshot
//! (ExportBags, ExportBills, ExportScans); the gateway turns them into a file.
//!
//! - **CSV** is streamed as the chunks arrive (bounded memory): a header row, then RFC 4180
//!   records (CRLF, fields quoted when needed), UTF-8. A text cell that begins with `=`, `+`,
//!   `-`, `@`, a tab or a carriage return gets a leading `'` so a spreadsheet opening the file
//!   shows it as text instead of running it as a formula (OWASP's CSV-injection advice); no
//!   value TraceTrack makes itself begins so, only free text (scanned input, bill
//!   descriptions). Numbers are written as numbers, times as RFC 3339 UTC with microseconds,
//!   empty cells for absent values.
//! - **XLSX** cannot be sent before it is complete (a zip archive whose directory comes last),
//!   so it is built on a blocking thread while the chunks arrive, with rust_xlsxwriter's
//!   constant-memory mode (each row goes to a temporary file as it is written; nothing is held
//!   per row), saved to an anonymous temporary file and then sent from it. Text cells are
//!   string cells, never formulas, so they keep their exact text. A sheet holds at most
//!   1,048,575 rows under its header; more continue on the next sheet (`bags`, `bags 2`, …).
//!   The temporary files need disk in the temp directory about the size of the sheets' XML.
//!
//! An error before the first byte (bad filter, not an admin, upstream down) is a problem
//! document like every route's; a CSV whose upstream fails part-way ends abruptly (the
//! connection is reset), never silently short.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use chrono::{TimeZone, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use tokio::io::AsyncSeekExt;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as billing;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::scan::v1 as scan;
use utoipa::ToSchema;

use crate::filters::{BagFilter, BillFilter, PageParams, ScanFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

pub const CSV_TYPE: &str = "text/csv; charset=utf-8";
pub const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
/// Data rows per sheet: Excel's 1,048,576 rows less the header.
const ROWS_PER_SHEET: u32 = 1_048_575;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bags_csv))
        .routes(routes!(bags_xlsx))
        .routes(routes!(bills_csv))
        .routes(routes!(bills_xlsx))
        .routes(routes!(scans_csv))
        .routes(routes!(scans_xlsx))
}

/// A file's bytes (the OpenAPI schema of a binary body).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// One cell of an exported row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Empty,
}

fn text(s: &str) -> Cell {
    if s.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(s.to_owned())
    }
}

/// RFC 3339 UTC with microseconds (what the services store), or an empty cell.
fn time(t: &Option<prost_types::Timestamp>) -> Cell {
    t.as_ref()
        .and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
        .map(|d| Cell::Text(d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
        .unwrap_or(Cell::Empty)
}

/// The text a CSV cell holds: numbers as Rust prints them (the shortest text that reads back
/// to the same value), and text guarded against formula injection.
fn csv_field(cell: &Cell) -> Cow<'_, str> {
    match cell {
        Cell::Text(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
            Cow::Owned(format!("'{s}"))
        }
        Cell::Text(s) => Cow::Borrowed(s),
        Cell::Int(n) => Cow::Owned(n.to_string()),
        Cell::Num(x) => Cow::Owned(x.to_string()),
        Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Cell::Empty => Cow::Borrowed(""),
    }
}

/// RFC 4180 records (CRLF line ends, quotes only where needed).
fn csv_records<'a>(
    rows: impl IntoIterator<Item = Vec<Cow<'a, str>>>,
) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for row in rows {
        w.write_record(row.iter().map(|f| f.as_bytes()))?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

// ------------------------------------------------------------------------------ the tables

pub const BAG_COLUMNS: &[&str] = &[
    "qr",
    "type",
    "product_line",
    "status",
    "child_count",
    "capacity",
    "weight_kg",
    "expected_weight_kg",
    "area",
    "parent_qr",
    "bill_id",
    "frozen",
    "created_at",
    "created_by",
    "linked_at",
    "linked_by",
];

fn bag_row(b: &reg::Bag) -> Vec<Cell> {
    let parent = b.r#type == reg::BagType::Parent as i32;
    vec![
        Cell::Text(b.qr.clone()),
        Cell::Text(if parent { "parent" } else { "child" }.into()),
        text(&b.product_line),
        text(&b.status),
        Cell::Int(b.child_count.into()),
        if parent {
            Cell::Int(b.capacity.into())
        } else {
            Cell::Empty
        },
        Cell::Num(b.weight_kg),
        Cell::Num(b.expected_weight_kg),
        text(&b.area),
        text(&b.parent_qr),
        text(&b.bill_id),
        Cell::Bool(b.frozen),
        time(&b.created_at),
        text(&b.created_by),
        time(&b.linked_at),
        text(&b.linked_by),
    ]
}

pub const BILL_COLUMNS: &[&str] = &[
    "bill_id",
    "status",
    "capacity",
    "parent_count",
    "child_count",
    "actual_weight_kg",
    "expected_weight_kg",
    "description",
    "destination",
    "vehicle_number",
    "created_by",
    "created_by_username",
    "created_at",
    "updated_at",
    "completed_at",
];

fn bill_status(s: i32) -> &'static str {
    match billing::BillStatus::try_from(s) {
        Ok(billing::BillStatus::New) => "new",
        Ok(billing::BillStatus::Processing) => "processing",
        Ok(billing::BillStatus::Completing) => "completing",
        Ok(billing::BillStatus::Completed) => "completed",
        Ok(billing::BillStatus::Reopening) => "reopening",
        _ => "",
    }
}

fn bill_row(b: &billing::Bill) -> Vec<Cell> {
    vec![
        Cell::Text(b.bill_id.clone()),
        text(bill_status(b.status)),
        Cell::Int(b.capacity.into()),
        Cell::Int(b.parent_count.into()),
        Cell::Int(b.child_count),
        Cell::Num(b.actual_weight_kg),
        Cell::Num(b.expected_weight_kg),
        text(&b.description),
        text(&b.destination),
        text(&b.vehicle_number),
        text(&b.created_by),
        text(&b.created_by_username),
        time(&b.created_at),
        time(&b.updated_at),
        time(&b.completed_at),
    ]
}

pub const SCAN_COLUMNS: &[&str] = &[
    "id",
    "occurred_at",
    "user_id",
    "username",
    "kind",
    "area",
    "parent_qr",
    "child_qr",
    "raw_input",
    "outcome",
    "parent_child_count",
    "parent_capacity",
];

fn scan_row(e: &scan::ScanEvent) -> Vec<Cell> {
    vec![
        Cell::Text(e.id.clone()),
        time(&e.occurred_at),
        text(&e.user_id),
        text(&e.username),
        text(match scan::ScanKind::try_from(e.kind) {
            Ok(scan::ScanKind::Parent) => "parent",
            Ok(scan::ScanKind::Child) => "child",
            Ok(scan::ScanKind::Undo) => "undo",
            _ => "",
        }),
        text(&e.area),
        text(&e.parent_qr),
        text(&e.child_qr),
        text(&e.raw_input),
        text(&e.outcome),
        Cell::Int(e.parent_child_count.into()),
        Cell::Int(e.parent_capacity.into()),
    ]
}

/// Chunks of rows as they arrive from the owning service.
type Rows = BoxStream<'static, Result<Vec<Vec<Cell>>, tonic::Status>>;

async fn bags(state: &AppState, ctx: &Ctx, p: BagFilter) -> ApiResult<Rows> {
    let req = reg::ExportBagsRequest {
        filter: Some(p.search(PageParams::default())?),
        chunk_size: 0,
    };
    let stream = crate::read!(state.0.registry, export_bags, ctx.read(req.clone())).await?;
    Ok(stream
        .map_ok(|c| c.bags.iter().map(bag_row).collect())
        .boxed())
}

async fn bills(state: &AppState, ctx: &Ctx, p: BillFilter) -> ApiResult<Rows> {
    let req = billing::ExportBillsRequest {
        filter: Some(p.list(PageParams::default())?),
        chunk_size: 0,
    };
    let stream = crate::read!(state.0.billing, export_bills, ctx.read(req.clone())).await?;
    Ok(stream
        .map_ok(|c| c.bills.iter().map(bill_row).collect())
        .boxed())
}

async fn scans(state: &AppState, ctx: &Ctx, p: ScanFilter) -> ApiResult<Rows> {
    let req = scan::ExportScansRequest {
        filter: Some(p.list(PageParams::default())?),
        chunk_size: 0,
    };
    let stream = crate::read!(state.0.scan, export_scans, ctx.read(req.clone())).await?;
    Ok(stream
        .map_ok(|c| c.events.iter().map(scan_row).collect())
        .boxed())
}

// ------------------------------------------------------------------------------ the files

fn file_name(table: &str, ext: &str) -> String {
    format!("{table}-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

fn attachment(name: &str) -> String {
    format!("attachment; filename=\"{name}\"")
}

/// The CSV, streamed: the header row, then one body chunk per upstream chunk.
fn csv_file(table: &'static str, columns: &'static [&'static str], rows: Rows) -> Response {
    let header = csv_records([columns.iter().map(|c| Cow::Borrowed(*c)).collect()]);
    let body = futures::stream::once(async move { header })
        .chain(rows.map(|chunk| {
            match chunk {
                Ok(rows) => csv_records(
                    rows.iter()
                        .map(|cells| cells.iter().map(csv_field).collect::<Vec<_>>()),
                ),
                Err(status) => Err(csv::Error::from(std::io::Error::other(format!(
                    "upstream failed: {}",
                    status.message()
                )))),
            }
        }))
        .inspect_err(move |e| tracing::warn!(table, error = %e, "CSV export ended early"));
    Response::builder()
        .header(header::CONTENT_TYPE, CSV_TYPE)
        .header(
            header::CONTENT_DISPOSITION,
            attachment(&file_name(table, "csv")),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Writes the workbook from the chunks `rx` receives (on a blocking thread) into an anonymous
/// temporary file.
fn write_workbook(
    table: &str,
    columns: &[&str],
    rows_per_sheet: u32,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Vec<Cell>>>,
) -> Result<std::fs::File, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let mut sheets = 0usize;
    let mut row = rows_per_sheet;
    while let Some(chunk) = rx.blocking_recv() {
        for cells in chunk {
            if row >= rows_per_sheet {
                sheets += 1;
                let sheet = book.add_worksheet_with_constant_memory()?;
                sheet.set_name(if sheets == 1 {
                    table.to_owned()
                } else {
                    format!("{table} {sheets}")
                })?;
                for (c, name) in columns.iter().enumerate() {
                    sheet.write_string_with_format(0, c as u16, *name, &bold)?;
                }
                sheet.set_freeze_panes(1, 0)?;
                row = 0;
            }
            row += 1;
            let sheet = book.worksheet_from_index(sheets - 1)?;
            for (c, cell) in cells.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Text(s) => {
                        sheet.write_string(row, c, s)?;
                    }
                    Cell::Int(n) => {
                        sheet.write_number(row, c, *n as f64)?;
                    }
                    Cell::Num(x) => {
                        sheet.write_number(row, c, *x)?;
                    }
                    Cell::Bool(b) => {
                        sheet.write_boolean(row, c, *b)?;
                    }
                    Cell::Empty => {}
                }
            }
        }
    }
    if sheets == 0 {
        // No rows: the header alone.
        let sheet = book.add_worksheet_with_constant_memory()?;
        sheet.set_name(table)?;
        for (c, name) in columns.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *name, &bold)?;
        }
    }
    let mut file = tempfile::tempfile()?;
    book.save_to_writer(&mut file)?;
    Ok(file)
}

/// The XLSX, built while the chunks arrive and sent once complete.
async fn xlsx_file(
    table: &'static str,
    columns: &'static [&'static str],
    mut rows: Rows,
) -> ApiResult<Response> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let writer =
        tokio::task::spawn_blocking(move || write_workbook(table, columns, ROWS_PER_SHEET, rx));
    let mut failure = None;
    while let Some(chunk) = rows.next().await {
        match chunk {
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(status) => {
                failure = Some(status);
                break;
            }
        }
    }
    drop(tx);
    let built = writer.await;
    if let Some(status) = failure {
        return Err(status.into());
    }
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(table, error = %e, "{what}");
        ApiError::new(ErrorCode::Internal, "the workbook could not be built")
    };
    let file = built
        .map_err(|e| internal("workbook task failed", &e))?
        .map_err(|e| match e {
            // Out of temporary space (or the like): the machine's condition, not a bug.
            XlsxError::IoError(io) => {
                tracing::error!(table, error = %io, "workbook: temporary file failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the workbook could not be written to temporary storage; try a narrower filter or CSV",
                )
            }
            e => internal("workbook failed", &e),
        })?;
    let len = file
        .metadata()
        .map_err(|e| internal("workbook file", &e))?
        .len();
    let mut file = tokio::fs::File::from_std(file);
    file.rewind()
        .await
        .map_err(|e| internal("workbook file", &e))?;
    Response::builder()
        .header(header::CONTENT_TYPE, XLSX_TYPE)
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            attachment(&file_name(table, "xlsx")),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
        .map_err(|e| internal("workbook response", &e))
}

// ------------------------------------------------------------------------------ routes

/// A table's two routes, `$csv` (streamed) and `$xlsx`, over the rows `$rows` selects with the
/// table's filter: one place for what every export route does.
macro_rules! export_routes {
    ($table:tt, $columns:ident, $filter:ty, $rows:ident, $what:tt,
     $csv:ident: $csv_path:tt, $csv_doc:tt,
     $xlsx:ident: $xlsx_path:tt, $xlsx_doc:tt) => {
        #[doc = $csv_doc]
        #[utoipa::path(get, path = $csv_path, tag = "exports", params($filter),
            responses((status = 200, content_type = "text/csv", body = String, description = $what),
                (status = 400, body = Problem, description = "invalid_argument"), (status = 401, body = Problem, description = "unauthenticated"),
                (status = 403, body = Problem, description = "permission_denied: admins only")))]
        async fn $csv(
            State(state): State<AppState>,
            ctx: Ctx,
            Query(p): Query<$filter>,
        ) -> ApiResult<Response> {
            Ok(csv_file($table, $columns, $rows(&state, &ctx, p).await?))
        }

        #[doc = $xlsx_doc]
        #[utoipa::path(get, path = $xlsx_path, tag = "exports", params($filter),
            responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Binary, description = "one sheet per 1,048,575 rows"),
                (status = 400, body = Problem, description = "invalid_argument"), (status = 401, body = Problem, description = "unauthenticated"),
                (status = 403, body = Problem, description = "permission_denied: admins only")))]
        async fn $xlsx(
            State(state): State<AppState>,
            ctx: Ctx,
            Query(p): Query<$filter>,
        ) -> ApiResult<Response> {
            xlsx_file($table, $columns, $rows(&state, &ctx, p).await?).await
        }
    };
}

export_routes!("bags", BAG_COLUMNS, BagFilter, bags, "header row, then one record per bag",
    bags_csv: "/api/v1/exports/bags.csv",
    "Bags as CSV (admin; SearchBags' filters, QR order, streamed, no row cap).",
    bags_xlsx: "/api/v1/exports/bags.xlsx",
    "Bags as XLSX (admin; SearchBags' filters, QR order, no row cap).");

export_routes!("bills", BILL_COLUMNS, BillFilter, bills, "header row, then one record per bill",
    bills_csv: "/api/v1/exports/bills.csv",
    "Bills with their figures as CSV (admin; ListBills' filters, newest first, streamed).",
    bills_xlsx: "/api/v1/exports/bills.xlsx",
    "Bills with their figures as XLSX (admin; ListBills' filters, newest first).");

export_routes!("scans", SCAN_COLUMNS, ScanFilter, scans, "header row, then one record per scan event",
    scans_csv: "/api/v1/exports/scans.csv",
    "Scan events (every attempt, with its outcome) as CSV (admin; ListScans' filters, newest first, streamed).",
    scans_xlsx: "/api/v1/exports/scans.xlsx",
    "Scan events as XLSX (admin; ListScans' filters, newest first).");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_guards_formulas() {
        let cells = [
            Cell::Text("a,b".into()),
            Cell::Text("say \"hi\"".into()),
            Cell::Text("=1+2".into()),
            Cell::Text("-5".into()),
            Cell::Int(-3),
            Cell::Num(0.5),
            Cell::Bool(true),
            Cell::Empty,
            Cell::Text("line\nbreak".into()),
        ];
        let out = csv_records([cells.iter().map(csv_field).collect()]).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\"a,b\",\"say \"\"hi\"\"\",'=1+2,'-5,-3,0.5,true,,\"line\nbreak\"\r\n"
        );
    }

    #[test]
    fn a_workbook_continues_on_a_new_sheet_when_one_is_full() {
        use calamine::{Data, Reader, Xlsx};
        use std::io::{Read, Seek};
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for chunk in 0..3 {
            let rows = (0..2)
                .map(|i| {
                    vec![
                        Cell::Text(format!("r{}", chunk * 2 + i)),
                        Cell::Int(chunk * 2 + i),
                        Cell::Bool(i == 1),
                        Cell::Empty,
                    ]
                })
                .collect();
            tx.try_send(rows).unwrap();
        }
        drop(tx);
        let mut file = write_workbook("bags", &["qr", "n", "b", "e"], 4, rx).unwrap();
        let mut bytes = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut bytes).unwrap();
        let mut book: Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), ["bags", "bags 2"]);
        let first = book.worksheet_range("bags").unwrap();
        assert_eq!(first.height(), 5, "the header and four rows");
        assert_eq!(first.get((0, 0)), Some(&Data::String("qr".into())));
        assert_eq!(first.get((4, 0)), Some(&Data::String("r3".into())));
        assert_eq!(first.get((4, 1)), Some(&Data::Float(3.0)));
        assert_eq!(first.get((4, 2)), Some(&Data::Bool(true)));
        let second = book.worksheet_range("bags 2").unwrap();
        assert_eq!(second.height(), 3, "the header again and the last two rows");
        assert_eq!(second.get((1, 0)), Some(&Data::String("r4".into())));
        assert_eq!(second.get((2, 0)), Some(&Data::String("r5".into())));
    }

    #[test]
    fn times_keep_microseconds() {
        let t = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_000,
        });
        assert_eq!(time(&t), Cell::Text("2023-11-14T22:13:20.123456Z".into()));
        assert_eq!(time(&None), Cell::Empty);
    }
}
