//! scan's gRPC handlers: the scanning workflow (ScanParent, ScanChild, UndoLastChild, each a
//! call to bag-registry plus one record in the scan log), ListScans and WatchScans.
//!
//! ## One scan, step by step
//!
//! 1. Resolve the caller; every RPC needs a logged-in user.
//! 2. If the client sent an idempotency key and scan already stored an answer for it, return
//!    that answer: no registry call, nothing recorded ([`Scan::stored_answer`], a read that
//!    holds no lock and claims nothing).
//! 3. Call bag-registry with the end user's token, scan's service token, and a key derived
//!    deterministically from the client's key (or a fresh one when the client sent none).
//!    No transaction is open during this call: a slow registry holds no database connection.
//! 4. One statement, so one round trip and one commit ([`store::record`]): claim the
//!    idempotency key with the answer, append the scan event and write the `scan.recorded`
//!    outbox row. If a concurrent request with the same key committed first, its answer is
//!    read and returned, and this one records nothing. Both made the same registry call with
//!    the same derived key, which bag-registry answers once, so nothing happened twice.
//! 5. A refusal (or a failure) of the registry is recorded too, with the error code as its
//!    outcome, in a statement of its own (event plus outbox row), and then returned to the
//!    caller unchanged. Refusals are not stored under the idempotency key: a retry with the
//!    same key tries again.
//!
//! If step 4 fails after the registry succeeded, the caller gets an error and retries; with
//! its key, bag-registry replays its first answer and the scan is recorded then; without one,
//! the retry finds the child already linked (`already_linked`). No acknowledged scan is lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracetrack_common::caller::{AreaView as View, Caller, CallerResolver, UserIdentity};
use tracetrack_common::client::{self, Intercepted};
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::idempotency;
use tracetrack_common::mutation::Mutations;
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{page, time, AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as registry;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::scan::v1 as pb;
use uuid::Uuid;

use crate::config::Settings;
use crate::feed::{self, Feed, EVENT_TYPE};
use crate::store::{self, ListFilter, ScanEventRow};

pub const SCHEMA: &str = "scan";
/// The idempotency answers of scan's mutations (its events are written with the scan itself).
const MUTATIONS: Mutations = Mutations {
    schema: SCHEMA,
    service: SERVICE,
};
pub const SERVICE: &str = "scan";

/// Longest scanner input kept in the log (bag-registry refuses anything over 256 characters).
const MAX_LOGGED_INPUT: usize = 512;
/// Events a WatchScans stream holds for a slow client before it skips.
const STREAM_BUFFER: usize = 256;

pub type RegistryClient = BagRegistryServiceClient<Intercepted>;

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub callers: CallerResolver,
    /// One shared channel to bag-registry (with scan's service token on every call).
    pub registry: RegistryClient,
    pub feed: Feed,
    pub settings: Settings,
    /// Turns true at shutdown: open WatchScans streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Scan(pub Arc<Inner>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parent,
    Child,
    Undo,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Parent => "parent",
            Kind::Child => "child",
            Kind::Undo => "undo",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Kind::Parent => "ScanParent",
            Kind::Child => "ScanChild",
            Kind::Undo => "UndoLastChild",
        }
    }
}

/// At most `max` characters of `s`.
fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// How an attempt names a QR in the log before (or without) bag-registry's answer: the
/// normalised id when the input is valid, else the trimmed, upper-cased input. This is only
/// for finding the attempt later; bag-registry alone decides what is valid.
/// ListScans' filters (shared with ExportScans), without the page; `area` limits a dispatcher.
fn list_filter(req: &pb::ListScansRequest, area: Option<String>) -> AppResult<ListFilter> {
    let user_id = match req.user_id.trim() {
        "" => None,
        id => Some(
            id.parse::<Uuid>()
                .map_err(|_| AppError::invalid("user_id must be a UUID"))?,
        ),
    };
    Ok(ListFilter {
        user_id,
        qr: Some(req.qr.trim()).filter(|q| !q.is_empty()).map(logged_qr),
        from: req
            .from
            .as_ref()
            .map(|t| time::from_ts(t, "from"))
            .transpose()?,
        to: req
            .to
            .as_ref()
            .map(|t| time::from_ts(t, "to"))
            .transpose()?,
        area,
        after: None,
        limit: 0,
    })
}

fn logged_qr(raw: &str) -> String {
    tracetrack_domain::qr::normalize(raw)
        .unwrap_or_else(|_| cap(&raw.trim().to_uppercase(), MAX_LOGGED_INPUT))
}

