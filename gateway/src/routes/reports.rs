//! /api/v1/reports: the bill summary (JSON, printable HTML, CSV, XLSX) and the end-of-day report
//! (preview, its XLSX, send now). Admin and biller (SPEC's role table); stats checks the role
//! itself, the gateway only passes the session on.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::stats::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{rfc3339, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(summary_html))
        .routes(routes!(summary_csv))
        .routes(routes!(summary_xlsx))
        .routes(routes!(daily))
        .routes(routes!(daily_html))
        .routes(routes!(daily_xlsx))
        .routes(routes!(send_daily))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SummaryParams {
    /// First business day, included (YYYY-MM-DD).
    #[param(example = "2026-12-01", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub from: String,
    /// Last business day, included (YYYY-MM-DD); at most 366 days after `from`.
    #[param(example = "2026-12-05", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub to: String,
    /// `en` (default) or `hi`, for the printable page.
    #[param(example = "en", pattern = "^(en|hi)$")]
    pub lang: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillerFigures {
    pub biller: String,
    pub bills_created: i64,
    /// Of the bills created, those completed now.
    pub bills_completed: i64,
    pub parents: i64,
    pub capacity: i64,
    pub children: i64,
    pub actual_weight_kg: f64,
    pub expected_weight_kg: f64,
    /// bills_completed / bills_created × 100.
    pub completion_percent: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillSummary {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub billers: Vec<BillerFigures>,
    pub totals: BillerFigures,
}

fn figures(f: pb::BillerFigures) -> BillerFigures {
    BillerFigures {
        biller: f.biller,
        bills_created: f.bills_created,
        bills_completed: f.bills_completed,
        parents: f.parents,
        capacity: f.capacity,
        children: f.children,
        actual_weight_kg: f.actual_weight_kg,
        expected_weight_kg: f.expected_weight_kg,
        completion_percent: f.completion_percent,
    }
}

fn lang(l: Option<&str>) -> ApiResult<String> {
    match l {
        None | Some("en") => Ok("en".into()),
        Some("hi") => Ok("hi".into()),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "lang must be en or hi",
        )),
    }
}

async fn get_summary(
    state: &AppState,
    ctx: &Ctx,
    p: SummaryParams,
    format: pb::ReportFormat,
) -> ApiResult<pb::GetBillSummaryResponse> {
    let req = pb::GetBillSummaryRequest {
        from_day: p.from,
        to_day: p.to,
        format: format as i32,
        lang: lang(p.lang.as_deref())?,
    };
    crate::read!(state.0.stats, get_bill_summary, ctx.read(req.clone())).await
}

/// A rendered report as a file (or, for HTML, a page with its own inline stylesheet allowed).
fn file(doc: Option<pb::ReportDocument>, inline: bool) -> Response {
    let doc = doc.unwrap_or_default();
    let mut resp = Response::new(axum::body::Body::from(doc.body));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&doc.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if inline {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
    } else if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", doc.filename))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Bills created per biller over business days: created, completed, parents, children, actual
/// and expected weight, completion %; totals. Figures from billing (read, not copied).
#[utoipa::path(get, path = "/api/v1/reports/bill-summary", tag = "reports", params(SummaryParams),
    responses((status = 200, body = BillSummary), (status = 400, body = Problem, description = "invalid_argument"),
        (status = 403, body = Problem, description = "permission_denied: admin and biller")))]
async fn summary(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<SummaryParams>,
) -> ApiResult<Json<BillSummary>> {
    let s = get_summary(&state, &ctx, p, pb::ReportFormat::Unspecified).await?;
    Ok(Json(BillSummary {
        from: s.from_day,
        to: s.to_day,
        time_zone: s.time_zone,
        billers: s.billers.into_iter().map(figures).collect(),
        totals: figures(s.totals.unwrap_or_default()),
    }))
}

/// The bill summary as a printable page.
#[utoipa::path(get, path = "/api/v1/reports/bill-summary.html", tag = "reports", params(SummaryParams),
    responses((status = 200, content_type = "text/html", description = "printable page"), (status = 400, body = Problem)))]
