//! stats' gRPC handlers: dashboard (read and watch), scans per hour, user activity, audit trail,
//! bag history, the EPCIS export.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracetrack_common::caller::{AreaView, Caller, CallerResolver};
use tracetrack_common::client::{self, Intercepted};
use tracetrack_common::time::{self, ts};
use tracetrack_common::{page, AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::GetBagRequest;
use tracetrack_proto::stats::v1 as pb;
use uuid::Uuid;

use crate::config::Settings;

pub const SCHEMA: &str = "stats";
pub const SERVICE: &str = "stats";

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    /// bag-registry, for a bag's current area (a dispatcher's history view).
    pub registry: BagRegistryServiceClient<Intercepted>,
    pub settings: Settings,
    pub callers: CallerResolver,
    pub changed: watch::Receiver<u64>,
    pub stop: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Stats(pub Arc<Inner>);

/// A time filter: absent (or not a valid time) means no bound.
fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| time::from_ts(t, "").ok())
}

/// Which areas a caller sees: all, or a dispatcher's own.
fn scope(caller: &Caller) -> AppResult<Option<String>> {
    if caller.user.is_none() && caller.require_service(&["gateway"]).is_ok() {
        return Ok(None);
    }
    let user = caller.user()?;
    Ok(if user.role.is_area_scoped() {
        Some(user.area.clone().unwrap_or_default())
    } else {
        None
    })
}

/// The dashboard as the read models hold it now.
pub async fn dashboard(pool: &PgPool, tz: &str, area: Option<&str>) -> AppResult<pb::Dashboard> {
    let figures: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT area, parents, children, unlinked FROM stats.area_figures WHERE $1::text IS NULL OR area = $1 ORDER BY area",
    )
    .bind(area)
    .fetch_all(pool)
    .await?;
    let hour: Vec<(String, i64)> = sqlx::query_as(
        r#"SELECT area, sum(scans)::bigint FROM stats.scans_by_minute
           WHERE minute > now() - interval '1 hour' AND ($1::text IS NULL OR area = $1) GROUP BY area"#,
    )
    .bind(area)
    .fetch_all(pool)
    .await?;
    let today: Vec<(String, i64)> = sqlx::query_as(
        r#"SELECT area, sum(scans)::bigint FROM stats.scans_by_hour
           WHERE hour_local >= date_trunc('day', now() AT TIME ZONE $2) AND ($1::text IS NULL OR area = $1) GROUP BY area"#,
    )
    .bind(area)
    .bind(tz)
    .fetch_all(pool)
    .await?;
    let bills: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, bills FROM stats.bill_status_counts WHERE bills <> 0")
            .fetch_all(pool)
            .await?;
    let (last_event, last_applied): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT last_event_at, last_applied_at FROM stats.consumer_state")
            .fetch_one(pool)
            .await?;

    let mut d = pb::Dashboard::default();
    let mut areas: std::collections::BTreeMap<String, pb::AreaFigures> =
        std::collections::BTreeMap::new();
    for (a, parents, children, unlinked) in figures {
        areas.insert(
            a.clone(),
            pb::AreaFigures {
                area: a,
                parents,
                children,
                unlinked_children: unlinked,
                ..Default::default()
            },
        );
    }
    for (a, n) in hour {
        areas
            .entry(a.clone())
            .or_insert_with(|| pb::AreaFigures {
                area: a,
                ..Default::default()
            })
            .scans_last_hour = n;
    }
    for (a, n) in today {
        areas
            .entry(a.clone())
            .or_insert_with(|| pb::AreaFigures {
                area: a,
                ..Default::default()
            })
            .scans_today = n;
    }
    for f in areas.values() {
        d.parents += f.parents;
        d.children += f.children;
        d.unlinked_children += f.unlinked_children;
        d.scans_today += f.scans_today;
        d.scans_last_hour += f.scans_last_hour;
    }
    d.areas = areas
        .into_values()
        .filter(|a| !a.area.is_empty() || a.scans_today > 0)
        .collect();
    d.bills_by_status = bills.into_iter().collect();
    d.as_of = Some(ts(Utc::now()));
    d.freshness_seconds = match (last_event, last_applied) {
        (Some(e), Some(a)) => (a - e).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    Ok(d)
}

fn same_figures(a: &pb::Dashboard, b: &pb::Dashboard) -> bool {
    let strip = |d: &pb::Dashboard| pb::Dashboard {
        as_of: None,
        freshness_seconds: 0.0,
        ..d.clone()
    };
    strip(a) == strip(b)
}

