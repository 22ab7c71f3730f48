//! /api/v1/imports/labels (admin): a label-printing workbook uploaded as the raw request body,
//! parsed and written exactly as `tracetrack-import-labels` does it (the parser and the
//! ImportBags client are `tracetrack_labels`'): bags through bag-registry's ImportBags in
//! batches (COPY), every bad row reported with its sheet, row and code, and a second upload of
//! the same workbook changes nothing and says so.
//!
//! /api/v1/imports/bills (admin, biller): a bill workbook (parent rows, then a "Bill" row;
//! `tracetrack_labels::bills`): each bill that does not exist is created (CreateBill), then its
//! parents go on through billing's AttachParents (the attach saga in bulk), every refused row
//! reported with its code. Both parse with the product lines in force (bag-registry's
//! GetCatalogue, as /meta reads them).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracetrack_base::AppError;
use tracetrack_domain::qr::ProductLine;
use tracetrack_domain::ErrorCode;
use tracetrack_labels::bills::{BillImport, BillOutcome, BillReport, DoneParent};
use tracetrack_labels::import::{self, DEFAULT_BATCH};
use tracetrack_labels::{self as labels, WorkbookError};
use tracetrack_proto::billing::v1 as bpb;
use tracetrack_proto::registry::v1 as rpb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::routes::exports::Binary;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_labels))
        .routes(routes!(import_bills))
}

/// The product lines in force: bag-registry's configuration (GetCatalogue), as /meta reads it.
async fn product_lines(state: &AppState, ctx: &Ctx) -> ApiResult<Vec<ProductLine>> {
    let r = crate::read!(
        state.0.registry,
        get_catalogue,
        ctx.read(rpb::GetCatalogueRequest {})
    )
    .await?;
    Ok(r.product_lines
        .into_iter()
        .filter_map(|l| {
            ProductLine::new(
                &l.name,
                &l.parent_pattern,
                l.capacity,
                l.parent_weight_kg,
                l.child_weight_kg,
            )
            .map_err(|e| tracing::warn!(line = l.name, error = %e, "a product line's pattern"))
            .ok()
        })
        .collect())
}

/// `?result=`: false for JSON (the default), true for the result workbook.
fn wants_xlsx(result: Option<&str>) -> ApiResult<bool> {
    match result {
        None | Some("json") => Ok(false),
        Some("xlsx") => Ok(true),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "result must be json or xlsx",
        )),
    }
}

/// The uploaded workbook: the raw body (not a multipart form), up to `max_import_bytes`.
async fn workbook_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<axum::body::Bytes> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/"));
    if multipart {
        return Err(invalid_workbook(
            "send the .xlsx file itself as the request body, not a multipart form",
        ));
    }
    let limit = state.0.settings.max_import_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a workbook may be at most {} MiB", limit >> 20),
        )
    })?;
    if bytes.is_empty() {
        return Err(invalid_workbook(
            "the request body is empty: send the .xlsx file",
        ));
    }
    Ok(bytes)
}