/// A registry error, passed on unchanged (code, message and details such as
/// `other_parent_qr`), except that a transport failure says which dependency failed instead of
/// leaking its text.
fn registry_error(status: &Status) -> AppError {
    let err = AppError::from_status(status);
    match err.code {
        ErrorCode::Unavailable if err.details.is_empty() => {
            AppError::unavailable("the bag registry", status.clone())
        }
        ErrorCode::DeadlineExceeded if err.details.is_empty() => AppError::new(
            ErrorCode::DeadlineExceeded,
            "the bag registry did not answer in time, try again",
        ),
        _ => err,
    }
}

impl Scan {
    fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    fn registry(&self) -> RegistryClient {
        self.0.registry.clone()
    }

    /// The key of this request's registry call: derived from the client's key, or from a fresh
    /// one when the client sent none (then every request is new, as it should be).
    fn downstream_key(caller: &Caller, kind: Kind) -> String {
        let user_key = caller
            .idempotency_key
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        idempotency::derive_key(&user_key, &caller.scope(), kind.rpc())
    }

    /// A fresh event for an attempt, before its outcome is known.
    fn event(caller: &Caller, user: &UserIdentity, kind: Kind, raw_input: &str) -> ScanEventRow {
        ScanEventRow {
            id: Uuid::nil(),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            user_id: user.id,
            username: user.username.clone(),
            kind: kind.as_str().to_owned(),
            area: user.area.clone().unwrap_or_default(),
            parent_qr: String::new(),
            child_qr: None,
            raw_input: cap(raw_input, MAX_LOGGED_INPUT),
            outcome: String::new(),
            parent_child_count: None,
            parent_capacity: None,
            idempotency_key: caller.idempotency_key.clone(),
        }
    }