/// An audit row as a caller may see it: the actor's address and the raw details are for admins
/// only (a bag's history is open to every role that may see the bag).
fn audit_row_for(r: AuditRow, admin: bool) -> pb::AuditEvent {
    let mut e = audit_row(r);
    if !admin {
        e.ip.clear();
        e.details_json.clear();
    }
    e
}

fn audit_row(r: AuditRow) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: r.event_id.to_string(),
        occurred_at: Some(ts(r.occurred_at)),
        action: r.event_type,
        source: r.source,
        aggregate_type: r.aggregate_type,
        aggregate_id: r.aggregate_id,
        actor_user_id: r.actor_user_id.map(|u| u.to_string()).unwrap_or_default(),
        actor_username: r.actor_username,
        actor_service: r.actor_service,
        ip: r.ip,
        details_json: r.payload.to_string(),
    }
}

/// username, total scans, last scan, last login.
type ActivityRow = (String, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

#[derive(sqlx::FromRow)]
struct AuditRow {
    occurred_at: DateTime<Utc>,
    event_id: Uuid,
    event_type: String,
    source: String,
    aggregate_type: String,
    aggregate_id: String,
    actor_user_id: Option<Uuid>,
    actor_username: String,
    actor_service: String,
    ip: String,
    payload: serde_json::Value,
}

const AUDIT_COLUMNS: &str =
    "a.occurred_at, a.event_id, a.event_type, a.source, a.aggregate_type, a.aggregate_id, \
    a.actor_user_id, a.actor_username, a.actor_service, a.ip, a.payload";

impl Stats {
    async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    async fn get_dashboard(
        &self,
        req: Request<pb::GetDashboardRequest>,
    ) -> AppResult<pb::Dashboard> {
        let caller = self.caller(&req).await?;
        let area = scope(&caller)?;
        dashboard(
            &self.0.pool,
            &self.0.settings.business_time_zone,
            area.as_deref(),
        )
        .await
    }

    async fn watch_dashboard(
        &self,
        req: Request<pb::WatchDashboardRequest>,
    ) -> AppResult<ReceiverStream<Result<pb::Dashboard, Status>>> {
        // For the gateway alone: it holds one stream for all its browsers, filters per viewer
        // and re-checks each viewer's session itself. A user's stream here would keep the view
        // it started with (no session re-check), so users are refused.
        let caller = self.caller(&req).await?;
        if caller.user.is_some() {
            return Err(AppError::new(
                ErrorCode::CallerNotAllowed,
                "WatchDashboard is for the gateway; users read GetDashboard or /api/v1/stats/live",
            ));
        }
        caller.require_service(&["gateway"])?;
        let area: Option<String> = None;
        let (tx, rx) = mpsc::channel(16);
        let inner = self.0.clone();
        tokio::spawn(async move {
            let mut changed = inner.changed.clone();
            let mut stop = inner.stop.clone();
            let mut last: Option<pb::Dashboard> = None;
            let coalesce = Duration::from_millis(inner.settings.watch_interval_ms.max(50));
            loop {
                match dashboard(
                    &inner.pool,
                    &inner.settings.business_time_zone,
                    area.as_deref(),
                )
                .await
                {
                    Ok(d) => {
                        if last.as_ref().is_none_or(|l| !same_figures(l, &d)) {
                            if tx.send(Ok(d.clone())).await.is_err() {
                                return;
                            }
                            last = Some(d);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "dashboard read failed"),
                }
                // Wake on a local batch, or re-read periodically (other replicas, time windows);
                // then wait a moment so bursts are coalesced into a few updates a second.
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                    _ = stop.wait_for(|s| *s) => return,
                }
                tokio::time::sleep(coalesce).await;
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    async fn scans_per_hour(
        &self,
        req: Request<pb::GetScansPerHourRequest>,
    ) -> AppResult<pb::GetScansPerHourResponse> {
        let caller = self.caller(&req).await?;
        let scoped = scope(&caller)?;
        let req = req.into_inner();
        let area = scoped.or(Some(req.area).filter(|a| !a.is_empty()));
        let days = req.days.clamp(1, 14) as i32;
        let rows: Vec<(chrono::NaiveDateTime, i64)> = sqlx::query_as(
            r#"SELECT hour_local, sum(scans)::bigint FROM stats.scans_by_hour
               WHERE hour_local >= date_trunc('day', now() AT TIME ZONE $1) - make_interval(days => $2 - 1)
                 AND ($3::text IS NULL OR area = $3)
               GROUP BY hour_local ORDER BY hour_local"#,
        )
        .bind(&self.0.settings.business_time_zone)
        .bind(days)
        .bind(area)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(pb::GetScansPerHourResponse {
            buckets: rows
                .into_iter()
                .map(|(h, n)| pb::HourBucket {
                    hour: h.format("%Y-%m-%dT%H:00").to_string(),
                    scans: n,
                })
                .collect(),
            time_zone: self.0.settings.business_time_zone.clone(),
        })
    }

    async fn user_activity(
        &self,
        req: Request<pb::GetUserActivityRequest>,
    ) -> AppResult<pb::GetUserActivityResponse> {
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let user: Uuid = req
            .get_ref()
            .user_id
            .parse()
            .map_err(|_| AppError::invalid("user_id must be a UUID"))?;
        let row: Option<ActivityRow> = sqlx::query_as(
            "SELECT username, total_scans, last_scan_at, last_login_at FROM stats.user_activity WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&self.0.pool)
        .await?;
        let days: Vec<(chrono::NaiveDate, i64)> = sqlx::query_as(
            r#"SELECT d::date, coalesce(u.scans, 0)::bigint
               FROM generate_series((now() AT TIME ZONE $2)::date - 13, (now() AT TIME ZONE $2)::date, interval '1 day') d
               LEFT JOIN stats.user_scans_daily u ON u.user_id = $1 AND u.day = d::date ORDER BY 1"#,
        )
        .bind(user)
        .bind(&self.0.settings.business_time_zone)
        .fetch_all(&self.0.pool)
        .await?;
        let (username, total, last_scan, last_login) = row.unwrap_or_default();
        Ok(pb::GetUserActivityResponse {
            user_id: user.to_string(),
            username,
            total_scans: total,
            last_scan_at: last_scan.map(ts),
            last_login_at: last_login.map(ts),
            scans_per_day: days
                .into_iter()
                .map(|(d, n)| pb::DayCount {
                    day: d.to_string(),
                    scans: n,
                })
                .collect(),
        })
    }

    async fn audit(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> AppResult<pb::ListAuditEventsResponse> {
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let size = page::size(req.page_size);
        let user = if req.user_id.is_empty() {
            None
        } else {
            Some(
                req.user_id
                    .parse::<Uuid>()
                    .map_err(|_| AppError::invalid("user_id must be a UUID"))?,
            )
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&req.page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AppError::invalid("bad page_token"))?;
            let (micros, id) = raw
                .split_once('/')
                .ok_or_else(|| AppError::invalid("bad page_token"))?;
            let at = micros
                .parse::<i64>()
                .ok()
                .and_then(|m| Utc.timestamp_micros(m).single());
            let id = id.parse::<Uuid>().ok();
            match (at, id) {
                (Some(a), Some(i)) => Some((a, i)),
                _ => return Err(AppError::invalid("bad page_token")),
            }
        };
        let (exact, prefix) = match req.action.as_str() {
            "" => (None, None),
            a if a.ends_with('.') => (None, Some(format!("{a}%"))),
            a => (Some(a.to_owned()), None),
        };
        let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT {AUDIT_COLUMNS} FROM stats.audit_events a
               WHERE ($1::uuid IS NULL OR a.actor_user_id = $1)
                 AND ($2::text IS NULL OR a.event_type = $2) AND ($3::text IS NULL OR a.event_type LIKE $3)
                 AND ($4::timestamptz IS NULL OR a.occurred_at >= $4) AND ($5::timestamptz IS NULL OR a.occurred_at < $5)
                 AND ($6::timestamptz IS NULL OR (a.occurred_at, a.event_id) < ($6, $7))
               ORDER BY a.occurred_at DESC, a.event_id DESC LIMIT $8"#
        )))
        .bind(user)
        .bind(exact)
        .bind(prefix)
        .bind(from_ts(&req.from))
        .bind(from_ts(&req.to))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(size + 1)
        .fetch_all(&self.0.pool)
        .await?;
        let more = rows.len() as i64 > size;
        let mut events: Vec<pb::AuditEvent> = Vec::new();
        let mut last: Option<(DateTime<Utc>, Uuid)> = None;
        for r in rows.into_iter().take(size as usize) {
            last = Some((r.occurred_at, r.event_id));
            events.push(audit_row(r));
        }
        let next_page_token = match (more, last) {
            (true, Some((at, id))) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{}/{id}", at.timestamp_micros())),
            _ => String::new(),
        };
        Ok(pb::ListAuditEventsResponse {
            events,
            next_page_token,
        })
    }

    async fn bag_history(
        &self,
        req: Request<pb::GetBagHistoryRequest>,
    ) -> AppResult<pb::GetBagHistoryResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.user()?;
        let qr = tracetrack_domain::qr::normalize(&req.get_ref().qr)
            .map_err(|e| AppError::new(e.code, e.message))?;
        // Scoped like every area read: a dispatcher sees the history of their own area's bags
        // only. stats keeps no areas, so it asks bag-registry where the bag is now.
        let view = AreaView::of(user);
        if view != AreaView::All {
            let bag = self
                .0
                .registry
                .clone()
                .get_bag(client::request(
                    GetBagRequest { qr: qr.clone() },
                    caller.user_token.as_deref(),
                    None,
                ))
                .await
                .map_err(|s| match AppError::from_status(&s) {
                    e if e.code == ErrorCode::BagNotFound => e,
                    e if matches!(
                        e.code,
                        ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded
                    ) =>
                    {
                        AppError::unavailable("bag-registry", s)
                    }
                    e => e,
                })?
                .into_inner()
                .bag
                .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
            if !view.sees(&bag.area) {
                return Err(AppError::new(
                    ErrorCode::WrongArea,
                    "that bag belongs to another area",
                )
                .with_detail("area", &bag.area));
            }
        }
        let admin = user.role == Role::Admin;
        let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT {AUDIT_COLUMNS} FROM stats.bag_history h
               JOIN stats.audit_events a ON a.occurred_at = h.occurred_at AND a.event_id = h.event_id
               WHERE h.qr = $1 ORDER BY h.occurred_at, h.event_id LIMIT 1000"#
        )))
        .bind(&qr)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(pb::GetBagHistoryResponse {
            events: rows.into_iter().map(|r| audit_row_for(r, admin)).collect(),
        })
    }

    /// The EPCIS export: source events in (time, id) order, read by keyset a page at a time from
    /// one snapshot (a read-only REPEATABLE READ transaction), each page only when the caller has
    /// taken the previous one, so memory stays bounded at any size.
    async fn export_epcis(
        &self,
        req: Request<pb::ExportEpcisEventsRequest>,
    ) -> AppResult<EpcisStream> {
        use futures::StreamExt;
        self.caller(&req).await?.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let to = from_ts(&req.to).unwrap_or_else(Utc::now);
        let from = match from_ts(&req.from) {
            Some(f) if f > to => return Err(AppError::invalid("from must not be after to")),
            Some(f) => f,
            // Every event is after 1970; an earlier `to` just gives an empty window.
            None => DateTime::UNIX_EPOCH.min(to),
        };
        let permit = self.0.exports.acquire()?;
        let tx = tracetrack_common::export::snapshot(&self.0.pool).await?;
        let mut pages = EpcisPages {
            _permit: permit,
            tx: Some(tx),
            time_zone: self.0.settings.business_time_zone.clone(),
            from,
            to,
            limit: i64::from(match req.page_size {
                0 => EPCIS_PAGE,
                n => n.min(EPCIS_MAX_PAGE),
            }),
            // No event has the nil id, so (from, nil) starts the keyset at `from`.
            cursor: Some((from, Uuid::nil())),
            ready: Default::default(),
        };
        // The first page is read now, so its errors answer the call instead of ending a stream.
        pages.next_page().await?;
        Ok(futures::stream::try_unfold(pages, |mut st| async move {
            loop {
                if let Some(msg) = st.ready.pop_front() {
                    return Ok(Some((msg, st)));
                }
                if st.cursor.is_none() {
                    if let Some(tx) = st.tx.take() {
                        tx.rollback().await.map_err(AppError::from)?;
                    }
                    return Ok(None);
                }
                st.next_page().await?;
            }
        })
        .map(|r: AppResult<_>| r.map_err(Status::from))
        .boxed())
    }
}