/// A result workbook built off the executor, answered as a download named `name`.
async fn xlsx_download(
    name: &'static str,
    build: impl FnOnce() -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> + Send + 'static,
) -> ApiResult<Response> {
    let failed = || {
        ApiError::new(
            ErrorCode::Internal,
            "the result workbook could not be built",
        )
    };
    let book = tokio::task::spawn_blocking(build)
        .await
        .map_err(|_| failed())?
        .map_err(|e| {
            tracing::error!(error = %e, "result workbook");
            failed()
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, labels::report::XLSX.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        book,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ImportParams {
    /// The dispatch area every bag of the workbook goes into.
    #[param(example = "lucknow")]
    pub area: Option<String>,
    /// Parse and report only; write nothing.
    pub dry_run: Option<bool>,
    /// `json` (default): the report as JSON; `xlsx`: the result workbook (sheets `Summary`,
    /// `Done`: every row imported as it stands, `Problems`: sheet, row, code, message, value).
    #[param(example = "xlsx", pattern = "^(json|xlsx)$")]
    pub result: Option<String>,
}

/// A row that was not imported as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProblem {
    pub sheet: String,
    /// 1-based, as Excel numbers rows.
    pub row: u32,
    /// The stable code: invalid_qr, qr_is_parent, qr_is_child, parent_full, invalid_argument.
    pub code: String,
    pub message: String,
    /// The row's scanned text (column B), cut to 120 characters.
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub area: String,
    /// Parsed only: nothing was written.
    pub dry_run: bool,
    /// Non-empty rows read (headers included).
    pub rows: u64,
    pub parents_in_file: u64,
    pub labels_in_file: u64,
    /// Bags created (parents and labels).
    pub created: u64,
    pub parents_created: u64,
    pub labels_created: u64,
    /// Links made (labels put into their parents).
    pub linked: u64,
    /// Bags already registered: left as they were.
    pub unchanged: u64,
    /// Rows reported in `problems`.
    pub rejected: u64,
    /// True when nothing was created or linked (a re-run of the same workbook).
    pub nothing_changed: bool,
    /// Every row not imported as it stands, by sheet (workbook order) and row.
    pub problems: Vec<ImportProblem>,
}

impl From<import::LabelReport> for ImportReport {
    fn from(r: import::LabelReport) -> Self {
        let c = r.counts;
        Self {
            nothing_changed: r.nothing_new(),
            area: r.area,
            dry_run: r.dry_run,
            rows: r.rows,
            parents_in_file: r.parents_in_file,
            labels_in_file: r.children_in_file,
            created: c.parents_created + c.children_created,
            parents_created: c.parents_created,
            labels_created: c.children_created,
            linked: c.links_created,
            unchanged: c.unchanged,
            rejected: r.problems.len() as u64,
            problems: r
                .problems
                .into_iter()
                .map(|p| ImportProblem {
                    sheet: p.sheet,
                    row: p.row,
                    code: p.code,
                    message: p.message,
                    value: p.value,
                })
                .collect(),
        }
    }
}

fn invalid_workbook(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidWorkbook, message)
}

/// One workbook parse at a time per gateway: a parse may decompress up to
/// `labels::MAX_UNCOMPRESSED_BYTES` and hold up to `labels::MAX_ROWS` rows, so a second upload
/// meanwhile is shed (`overloaded`, 429 with `Retry-After`), not queued.
static PARSING: Semaphore = Semaphore::const_new(1);

/// The parse slot, held; `gateway_workbook_parses` is 1 while it is.
#[derive(Debug)]
struct ParseSlot(#[allow(dead_code)] SemaphorePermit<'static>);

impl Drop for ParseSlot {
    fn drop(&mut self) {
        metrics::gauge!("gateway_workbook_parses").set(0.0);
    }
}

fn parse_slot() -> Result<ParseSlot, ApiError> {
    let permit = PARSING.try_acquire().map_err(|_| {
        ApiError(
            AppError::new(
                ErrorCode::Overloaded,
                "another workbook is being read; try again in a moment",
            )
            .with_detail("retry_after_seconds", 1),
        )
    })?;
    metrics::gauge!("gateway_workbook_parses").set(1.0);
    Ok(ParseSlot(permit))
}

/// What the caller is told when a workbook cannot be read.
fn workbook_error(e: WorkbookError) -> ApiError {
    match e {
        WorkbookError::TooLarge { .. } => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string()),
        WorkbookError::Unreadable(_) => {
            invalid_workbook("the body is not a readable .xlsx workbook")
        }
        WorkbookError::Sheet { sheet, .. } => ApiError(
            invalid_workbook(format!("sheet {sheet:?} cannot be read"))
                .0
                .with_detail("sheet", sheet),
        ),
    }
}

/// Import a label-printing workbook (admin). The body is the `.xlsx` file itself (up to
/// `max_import_bytes`, 50 MiB by default, and at most 256 MiB once decompressed, 1,000,000
/// non-empty rows); every sheet is read: column A a serial number, column B the scanned text
/// (other columns are ignored), 15 or 30 label rows then the parent's row. One workbook is
/// read at a time: another upload meanwhile is `429 overloaded` (`Retry-After`). Bags already
/// registered are left alone, so uploading the same workbook again creates nothing
/// (`nothing_changed`). Rules: `tracetrack_labels`.
#[utoipa::path(post, path = "/api/v1/imports/labels", tag = "imports", params(ImportParams),
    request_body(description = "the .xlsx workbook as the raw body",
        content((Binary = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (Binary = "application/octet-stream"))),
    responses((status = 200, description = "what was created, and every bad row: JSON, or with `result=xlsx` the result workbook",
            content((ImportReport = "application/json"), (Binary = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 400, body = Problem, description = "invalid_workbook, area_required"),
        (status = 401, body = Problem, description = "unauthenticated"),
        (status = 403, body = Problem, description = "permission_denied: admins only"),
        (status = 413, body = Problem, description = "payload_too_large: over the upload size, the decompressed size, the files or the rows a workbook may have"),
        (status = 429, body = Problem, description = "overloaded: another workbook is being read (Retry-After)")))]
async fn import_labels(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if !ctx.is_admin() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "importing workbooks needs the role admin",
        ));
    }
    let xlsx = wants_xlsx(p.result.as_deref())?;
    let area = p.area.as_deref().map(str::trim).unwrap_or("").to_owned();
    if area.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AreaRequired,
            "name the area the workbook's bags go into (?area=…)",
        ));
    }
    let bytes = workbook_body(&state, &headers, body).await?;
    let lines = product_lines(&state, &ctx).await?;
    let slot = parse_slot()?;
    // Parsing a large workbook is CPU work: off the executor. The slot goes with it, so it is
    // held until the parse ends even if the caller goes away.
    let parsed = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        labels::parse_workbook(&bytes, &lines)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the workbook could not be parsed"))?
    .map_err(|e| {
        tracing::info!(error = %e, "label workbook refused");
        workbook_error(e)
    })?;
    tracing::info!(
        area,
        rows = parsed.rows,
        parents = parsed.parents(),
        labels = parsed.children(),
        problems = parsed.problems.len(),
        "label workbook parsed"
    );
    let report = if p.dry_run.unwrap_or(false) {
        import::LabelReport::dry_run(&area, &parsed)
    } else {
        let mut registry = state.0.registry_import.clone();
        import::import_labels(
            &mut registry,
            &ctx.token,
            &parsed,
            &area,
            DEFAULT_BATCH,
            |progress| {
                tracing::info!(
                    sent = progress.sent,
                    total = progress.total,
                    batches = progress.batches_sent,
                    "label import progress"
                );
            },
        )
        .await?
    };
    if !xlsx {
        return Ok(Json(ImportReport::from(report)).into_response());
    }
    // A large workbook's report is CPU work too: off the executor.
    xlsx_download("label-import-result.xlsx", move || report.to_xlsx(&parsed)).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BillImportParams {
    /// Parse and report only; write nothing.
    pub dry_run: Option<bool>,
    /// `json` (default): the report as JSON; `xlsx`: the result workbook (sheets `Summary`,
    /// `Done`: each bill row as created or existing and each parent row on its bill, as attached
    /// or already on this bill; `Problems`: sheet, row, code, message, value).
    #[param(example = "xlsx", pattern = "^(json|xlsx)$")]
    pub result: Option<String>,
}

