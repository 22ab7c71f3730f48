//! /api/v1/stats, /api/v1/audit and bag history: the read models of the stats service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tracetrack_proto::stats::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{rfc3339, Page, Problem};
use crate::error::ApiResult;
use crate::extract::Query;
use crate::filters::{AuditFilter, PageParams};
use crate::live::{Next, Source};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dashboard))
        .routes(routes!(live))
        .routes(routes!(scans_per_hour))
        .routes(routes!(user_activity))
        .routes(routes!(audit))
        .routes(routes!(bag_history))
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct AreaFigures {
    pub area: String,
    pub parents: i64,
    pub children: i64,
    pub unlinked_children: i64,
    pub scans_today: i64,
    pub scans_last_hour: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Dashboard {
    pub parents: i64,
    pub children: i64,
    pub unlinked_children: i64,
    /// Successful child scans since midnight in the business time zone.
    pub scans_today: i64,
    pub scans_last_hour: i64,
    pub bills_by_status: std::collections::BTreeMap<String, i64>,
    pub areas: Vec<AreaFigures>,
    /// When stats read these figures from its read models (RFC 3339, always present). An
    /// answer from the gateway's memory (the snapshot of its one upstream stream, used while
    /// that stream is connected and the snapshot arrived less than
    /// `dashboard_snapshot_max_age_ms`, 2 s by default, ago) carries the snapshot's time.
    pub as_of: String,
    /// Seconds between the newest event's time and its arrival in the read model.
    pub freshness_seconds: f64,
    /// Parents returned on return tickets since midnight (admin and biller; 0 in a dispatcher's
    /// view, as returns are not their work).
    pub returns_today: i64,
}

/// The dashboard as a viewer sees it: a dispatcher's is narrowed to their area.
pub fn view(d: &pb::Dashboard, area: Option<&str>) -> Dashboard {
    let areas: Vec<AreaFigures> = d
        .areas
        .iter()
        .filter(|a| area.is_none_or(|x| x == a.area))
        .map(|a| AreaFigures {
            area: a.area.clone(),
            parents: a.parents,
            children: a.children,
            unlinked_children: a.unlinked_children,
            scans_today: a.scans_today,
            scans_last_hour: a.scans_last_hour,
        })
        .collect();
    let sum = |f: fn(&AreaFigures) -> i64| areas.iter().map(f).sum::<i64>();
    Dashboard {
        parents: if area.is_some() {
            sum(|a| a.parents)
        } else {
            d.parents
        },
        children: if area.is_some() {
            sum(|a| a.children)
        } else {
            d.children
        },
        unlinked_children: if area.is_some() {
            sum(|a| a.unlinked_children)
        } else {
            d.unlinked_children
        },
        scans_today: if area.is_some() {
            sum(|a| a.scans_today)
        } else {
            d.scans_today
        },
        scans_last_hour: if area.is_some() {
            sum(|a| a.scans_last_hour)
        } else {
            d.scans_last_hour
        },
        bills_by_status: d
            .bills_by_status
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        areas,
        as_of: rfc3339(&d.as_of).unwrap_or_else(|| {
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
        freshness_seconds: d.freshness_seconds,
        returns_today: if area.is_some() { 0 } else { d.returns_today },
    }
}

fn viewer_area(ctx: &Ctx) -> Option<String> {
    ctx.user
        .role
        .is_area_scoped()
        .then(|| ctx.user.area.clone().unwrap_or_default())
}

/// Dashboard figures (a dispatcher's are their area's; `returns_today` is 0 in their view).
/// Answered from the gateway's memory while its upstream stream is connected and fresh, else by
/// stats; `as_of` says when the figures were read.
#[utoipa::path(get, path = "/api/v1/stats/dashboard", tag = "stats",
    responses((status = 200, body = Dashboard), (status = 503, body = Problem, description = "stats cannot be reached and the gateway holds no fresh snapshot (`unavailable`)")))]
async fn get_dashboard(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<Dashboard>> {
    let area = viewer_area(&ctx);
    if let Some(d) = fresh_snapshot(&state) {
        metrics::counter!("gateway_dashboard_answers_total", "source" => "memory").increment(1);
        return Ok(Json(view(&d, area.as_deref())));
    }
    let d = crate::read!(
        state.0.stats,
        get_dashboard,
        ctx.read(pb::GetDashboardRequest {})
    )
    .await?;
    metrics::counter!("gateway_dashboard_answers_total", "source" => "stats").increment(1);
    // stats has scoped it to the caller already; the same view as from memory (and the live
    // stream) follows, so both sources answer alike.
    Ok(Json(view(&d, area.as_deref())))
}

/// The all-areas snapshot of the upstream stream, if it is connected and the snapshot arrived
/// less than `dashboard_snapshot_max_age_ms` ago.
fn fresh_snapshot(state: &AppState) -> Option<Arc<pb::Dashboard>> {
    let max_age = Duration::from_millis(state.0.settings.dashboard_snapshot_max_age_ms);
    let memory = state
        .0
        .dashboard_memory
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let (arrived, d) = memory.as_ref()?;
    (arrived.elapsed() < max_age).then(|| d.clone())
}

/// Sets (or, with `None`, forgets: the stream is not connected) the snapshot GETs answer from.
fn remember(state: &AppState, d: Option<Arc<pb::Dashboard>>) {
    *state
        .0
        .dashboard_memory
        .write()
        .unwrap_or_else(|e| e.into_inner()) = d.map(|d| (std::time::Instant::now(), d));
}

/// Dashboard figures as Server-Sent Events (`event: dashboard`) whenever they change.
#[utoipa::path(get, path = "/api/v1/stats/live", tag = "stats", operation_id = "live_dashboard",
    responses((status = 200, content_type = "text/event-stream", description = "`dashboard` events")))]