async fn summary_html(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<SummaryParams>,
) -> ApiResult<Response> {
    let s = get_summary(&state, &ctx, p, pb::ReportFormat::Html).await?;
    Ok(file(s.document, true))
}

/// The bill summary as CSV: one row per biller, then a TOTAL row.
#[utoipa::path(get, path = "/api/v1/reports/bill-summary.csv", tag = "reports", params(SummaryParams),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = Problem)))]
async fn summary_csv(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<SummaryParams>,
) -> ApiResult<Response> {
    let s = get_summary(&state, &ctx, p, pb::ReportFormat::Csv).await?;
    Ok(file(s.document, false))
}

/// The bill summary as XLSX (sheet "Summary", a TOTAL row last).
#[utoipa::path(get, path = "/api/v1/reports/bill-summary.xlsx", tag = "reports", params(SummaryParams),
    responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::routes::exports::Binary),
        (status = 400, body = Problem)))]
async fn summary_xlsx(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<SummaryParams>,
) -> ApiResult<Response> {
    let s = get_summary(&state, &ctx, p, pb::ReportFormat::Xlsx).await?;
    Ok(file(s.document, false))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DayParams {
    /// Business day (YYYY-MM-DD); absent: the last day whose cut-off has passed.
    #[param(example = "2026-12-05", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub day: Option<String>,
    #[param(example = "en", pattern = "^(en|hi)$")]
    pub lang: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportParent {
    pub qr: String,
    pub child_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportBill {
    pub bill_id: String,
    pub biller: String,
    pub destination: String,
    pub vehicle_number: String,
    pub parent_count: i32,
    pub capacity: i32,
    pub child_count: i64,
    pub actual_weight_kg: f64,
    pub expected_weight_kg: f64,
    pub status: String,
    pub created_at: Option<String>,
    pub parents: Vec<ReportParent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NameCount {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportReturn {
    pub ticket_id: String,
    pub bill_id: String,
    pub parent_qr: String,
    pub child_count: i32,
    pub weight_kg: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportTotals {
    pub bills: i64,
    pub parents: i64,
    pub children: i64,
    pub actual_weight_kg: f64,
    pub expected_weight_kg: f64,
    pub scans: i64,
    pub returns: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDelivery {
    /// pending, sent, skipped or failed.
    pub status: String,
    pub attempts: i32,
    pub sent_at: Option<String>,
    pub last_error: String,
    pub message_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyReport {
    pub day: String,
    pub time_zone: String,
    /// The window covered: [previous cut-off, this cut-off).
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub bills: Vec<ReportBill>,
    pub scans_by_area: Vec<NameCount>,
    pub scans_by_dispatcher: Vec<NameCount>,
    pub returns: Vec<ReportReturn>,
    pub totals: ReportTotals,
    /// A day without activity is not sent.
    pub has_activity: bool,
    /// Its scheduled delivery, once the day was due.
    pub delivery: Option<ReportDelivery>,
    /// Whether an SMTP server is configured (else reports are only previewed).
    pub mail_enabled: bool,
}

async fn get_daily(
    state: &AppState,
    ctx: &Ctx,
    p: DayParams,
    with_xlsx: bool,
) -> ApiResult<pb::DailyReport> {
    let req = pb::PreviewDailyReportRequest {
        day: p.day.unwrap_or_default(),
        with_xlsx,
        lang: lang(p.lang.as_deref())?,
    };
    crate::read!(state.0.stats, preview_daily_report, ctx.read(req.clone())).await
}

fn nc(v: Vec<pb::NameCount>) -> Vec<NameCount> {
    v.into_iter()
        .map(|n| NameCount {
            name: n.name,
            count: n.count,
        })
        .collect()
}

/// The end-of-day report of a day as it would be sent now, with its delivery record.
#[utoipa::path(get, path = "/api/v1/reports/daily", tag = "reports", params(DayParams),
    responses((status = 200, body = DailyReport), (status = 400, body = Problem, description = "invalid_argument"),
        (status = 403, body = Problem, description = "permission_denied: admin and biller")))]
async fn daily(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<DayParams>,
) -> ApiResult<Json<DailyReport>> {
    let r = get_daily(&state, &ctx, p, false).await?;
    let t = r.totals.unwrap_or_default();
    Ok(Json(DailyReport {
        day: r.day,
        time_zone: r.time_zone,
        window_from: rfc3339(&r.window_from),
        window_to: rfc3339(&r.window_to),
        bills: r
            .bills
            .into_iter()
            .map(|b| ReportBill {
                created_at: rfc3339(&b.created_at),
                bill_id: b.bill_id,
                biller: b.biller,
                destination: b.destination,
                vehicle_number: b.vehicle_number,
                parent_count: b.parent_count,
                capacity: b.capacity,
                child_count: b.child_count,
                actual_weight_kg: b.actual_weight_kg,
                expected_weight_kg: b.expected_weight_kg,
                status: b.status,
                parents: b
                    .parents
                    .into_iter()
                    .map(|p| ReportParent {
                        qr: p.qr,
                        child_count: p.child_count,
                    })
                    .collect(),
            })
            .collect(),
        scans_by_area: nc(r.scans_by_area),
        scans_by_dispatcher: nc(r.scans_by_dispatcher),
        returns: r
            .returns
            .into_iter()
            .map(|x| ReportReturn {
                ticket_id: x.ticket_id,
                bill_id: x.bill_id,
                parent_qr: x.parent_qr,
                child_count: x.child_count,
                weight_kg: x.weight_kg,
            })
            .collect(),
        totals: ReportTotals {
            bills: t.bills,
            parents: t.parents,
            children: t.children,
            actual_weight_kg: t.actual_weight_kg,
            expected_weight_kg: t.expected_weight_kg,
            scans: t.scans,
            returns: t.returns,
        },
        has_activity: r.has_activity,
        delivery: r.delivery.map(|d| ReportDelivery {
            sent_at: rfc3339(&d.sent_at),
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            message_id: d.message_id,
        }),
        mail_enabled: r.mail_enabled,
    }))
}

/// The end-of-day report's e-mail body (HTML), for the preview.
#[utoipa::path(get, path = "/api/v1/reports/daily.html", tag = "reports", params(DayParams),
    responses((status = 200, content_type = "text/html", description = "the e-mail's HTML"), (status = 400, body = Problem)))]
async fn daily_html(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<DayParams>,
) -> ApiResult<Response> {
    let r = get_daily(&state, &ctx, p, false).await?;
    Ok(file(
        Some(pb::ReportDocument {
            content_type: "text/html; charset=utf-8".into(),
            filename: String::new(),
            body: r.html.into_bytes(),
        }),
        true,
    ))
}

/// The end-of-day report's XLSX attachment.
#[utoipa::path(get, path = "/api/v1/reports/daily.xlsx", tag = "reports", params(DayParams),
    responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::routes::exports::Binary),
        (status = 400, body = Problem)))]