/// A row of a bill workbook that was not imported as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillImportProblem {
    pub sheet: String,
    /// 1-based, as Excel numbers rows.
    pub row: u32,
    /// The stable code: bag_not_found, not_a_parent, on_other_bill, bill_full, bill_completed,
    /// invalid_qr, invalid_argument, …
    pub code: String,
    pub message: String,
    /// The row's column B (a parent's QR or a bill id), cut to 120 characters.
    pub value: String,
    /// With on_other_bill: the bill the parent is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_bill_id: Option<String>,
}

/// One bill of the workbook, after the import.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillImportBill {
    pub bill_id: String,
    /// Its first Bill row.
    pub sheet: String,
    pub row: u32,
    /// Created by this import; false: it existed and was left as it was.
    pub created: bool,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct BillImportReport {
    /// Parsed only: nothing was written.
    pub dry_run: bool,
    /// Non-empty rows read (headers included).
    pub rows: u64,
    pub bills_in_file: u64,
    pub parents_in_file: u64,
    pub bills_created: u64,
    /// Bills that existed (left as they were; their parents still attached).
    pub bills_existing: u64,
    /// Parents attached by this import.
    pub attached: u64,
    /// Parents already on their bill: left as they were.
    pub already_attached: u64,
    /// Rows reported in `problems`.
    pub rejected: u64,
    /// True when no bill was created and no parent attached (a re-run of the same workbook).
    pub nothing_changed: bool,
    pub bills: Vec<BillImportBill>,
    /// Every row not imported as it stands, by sheet (workbook order) and row.
    pub problems: Vec<BillImportProblem>,
}