async fn live(
    State(state): State<AppState>,
    ctx: Ctx,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let mut rx = state.0.dashboard_live.subscribe();
    rx.mark_changed();
    let source = LiveDashboard {
        rx,
        area: viewer_area(&ctx),
        last: None,
    };
    crate::live::sse(&state, &ctx, "dashboard", 8, source)
}

/// A viewer's dashboard (a dispatcher's is their area's), sent when what they see changes.
struct LiveDashboard {
    rx: tokio::sync::watch::Receiver<Option<Arc<pb::Dashboard>>>,
    area: Option<String>,
    last: Option<Dashboard>,
}

impl Source for LiveDashboard {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Next> + Send + '_>> {
        Box::pin(async move {
            if self.rx.changed().await.is_err() {
                return Next::End;
            }
            let current = self.rx.borrow_and_update().clone();
            let Some(d) = current else {
                return Next::Skip;
            };
            let v = view(&d, self.area.as_deref());
            if self.last.as_ref() == Some(&v) {
                return Next::Skip;
            }
            let event = Event::default().event("dashboard").json_data(&v);
            self.last = Some(v);
            Next::Send(event.unwrap_or_default())
        })
    }
}

/// Holds the gateway's one upstream WatchDashboard stream (service token alone: every area),
/// fanned out to the live views and kept for the dashboard GET while connected.
pub async fn pump_live_dashboard(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    for source in ["memory", "stats"] {
        metrics::counter!("gateway_dashboard_answers_total", "source" => source).increment(0);
    }
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        match state
            .0
            .stats
            .clone()
            .watch_dashboard(pb::WatchDashboardRequest {})
            .await
        {
            Ok(resp) => {
                backoff = Duration::from_millis(200);
                let mut stream = resp.into_inner();
                loop {
                    tokio::select! {
                        _ = stop.changed() => { remember(&state, None); return; }
                        msg = stream.message() => match msg {
                            Ok(Some(d)) => {
                                let d = Arc::new(d);
                                remember(&state, Some(d.clone()));
                                state.0.dashboard_live.send_replace(Some(d));
                            }
                            Ok(None) => break,
                            Err(e) => { tracing::warn!(error = %e, "live dashboard stream interrupted"); break; }
                        },
                    }
                }
                // Cut: GETs ask stats until the stream is back.
                remember(&state, None);
            }
            Err(e) => tracing::debug!(error = %e, "live dashboard stream unavailable"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HourParams {
    /// 1–14 (default 14).
    #[param(example = 7)]
    pub days: Option<u32>,
    #[param(example = "lucknow")]
    pub area: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourBucket {
    /// Local hour in the business time zone.
    pub hour: String,
    pub scans: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScansPerHour {
    pub time_zone: String,
    pub buckets: Vec<HourBucket>,
}

/// Successful child scans per hour for the last days.
#[utoipa::path(get, path = "/api/v1/stats/scans-per-hour", tag = "stats", params(HourParams), responses((status = 200, body = ScansPerHour)))]
async fn scans_per_hour(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<HourParams>,
) -> ApiResult<Json<ScansPerHour>> {
    let req = pb::GetScansPerHourRequest {
        days: p.days.unwrap_or(14),
        area: p.area.unwrap_or_default(),
    };
    let r = crate::read!(state.0.stats, get_scans_per_hour, ctx.read(req.clone())).await?;
    Ok(Json(ScansPerHour {
        time_zone: r.time_zone,
        buckets: r
            .buckets
            .into_iter()
            .map(|b| HourBucket {
                hour: b.hour,
                scans: b.scans,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCount {
    pub day: String,
    pub scans: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserActivity {
    pub user_id: String,
    pub username: String,
    pub total_scans: i64,
    pub last_scan_at: Option<String>,
    pub last_login_at: Option<String>,
    /// The last 14 business days, oldest first.
    pub scans_per_day: Vec<DayCount>,
}

/// A user's activity (admin).
#[utoipa::path(get, path = "/api/v1/stats/users/{id}/activity", tag = "stats",
    params(("id" = String, Path, example = json!(crate::routes::users::EXAMPLE_USER_ID))),
    responses((status = 200, body = UserActivity), (status = 403, body = Problem)))]
async fn user_activity(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<UserActivity>> {
    let r = crate::read!(
        state.0.stats,
        get_user_activity,
        ctx.read(pb::GetUserActivityRequest {
            user_id: id.clone()
        })
    )
    .await?;
    Ok(Json(UserActivity {
        user_id: r.user_id,
        username: r.username,
        total_scans: r.total_scans,
        last_scan_at: rfc3339(&r.last_scan_at),
        last_login_at: rfc3339(&r.last_login_at),
        scans_per_day: r
            .scans_per_day
            .into_iter()
            .map(|d| DayCount {
                day: d.day,
                scans: d.scans,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub event_id: String,
    pub occurred_at: Option<String>,
    pub action: String,
    pub source: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub actor_user_id: Option<String>,
    /// A person's username, or `key:<name>` for an API key (usernames never hold a `:`).
    pub actor_username: String,
    pub actor_service: String,
    /// Who acted: `user` (a person), `api_key` (an integration's key; `actor_user_id` is the
    /// key's id), `service` (a service on its own), or `system` (nobody named).
    #[schema(pattern = "^(user|api_key|service|system)$")]
    pub actor_kind: &'static str,
    /// The actor's address: admins only (empty for other roles).
    pub ip: String,
    /// The event's body (before/after where meaningful): admins only (`{}` for other roles).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The actor's kind, from what the event names: an API key acts as `key:<name>` with its id
/// (issue 17 §2). A failed login names whatever was typed and no id, so it is never a key's.
fn actor_kind(user_id: &str, username: &str, service: &str) -> &'static str {
    if username.starts_with("key:") && !user_id.is_empty() {
        "api_key"
    } else if !username.is_empty() {
        "user"
    } else if !service.is_empty() {
        "service"
    } else {
        "system"
    }
}

fn audit_event(e: pb::AuditEvent) -> AuditEvent {
    AuditEvent {
        actor_kind: actor_kind(&e.actor_user_id, &e.actor_username, &e.actor_service),
        occurred_at: rfc3339(&e.occurred_at),
        // Raw details (and the actor's address) reach admins only; others get an empty object.
        details: serde_json::from_str(&e.details_json)
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
        actor_user_id: Some(e.actor_user_id).filter(|s| !s.is_empty()),
        event_id: e.event_id,
        action: e.action,
        source: e.source,
        aggregate_type: e.aggregate_type,
        aggregate_id: e.aggregate_id,
        actor_username: e.actor_username,
        actor_service: e.actor_service,
        ip: e.ip,
    }
}

/// The audit trail (admin), newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "stats", params(AuditFilter, PageParams),
    responses((status = 200, body = Page<AuditEvent>), (status = 403, body = Problem)))]
async fn audit(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(filter): Query<AuditFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    let req = filter.list(page)?;
    let r = crate::read!(state.0.stats, list_audit_events, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.events.into_iter().map(audit_event).collect(),
        r.next_page_token,
    )))
}

/// Everything that happened to one bag, oldest first.
#[utoipa::path(get, path = "/api/v1/bags/{qr}/history", tag = "bags", params(("qr" = String, Path, example = "SB10001")),
    responses((status = 200, body = Vec<AuditEvent>)))]
async fn bag_history(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(qr): Path<String>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    let r = crate::read!(
        state.0.stats,
        get_bag_history,
        ctx.read(pb::GetBagHistoryRequest { qr: qr.clone() })
    )
    .await?;
    Ok(Json(r.events.into_iter().map(audit_event).collect()))
}