    /// The answer stored for the client's idempotency key, if there is one (a replay), or
    /// `idempotency_key_reused` when the key came with a different request. Claims nothing: the
    /// claim happens in the transaction that records the scan.
    async fn stored_answer<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        kind: Kind,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        MUTATIONS
            .stored_answer(self.pool(), caller, kind.rpc(), req)
            .await
    }

    /// The `scan.recorded` outbox row of `ev`.
    fn event_row(caller: &Caller, ev: &ScanEventRow) -> AppResult<outbox::Prepared> {
        let payload = serde_json::to_value(ev).map_err(AppError::internal)?;
        Ok(outbox::prepare(
            SERVICE,
            NewEvent {
                event_type: EVENT_TYPE,
                aggregate_type: "scan",
                aggregate_id: &ev.parent_qr,
                aggregate_version: 0,
                actor: caller.actor(),
                payload,
            },
        ))
    }

    fn stamp(ev: &mut ScanEventRow, outcome: &str) {
        ev.id = Uuid::now_v7();
        // Postgres keeps microseconds; the feed and the log must show the same time.
        ev.occurred_at = Utc::now().trunc_subsecs(6);
        outcome.clone_into(&mut ev.outcome);
        metrics::counter!(
            "scan_attempts_total",
            "kind" => ev.kind.clone(),
            "outcome" => ev.outcome.clone()
        )
        .increment(1);
    }

    /// Records a successful scan with its answer and event in one transaction; returns the
    /// answer to give (the first one, if a concurrent request with the same key won).
    async fn record_success<R: prost::Message + Default>(
        &self,
        caller: &Caller,
        kind: Kind,
        req: &impl prost::Message,
        mut ev: ScanEventRow,
        outcome: &str,
        resp: R,
    ) -> AppResult<R> {
        let scope = caller.scope();
        Self::stamp(&mut ev, outcome);
        let event = Self::event_row(caller, &ev)?;
        let Some(key) = caller.idempotency_key.as_deref() else {
            store::record(self.pool(), &ev, &event, None).await?;
            return Ok(resp);
        };
        let hash = idempotency::request_hash(kind.rpc(), req);
        let response = resp.encode_to_vec();
        let claim = store::Claim {
            scope: &scope,
            key,
            request_hash: &hash,
            response: &response,
        };
        if store::record(self.pool(), &ev, &event, Some(claim)).await? {
            return Ok(resp);
        }
        // A request with the same key got there first (both made the same registry call, which
        // bag-registry answered once): its answer, and nothing recorded twice.
        let mut conn = self.pool().acquire().await?;
        idempotency::stored::<R>(&mut conn, SCHEMA, &scope, key, &hash).await
    }

    /// Records a failed attempt (event and outbox row, committed), then hands back the error
    /// for the caller. If even that cannot be written, the original error still goes back.
    async fn record_failure(
        &self,
        caller: &Caller,
        mut ev: ScanEventRow,
        err: AppError,
    ) -> AppError {
        // The database is gone (the circuit is open): the record cannot be written, and trying
        // would wait out the pool's acquire timeout a second time, past the caller's deadline.
        if !tracetrack_common::db::answers() {
            metrics::counter!("scan_failures_unrecorded_total").increment(1);
            return err;
        }
        Self::stamp(&mut ev, err.code.as_str());
        let written = async {
            let event = Self::event_row(caller, &ev)?;
            store::record(self.pool(), &ev, &event, None).await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, outcome = %ev.outcome, "could not record a failed scan attempt");
        }
        err
    }

    fn apply_parent(ev: &mut ScanEventRow, parent: Option<&registry::Bag>) {
        if let Some(p) = parent {
            if !p.qr.is_empty() {
                ev.parent_qr.clone_from(&p.qr);
            }
            if !p.area.is_empty() {
                ev.area.clone_from(&p.area);
            }
            ev.parent_child_count = Some(p.child_count);
            ev.parent_capacity = Some(p.capacity);
        }
    }

    // ---------------------------------------------------------------- scanning

    async fn scan_parent(
        &self,
        req: Request<pb::ScanParentRequest>,
    ) -> AppResult<pb::ScanParentResponse> {
        const KIND: Kind = Kind::Parent;
        let caller = self.caller(&req).await?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let mut ev = Self::event(&caller, &user, KIND, &req.qr);
        ev.parent_qr = logged_qr(&req.qr);
        match self.stored_answer(&caller, KIND, &req).await {
            Ok(Some(first)) => return Ok(first),
            Ok(None) => {}
            Err(e) => return Err(self.record_failure(&caller, ev, e).await),
        }
        let key = Self::downstream_key(&caller, KIND);
        let call = registry::EnsureParentRequest {
            qr: req.qr.trim().to_owned(),
            area: req.area.trim().to_owned(),
        };
        // Idempotent (the derived key): retried once on a transport failure.
        let answer = match client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(call.clone(), caller.user_token.as_deref(), Some(&key));
            async move { registry.ensure_parent(req).await }
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(self
                    .record_failure(&caller, ev, registry_error(&status))
                    .await)
            }
        };
        Self::apply_parent(&mut ev, answer.parent.as_ref());
        let outcome = if answer.created { "created" } else { "ok" };
        let resp = pb::ScanParentResponse {
            parent: answer.parent,
            created: answer.created,
        };
        self.record_success(&caller, KIND, &req, ev, outcome, resp)
            .await
    }

    async fn scan_child(
        &self,
        req: Request<pb::ScanChildRequest>,
    ) -> AppResult<pb::ScanChildResponse> {
        const KIND: Kind = Kind::Child;
        let caller = self.caller(&req).await?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        // The scanner typed the child; the parent is the one held on the page.
        let mut ev = Self::event(&caller, &user, KIND, &req.child_qr);
        ev.parent_qr = logged_qr(&req.parent_qr);
        ev.child_qr = Some(logged_qr(&req.child_qr)).filter(|c| !c.is_empty());
        match self.stored_answer(&caller, KIND, &req).await {
            Ok(Some(first)) => return Ok(first),
            Ok(None) => {}
            Err(e) => return Err(self.record_failure(&caller, ev, e).await),
        }
        let key = Self::downstream_key(&caller, KIND);
        let call = registry::LinkChildRequest {
            parent_qr: req.parent_qr.trim().to_owned(),
            child_qr: req.child_qr.trim().to_owned(),
        };
        // Idempotent (the derived key): retried once on a transport failure.
        let answer = match client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(call.clone(), caller.user_token.as_deref(), Some(&key));
            async move { registry.link_child(req).await }
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(self
                    .record_failure(&caller, ev, registry_error(&status))
                    .await)
            }
        };
        Self::apply_parent(&mut ev, answer.parent.as_ref());
        if let Some(child) = answer.child.as_ref().filter(|c| !c.qr.is_empty()) {
            ev.child_qr = Some(child.qr.clone());
        }
        let outcome = if answer.already_linked {
            "already_linked"
        } else {
            "ok"
        };
        let resp = pb::ScanChildResponse {
            parent: answer.parent,
            child: answer.child,
            already_linked: answer.already_linked,
        };
        self.record_success(&caller, KIND, &req, ev, outcome, resp)
            .await
    }

    async fn undo_last_child(
        &self,
        req: Request<pb::UndoLastChildRequest>,
    ) -> AppResult<pb::UndoLastChildResponse> {
        const KIND: Kind = Kind::Undo;
        let caller = self.caller(&req).await?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let mut ev = Self::event(&caller, &user, KIND, &req.parent_qr);
        ev.parent_qr = logged_qr(&req.parent_qr);
        match self.stored_answer(&caller, KIND, &req).await {
            Ok(Some(first)) => return Ok(first),
            Ok(None) => {}
            Err(e) => return Err(self.record_failure(&caller, ev, e).await),
        }
        let key = Self::downstream_key(&caller, KIND);
        let call = registry::UndoLastLinkRequest {
            parent_qr: req.parent_qr.trim().to_owned(),
            child_qr: req.child_qr.trim().to_owned(),
        };
        // Idempotent (the derived key): retried once on a transport failure.
        let answer = match client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(call.clone(), caller.user_token.as_deref(), Some(&key));
            async move { registry.undo_last_link(req).await }
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(self
                    .record_failure(&caller, ev, registry_error(&status))
                    .await)
            }
        };
        Self::apply_parent(&mut ev, answer.parent.as_ref());
        ev.child_qr = Some(answer.unlinked_child_qr.clone()).filter(|c| !c.is_empty());
        let resp = pb::UndoLastChildResponse {
            parent: answer.parent,
            unlinked_child_qr: answer.unlinked_child_qr,
        };
        self.record_success(&caller, KIND, &req, ev, "ok", resp)
            .await
    }

    // ---------------------------------------------------------------- reading

    async fn list_scans(
        &self,
        req: Request<pb::ListScansRequest>,
    ) -> AppResult<pb::ListScansResponse> {
        let caller = self.caller(&req).await?;
        let view = View::of(caller.user()?);
        let req = req.into_inner();
        let area = match view {
            View::All => None,
            View::Area(a) => Some(a),
            View::Nothing => return Ok(pb::ListScansResponse::default()),
        };
        let size = page::size(req.page_size);
        let mut filter = list_filter(&req, area)?;
        filter.after = match req.page_token.as_str() {
            "" => None,
            t => {
                let (at, id) = page::decode_at(t)?;
                let id = id
                    .parse()
                    .map_err(|_| AppError::invalid("bad page_token"))?;
                Some((at, id))
            }
        };
        filter.limit = size + 1;
        let rows = store::list_events(self.pool(), &filter).await?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => page::encode_at(last.occurred_at, &last.id.to_string()),
            _ => String::new(),
        };
        Ok(pb::ListScansResponse {
            events: page.iter().map(ScanEventRow::to_pb).collect(),
            next_page_token,
        })
    }

    /// Admin: every scan event matching ListScans' filters, newest first, in chunks read from
    /// one snapshot (see `tracetrack_common::export`). The filters are checked and the first
    /// page read before the stream starts, so those errors are the call's own.
    async fn export_scans(
        &self,
        req: Request<pb::ExportScansRequest>,
    ) -> AppResult<ExportStream<pb::ExportScansChunk>> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[tracetrack_domain::Role::Admin])?;
        let req = req.into_inner();
        let limit = export::chunk_size(req.chunk_size);
        let mut filter = list_filter(&req.filter.unwrap_or_default(), None)?;
        filter.limit = limit;
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::list_events(&mut *tx, &filter).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |e: &ScanEventRow| (e.occurred_at, e.id),
            move |conn, after| {
                let mut filter = filter.clone();
                filter.after = Some(after);
                Box::pin(async move { store::list_events(conn, &filter).await })
            },
            "scans",
        );
        Ok(pages
            .map(|page| {
                page.map(|rows| pb::ExportScansChunk {
                    events: rows.iter().map(ScanEventRow::to_pb).collect(),
                })
                .map_err(Status::from)
            })
            .boxed())
    }

    /// Subscribes to the live feed. A task per stream forwards the events the caller may see,
    /// skips what a slow client cannot take, re-checks the caller's session every
    /// `watch_recheck_secs` (a logged-out or deactivated user's stream ends; a changed area
    /// re-filters it), and ends at shutdown or when the client goes away.
    async fn watch_scans(
        &self,
        req: Request<pb::WatchScansRequest>,
    ) -> AppResult<ReceiverStream<Result<pb::ScanEvent, Status>>> {
        let caller = self.caller(&req).await?;
        // The gateway holds one stream for all its browsers (it filters per viewer itself): a
        // service-only call from it sees every area and has no session to re-check.
        let service_feed = caller.user.is_none() && caller.require_service(&["gateway"]).is_ok();
        let mut view = if service_feed {
            View::All
        } else {
            View::of(caller.user()?)
        };
        let metadata = req.metadata().clone();
        let mut events = self.0.feed.subscribe();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let inner = self.0.clone();
        let mut stop = self.0.stop.clone();
        let period = Duration::from_secs(self.0.settings.watch_recheck_secs.max(1));
        tokio::spawn(async move {
            let mut recheck =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = feed::stopped(&mut stop) => break,
                    _ = tx.closed() => break,
                    _ = recheck.tick(), if !service_feed => {
                        match inner.callers.resolve(&metadata).await.and_then(|c| c.user().map(View::of)) {
                            Ok(v) => view = v,
                            Err(e) if matches!(
                                e.code,
                                ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::Internal
                            ) => {}
                            Err(e) => {
                                let _ = tx.try_send(Err(e.into()));
                                break;
                            }
                        }
                    }
                    received = events.recv() => match received {
                        Ok(event) => {
                            if view.sees(&event.area) {
                                match tx.try_send(Ok((*event).clone())) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        metrics::counter!("scan_watch_skipped_total").increment(1);
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            metrics::counter!("scan_watch_skipped_total").increment(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

fn reply<T>(r: AppResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::scan_service_server::ScanService for Scan {
    async fn scan_parent(
        &self,
        r: Request<pb::ScanParentRequest>,
    ) -> Result<Response<pb::ScanParentResponse>, Status> {
        reply(Scan::scan_parent(self, r).await)
    }
    async fn scan_child(
        &self,
        r: Request<pb::ScanChildRequest>,
    ) -> Result<Response<pb::ScanChildResponse>, Status> {
        reply(Scan::scan_child(self, r).await)
    }
    async fn undo_last_child(
        &self,
        r: Request<pb::UndoLastChildRequest>,
    ) -> Result<Response<pb::UndoLastChildResponse>, Status> {
        reply(Scan::undo_last_child(self, r).await)
    }
    async fn list_scans(
        &self,
        r: Request<pb::ListScansRequest>,
    ) -> Result<Response<pb::ListScansResponse>, Status> {
        reply(Scan::list_scans(self, r).await)
    }

    type ExportScansStream = ExportStream<pb::ExportScansChunk>;

    async fn export_scans(
        &self,
        r: Request<pb::ExportScansRequest>,
    ) -> Result<Response<Self::ExportScansStream>, Status> {
        reply(Scan::export_scans(self, r).await)
    }

    type WatchScansStream = ReceiverStream<Result<pb::ScanEvent, Status>>;

    async fn watch_scans(
        &self,
        r: Request<pb::WatchScansRequest>,
    ) -> Result<Response<Self::WatchScansStream>, Status> {
        reply(Scan::watch_scans(self, r).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_characters() {
        assert_eq!(cap("abcdef", 3), "abc");
        assert_eq!(cap("अबक", 2), "अब");
        assert_eq!(cap("ab", 5), "ab");
    }

    #[test]
    fn views_filter_by_area() {
        assert!(View::All.sees("indore"));
        assert!(View::Area("indore".into()).sees("indore"));
        assert!(!View::Area("indore".into()).sees("jaipur"));
        assert!(!View::Area("indore".into()).sees(""));
        assert!(!View::Nothing.sees(""));
    }

    #[test]
    fn registry_errors_keep_code_and_details() {
        let status: Status = AppError::new(ErrorCode::ChildLinkedElsewhere, "in another parent")
            .with_detail("other_parent_qr", "SB00001")
            .into();
        let e = registry_error(&status);
        assert_eq!(e.code, ErrorCode::ChildLinkedElsewhere);
        assert_eq!(e.detail("other_parent_qr"), Some("SB00001"));
        assert_eq!(e.message, "in another parent");

        let e = registry_error(&Status::unavailable("tcp connect error: refused"));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("tcp"));
    }

    #[test]
    fn logged_qr_normalises_or_falls_back() {
        assert_eq!(logged_qr("  sb00001 "), "SB00001");
        assert_eq!(logged_qr("LABEL NO.:0016586 LOT NO.:X"), "0016586");
        assert_eq!(logged_qr(" a<b "), "A<B");
    }
}