impl From<&BillReport> for BillImportReport {
    fn from(r: &BillReport) -> Self {
        let created = r.bills.iter().filter(|b| b.created).count() as u64;
        Self {
            dry_run: r.dry_run,
            rows: r.rows,
            bills_in_file: r.bills_in_file,
            parents_in_file: r.parents_in_file,
            bills_created: r.bills_created,
            bills_existing: r.bills.len() as u64 - created,
            attached: r.attached,
            already_attached: r.already_attached,
            rejected: r.problems.len() as u64,
            nothing_changed: !r.dry_run && r.nothing_changed(),
            bills: r
                .bills
                .iter()
                .map(|b| BillImportBill {
                    bill_id: b.bill_id.clone(),
                    sheet: b.sheet.clone(),
                    row: b.row,
                    created: b.created,
                    status: b.status.clone(),
                    capacity: b.capacity,
                    parent_count: b.parent_count,
                    attached: b.attached,
                    already_attached: b.already_attached,
                    refused: b.refused,
                })
                .collect(),
            problems: r
                .problems
                .iter()
                .map(|p| BillImportProblem {
                    sheet: p.sheet.clone(),
                    row: p.row,
                    code: p.code.clone(),
                    message: p.message.clone(),
                    value: p.value.clone(),
                    other_bill_id: p.other_bill_id.clone(),
                })
                .collect(),
        }
    }
}

/// Parents per AttachParents call (a bill holds at most 500).
const ATTACH_CHUNK: usize = 500;

fn row_problem(sheet: &str, row: u32, e: &AppError, value: &str) -> labels::Problem {
    labels::Problem {
        sheet: sheet.to_owned(),
        row,
        code: e.code.as_str().to_owned(),
        message: e.message.clone(),
        value: value.chars().take(120).collect(),
        other_bill_id: e.detail("other_bill_id").map(str::to_owned),
    }
}