async fn daily_xlsx(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<DayParams>,
) -> ApiResult<Response> {
    let r = get_daily(&state, &ctx, p, true).await?;
    Ok(file(r.xlsx, false))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SendDaily {
    /// Business day (YYYY-MM-DD); absent: the last day whose cut-off has passed.
    #[schema(example = "2026-12-05", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub day: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    pub message_id: String,
    pub recipients: Vec<String>,
}

/// Sends a day's end-of-day report to the configured recipients now (a replay with the same
/// Idempotency-Key sends under the same Message-ID).
#[utoipa::path(post, path = "/api/v1/reports/daily/send", tag = "reports", request_body = SendDaily,
    responses((status = 200, body = Sent), (status = 400, body = Problem, description = "invalid_argument"),
        (status = 403, body = Problem, description = "permission_denied: admin and biller"),
        (status = 503, body = Problem, description = "unavailable: no SMTP server, or it refused")))]
async fn send_daily(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<SendDaily>,
) -> ApiResult<Json<Sent>> {
    let r = crate::mutate!(
        state.0.stats,
        send_daily_report,
        ctx,
        pb::SendDailyReportRequest {
            day: b.day.unwrap_or_default(),
        }
    )
    .await?
    .into_inner();
    Ok(Json(Sent {
        message_id: r.message_id,
        recipients: r.recipients,
    }))
}
