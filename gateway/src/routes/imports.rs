//! /api/v1/imports/labels (admin): a label-printing workbook uploaded as the raw request body,
//! parsed and written exactly as `tracetrack-import-labels` does it (the parser and the
//! ImportBags client are `tracetrack_labels`'): bags through bag-registry's ImportBags in
//! batches (COPY), every bad row reported with its sheet, row and code, and a second upload of
//! the same workbook changes nothing and says so.

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
use tracetrack_labels::import::{self, DEFAULT_BATCH};
use tracetrack_labels::{self as labels, WorkbookError};
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
    OpenApiRouter::new().routes(routes!(import_labels))
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
    let xlsx = match p.result.as_deref() {
        None | Some("json") => false,
        Some("xlsx") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "result must be json or xlsx",
            ))
        }
    };
    let area = p.area.as_deref().map(str::trim).unwrap_or("").to_owned();
    if area.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AreaRequired,
            "name the area the workbook's bags go into (?area=…)",
        ));
    }
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
    let slot = parse_slot()?;
    // Parsing a large workbook is CPU work: off the executor. The slot goes with it, so it is
    // held until the parse ends even if the caller goes away.
    let parsed = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        labels::parse_workbook(&bytes, &ProductLine::defaults())
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
    let book = tokio::task::spawn_blocking(move || report.to_xlsx(&parsed))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "the result workbook could not be built",
            )
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "result workbook");
            ApiError::new(
                ErrorCode::Internal,
                "the result workbook could not be built",
            )
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, labels::report::XLSX),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"label-import-result.xlsx\"",
            ),
        ],
        book,
    )
        .into_response())
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