/// Creates each bill that does not exist and attaches its parents (AttachParents, up to
/// [`ATTACH_CHUNK`] per call), each call under a key derived from the request's, so the same
/// request sent again makes the same calls. A refusal is reported on its row; an upstream that
/// does not answer fails the import (what was done stays done, and a re-run finishes it).
async fn send_bills(state: &AppState, ctx: &Ctx, parsed: &BillImport) -> ApiResult<BillReport> {
    let mut report = BillReport::start(parsed);
    for group in &parsed.bills {
        let key = tracetrack_domain::bill::key(&group.bill_id);
        let mut outcome = BillOutcome {
            bill_id: group.bill_id.clone(),
            sheet: group.sheet.clone(),
            row: group.row,
            ..BillOutcome::default()
        };
        let create = bpb::CreateBillRequest {
            bill_id: group.bill_id.clone(),
            capacity: group.capacity_for_new(),
            description: group.description.clone().unwrap_or_default(),
            destination: group.destination.clone().unwrap_or_default(),
            vehicle_number: group.vehicle_number.clone().unwrap_or_default(),
        };
        let purpose = format!("bill-import:create:{key}");
        let created = tracetrack_base::client::retry_transport(|| {
            let mut billing = state.0.billing.clone();
            let req = ctx.write_part(create.clone(), &purpose);
            async move { billing.create_bill(req).await }
        })
        .await;
        match created {
            Ok(r) => {
                outcome.created = true;
                report.bills_created += 1;
                if let Some(b) = r.into_inner().bill {
                    outcome.status = bpb::BillStatus::name_of(b.status).to_owned();
                    outcome.capacity = b.capacity;
                }
            }
            Err(s) => {
                let e = AppError::from_status(&s);
                if e.code != ErrorCode::BillExists {
                    if e.code.is_retryable() {
                        return Err(e.into());
                    }
                    let mut p = row_problem(&group.sheet, group.row, &e, &group.bill_id);
                    p.message = format!(
                        "the bill could not be created: {}; its {} parent rows are not imported",
                        e.message,
                        group.parents.len()
                    );
                    report.problems.push(p);
                    outcome.refused = group.parents.len() as u64;
                    report.bills.push(outcome);
                    continue;
                }
            }
        }
        for (k, chunk) in group.parents.chunks(ATTACH_CHUNK).enumerate() {
            let attach = bpb::AttachParentsRequest {
                bill_id: group.bill_id.clone(),
                parent_qrs: chunk.iter().map(|p| p.qr.clone()).collect(),
            };
            let purpose = format!("bill-import:attach:{key}:{k}");
            let answer = tracetrack_base::client::retry_transport(|| {
                let mut billing = state.0.billing_import.clone();
                let req = ctx.write_part(attach.clone(), &purpose);
                async move { billing.attach_parents(req).await }
            })
            .await;
            let answer = match answer {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    let e = AppError::from_status(&s);
                    if e.code.is_retryable() {
                        return Err(e.into());
                    }
                    for p in chunk {
                        report
                            .problems
                            .push(row_problem(&p.sheet, p.row, &e, &p.qr));
                    }
                    outcome.refused += chunk.len() as u64;
                    continue;
                }
            };
            if let Some(b) = &answer.bill {
                outcome.status = bpb::BillStatus::name_of(b.status).to_owned();
                outcome.capacity = b.capacity;
                outcome.parent_count = b.parent_count;
            }
            for (p, r) in chunk.iter().zip(answer.results) {
                if r.attached || r.already_attached {
                    if r.attached {
                        outcome.attached += 1;
                        report.attached += 1;
                    } else {
                        outcome.already_attached += 1;
                        report.already_attached += 1;
                    }
                    report.done.push(DoneParent {
                        sheet: p.sheet.clone(),
                        row: p.row,
                        qr: p.qr.clone(),
                        bill_id: group.bill_id.clone(),
                        already_attached: r.already_attached,
                    });
                    continue;
                }
                let code = ErrorCode::parse(&r.code).unwrap_or(ErrorCode::Internal);
                let mut e = AppError::new(code, r.message);
                if !r.other_bill_id.is_empty() {
                    e = AppError::new(code, format!("{} ({})", e.message, r.other_bill_id))
                        .with_detail("other_bill_id", r.other_bill_id);
                }
                report
                    .problems
                    .push(row_problem(&p.sheet, p.row, &e, &p.qr));
                outcome.refused += 1;
            }
        }
        report.bills.push(outcome);
    }
    report.finish(parsed);
    Ok(report)
}