/// Source events per page of the EPCIS export when the request says 0, and at most.
const EPCIS_PAGE: u32 = 500;
const EPCIS_MAX_PAGE: u32 = 5_000;
/// A response message holds about this many bytes of events (far below gRPC's 4 MiB limit).
const EPCIS_CHUNK_BYTES: usize = 256 * 1024;

pub type EpcisStream =
    futures::stream::BoxStream<'static, Result<pb::ExportEpcisEventsResponse, Status>>;

struct EpcisPages {
    _permit: tracetrack_common::export::Permit,
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    time_zone: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
    /// The last source event read (keyset cursor); None once the last page has been read.
    cursor: Option<(DateTime<Utc>, Uuid)>,
    /// Messages built from the last page, not yet sent.
    ready: std::collections::VecDeque<pb::ExportEpcisEventsResponse>,
}

impl EpcisPages {
    /// Reads the next page of source events after the cursor and turns it into messages.
    async fn next_page(&mut self) -> AppResult<()> {
        let (Some(tx), Some((after_at, after_id))) = (self.tx.as_mut(), self.cursor) else {
            return Ok(());
        };
        let types: Vec<String> = crate::epcis::SOURCE_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let rows: Vec<crate::epcis::Source> = sqlx::query_as(
            r#"SELECT a.occurred_at, a.event_id, a.event_type, a.payload,
                      EXTRACT(EPOCH FROM (a.occurred_at AT TIME ZONE $1) - (a.occurred_at AT TIME ZONE 'UTC'))::int AS offset_secs
               FROM stats.audit_events a
               WHERE a.occurred_at >= $2 AND a.occurred_at < $3 AND (a.occurred_at, a.event_id) > ($4, $5)
                 AND a.event_type = ANY($6)
               ORDER BY a.occurred_at, a.event_id LIMIT $7"#,
        )
        .bind(&self.time_zone)
        .bind(self.from)
        .bind(self.to)
        .bind(after_at)
        .bind(after_id)
        .bind(&types)
        .bind(self.limit)
        .fetch_all(&mut **tx)
        .await?;
        self.cursor = if rows.len() as i64 >= self.limit {
            rows.last().map(|r| (r.occurred_at, r.event_id))
        } else {
            None
        };
        let mut msg = pb::ExportEpcisEventsResponse::default();
        let mut bytes = 0;
        for row in &rows {
            for event in crate::epcis::events(row) {
                let json = event.to_json();
                bytes += json.len();
                msg.events_json.push(json);
                if bytes >= EPCIS_CHUNK_BYTES {
                    self.ready.push_back(std::mem::take(&mut msg));
                    bytes = 0;
                }
            }
        }
        if !msg.events_json.is_empty() {
            self.ready.push_back(msg);
        }
        metrics::counter!("export_rows_total", "export" => "epcis").increment(rows.len() as u64);
        Ok(())
    }
}

