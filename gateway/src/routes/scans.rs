//! /api/v1/scans: the scan station's calls, the scan log, and the live stream (SSE).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracetrack_proto::scan::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{bag, Bag, Page, Problem, ScanEvent};
use crate::error::ApiResult;
use crate::extract::{Body, Query};
use crate::filters::{PageParams, ScanFilter};
use crate::live::{Next, Source};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scan_parent))
        .routes(routes!(scan_child))
        .routes(routes!(undo))
        .routes(routes!(list_scans))
        .routes(routes!(live))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"qr": "SB10002", "area": "lucknow"}))]
pub struct ParentBody {
    pub qr: String,
    /// Admins and billers name the area of a new parent; dispatchers use their own.
    pub area: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParentAnswer {
    pub parent: Option<Bag>,
    pub created: bool,
}

/// Scan a parent bag: registers it or re-selects it.
#[utoipa::path(post, path = "/api/v1/scans/parent", tag = "scans", request_body = ParentBody,
    responses((status = 200, body = ParentAnswer), (status = 400, body = Problem, description = "invalid_qr, area_required"),
              (status = 403, body = Problem, description = "wrong_area"), (status = 409, body = Problem, description = "qr_is_child")))]
async fn scan_parent(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<ParentBody>,
) -> ApiResult<Json<ParentAnswer>> {
    let r = crate::mutate!(
        state.0.scan,
        scan_parent,
        ctx,
        pb::ScanParentRequest {
            qr: b.qr,
            area: b.area.unwrap_or_default(),
        }
    )
    .await?
    .into_inner();
    Ok(Json(ParentAnswer {
        parent: bag(r.parent),
        created: r.created,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parent_qr": "SB10002", "child_qr": "CH200001"}))]
pub struct ChildBody {
    pub parent_qr: String,
    /// The child's QR, or the whole printed label text.
    pub child_qr: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChildAnswer {
    pub parent: Option<Bag>,
    pub child: Option<Bag>,
    /// The same child scanned into the same parent again (scanners double-fire).
    pub already_linked: bool,
}

/// Scan a child into the named parent.
#[utoipa::path(post, path = "/api/v1/scans/child", tag = "scans", request_body = ChildBody,
    responses((status = 200, body = ChildAnswer), (status = 400, body = Problem, description = "invalid_qr, same_as_parent"),
              (status = 403, body = Problem, description = "wrong_area"), (status = 404, body = Problem, description = "parent_not_found"),
              (status = 409, body = Problem, description = "parent_full, child_linked_elsewhere, qr_is_parent, parent_frozen")))]
async fn scan_child(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<ChildBody>,
) -> ApiResult<Json<ChildAnswer>> {
    let r = crate::mutate!(
        state.0.scan,
        scan_child,
        ctx,
        pb::ScanChildRequest {
            parent_qr: b.parent_qr,
            child_qr: b.child_qr,
        }
    )
    .await?
    .into_inner();
    Ok(Json(ChildAnswer {
        parent: bag(r.parent),
        child: bag(r.child),
        already_linked: r.already_linked,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parent_qr": "SB10002", "child_qr": "CH200001"}))]
pub struct UndoBody {
    pub parent_qr: String,
    /// Undo only if this child is your newest standing link on the parent (a queued undo names
    /// its child, so a replay can never remove another link); else 404 nothing_to_undo.
    pub child_qr: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UndoAnswer {
    pub parent: Option<Bag>,
    pub unlinked_child_qr: String,
}

/// Undo one's own newest link on a parent (within the hour).
#[utoipa::path(post, path = "/api/v1/scans/undo", tag = "scans", request_body = UndoBody,
    responses((status = 200, body = UndoAnswer), (status = 404, body = Problem, description = "nothing_to_undo")))]
async fn undo(
    State(state): State<AppState>,
    ctx: Ctx,
    Body(b): Body<UndoBody>,
) -> ApiResult<Json<UndoAnswer>> {
    let r = crate::mutate!(
        state.0.scan,
        undo_last_child,
        ctx,
        pb::UndoLastChildRequest {
            parent_qr: b.parent_qr,
            child_qr: b.child_qr.unwrap_or_default(),
        }
    )
    .await?
    .into_inner();
    Ok(Json(UndoAnswer {
        parent: bag(r.parent),
        unlinked_child_qr: r.unlinked_child_qr,
    }))
}

/// Scan events (every attempt, with its outcome), newest first.
#[utoipa::path(get, path = "/api/v1/scans", tag = "scans", params(ScanFilter, PageParams), responses((status = 200, body = Page<ScanEvent>)))]
async fn list_scans(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(filter): Query<ScanFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Page<ScanEvent>>> {
    let req = filter.list(page)?;
    let r = crate::read!(state.0.scan, list_scans, ctx.read(req.clone())).await?;
    Ok(Json(Page::new(
        r.events.iter().map(ScanEvent::from).collect(),
        r.next_page_token,
    )))
}

/// Live scans as Server-Sent Events (`event: scan`), one upstream stream per gateway fanned out to
/// every viewer; dispatchers see their own area. Heartbeats keep proxies from closing it; the
/// viewer's session is re-checked while it stays open.
#[utoipa::path(get, path = "/api/v1/scans/live", tag = "scans", operation_id = "live_scans",
    responses((status = 200, content_type = "text/event-stream", description = "one `scan` event per scan")))]
async fn live(
    State(state): State<AppState>,
    ctx: Ctx,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let area = ctx
        .user
        .role
        .is_area_scoped()
        .then(|| ctx.user.area.clone().unwrap_or_default());
    let rx = state.0.scans_live.subscribe();
    crate::live::sse(&state, &ctx, "scans", 64, LiveScans { rx, area })
}

/// One scan as every viewer gets it: serialised once, by the pump, not once per viewer.
pub struct LiveScan {
    pub area: String,
    pub id: String,
    pub json: String,
}

/// A viewer's scans: every one, or one area's (dispatchers).
struct LiveScans {
    rx: broadcast::Receiver<Arc<LiveScan>>,
    area: Option<String>,
}

impl Source for LiveScans {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Next> + Send + '_>> {
        Box::pin(async move {
            match self.rx.recv().await {
                Ok(ev) if self.area.as_ref().is_none_or(|a| *a == ev.area) => {
                    let event = Event::default().event("scan").id(ev.id.as_str());
                    Next::Offer(event.data(ev.json.as_str()))
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Next::Skip,
                Err(broadcast::error::RecvError::Closed) => Next::End,
            }
        })
    }
}

/// Holds the gateway's one upstream WatchScans stream (with its service token alone), re-opening
/// it with backoff, and publishes every scan to the local fan-out.
pub async fn pump_live_scans(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        let opened = state
            .0
            .scan
            .clone()
            .watch_scans(pb::WatchScansRequest {})
            .await;
        match opened {
            Ok(resp) => {
                backoff = Duration::from_millis(200);
                let mut stream = resp.into_inner();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        msg = stream.message() => match msg {
                            Ok(Some(ev)) => {
                                let dto = ScanEvent::from(&ev);
                                if let Ok(json) = serde_json::to_string(&dto) {
                                    let _ = state.0.scans_live.send(std::sync::Arc::new(LiveScan {
                                        area: ev.area,
                                        id: dto.id,
                                        json,
                                    }));
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "live scan stream interrupted");
                                break;
                            }
                        },
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "live scan stream unavailable"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