/// Import a bill workbook (admin, biller). The body is the `.xlsx` file itself (the limits of
/// the label import); every sheet is read: column A a serial number, column B a parent's QR,
/// and after a bill's parent rows a row whose column A says `Bill` and whose column B holds the
/// bill id (columns C-F: capacity, destination, vehicle number, description, used only when the
/// bill is created). Each bill that does not exist is created (capacity: column C, else its
/// parent rows); its parents are attached as scans attach them, every refused row reported with
/// its code (`bag_not_found`, `not_a_parent`, `on_other_bill` with `other_bill_id`,
/// `bill_full`, …). An existing bill is never changed; uploading the same workbook again
/// creates and attaches nothing (`nothing_changed`). Rules: `tracetrack_labels::bills`.
#[utoipa::path(post, path = "/api/v1/imports/bills", tag = "imports", params(BillImportParams),
    request_body(description = "the .xlsx workbook as the raw body",
        content((Binary = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (Binary = "application/octet-stream"))),
    responses((status = 200, description = "bills created, parents attached, and every bad row: JSON, or with `result=xlsx` the result workbook",
            content((BillImportReport = "application/json"), (Binary = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 400, body = Problem, description = "invalid_workbook, invalid_argument"),
        (status = 401, body = Problem, description = "unauthenticated"),
        (status = 403, body = Problem, description = "permission_denied: admins and billers only"),
        (status = 413, body = Problem, description = "payload_too_large: over the upload size, the decompressed size, the files or the rows a workbook may have"),
        (status = 429, body = Problem, description = "overloaded: another workbook is being read (Retry-After)"),
        (status = 503, body = Problem, description = "unavailable: billing or bag-registry did not answer (what was done stays; run it again)")))]
async fn import_bills(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<BillImportParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if !matches!(
        ctx.user.role,
        tracetrack_domain::Role::Admin | tracetrack_domain::Role::Biller
    ) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "importing bill workbooks needs the role admin or biller",
        ));
    }
    let xlsx = wants_xlsx(p.result.as_deref())?;
    let bytes = workbook_body(&state, &headers, body).await?;
    let lines = product_lines(&state, &ctx).await?;
    let slot = parse_slot()?;
    let parsed = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        labels::bills::parse_bill_workbook(&bytes, &lines)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the workbook could not be parsed"))?
    .map_err(|e| {
        tracing::info!(error = %e, "bill workbook refused");
        workbook_error(e)
    })?;
    tracing::info!(
        rows = parsed.rows,
        bills = parsed.bills.len(),
        parents = parsed.parents(),
        problems = parsed.problems.len(),
        "bill workbook parsed"
    );
    let report = if p.dry_run.unwrap_or(false) {
        BillReport::dry_run(&parsed)
    } else {
        send_bills(&state, &ctx, &parsed).await?
    };
    if !xlsx {
        return Ok(Json(BillImportReport::from(&report)).into_response());
    }
    xlsx_download("bill-import-result.xlsx", move || report.to_xlsx()).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn one_parse_at_a_time_and_the_second_is_told_when_to_retry() {
        let first = parse_slot().unwrap();
        let refused = parse_slot().unwrap_err().0;
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert_eq!(refused.code.http_status(), 429);
        assert_eq!(refused.detail("retry_after_seconds"), Some("1"));
        drop(first);
        drop(parse_slot().unwrap());
    }

    #[test]
    fn too_large_is_413_and_unreadable_is_400() {
        let e = workbook_error(WorkbookError::TooLarge {
            what: "the archive's decompressed size",
            limit: "256 MiB".into(),
        })
        .0;
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert_eq!(e.code.http_status(), 413);
        assert!(e.message.contains("256 MiB"), "{}", e.message);
        let e = workbook_error(WorkbookError::Unreadable("x".into())).0;
        assert_eq!(e.code, ErrorCode::InvalidWorkbook);
        assert_eq!(e.code.http_status(), 400);
    }
}