fn reply<T>(r: AppResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::stats_service_server::StatsService for Stats {
    async fn get_dashboard(
        &self,
        r: Request<pb::GetDashboardRequest>,
    ) -> Result<Response<pb::Dashboard>, Status> {
        reply(Stats::get_dashboard(self, r).await)
    }
    type WatchDashboardStream = ReceiverStream<Result<pb::Dashboard, Status>>;
    async fn watch_dashboard(
        &self,
        r: Request<pb::WatchDashboardRequest>,
    ) -> Result<Response<Self::WatchDashboardStream>, Status> {
        reply(Stats::watch_dashboard(self, r).await)
    }
    async fn get_scans_per_hour(
        &self,
        r: Request<pb::GetScansPerHourRequest>,
    ) -> Result<Response<pb::GetScansPerHourResponse>, Status> {
        reply(Stats::scans_per_hour(self, r).await)
    }
    async fn get_user_activity(
        &self,
        r: Request<pb::GetUserActivityRequest>,
    ) -> Result<Response<pb::GetUserActivityResponse>, Status> {
        reply(Stats::user_activity(self, r).await)
    }
    async fn list_audit_events(
        &self,
        r: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        reply(Stats::audit(self, r).await)
    }
    async fn get_bag_history(
        &self,
        r: Request<pb::GetBagHistoryRequest>,
    ) -> Result<Response<pb::GetBagHistoryResponse>, Status> {
        reply(Stats::bag_history(self, r).await)
    }
    type ExportEpcisEventsStream = EpcisStream;
    async fn export_epcis_events(
        &self,
        r: Request<pb::ExportEpcisEventsRequest>,
    ) -> Result<Response<Self::ExportEpcisEventsStream>, Status> {
        reply(Stats::export_epcis(self, r).await)
    }
}
