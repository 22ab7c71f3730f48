//! billing's gRPC handlers and the saga steps the sweeper shares with them.
//!
//! ## Attaching a parent (SPEC §2), step by step
//!
//! 1. **Reserve**, one statement, committed at once: a `pending` row under UNIQUE(parent_qr);
//!    the trigger takes a place on the bill in the same statement (`parent_count < capacity AND
//!    status IN ('new', 'processing')`), or refuses: `bill_full`, `bill_completed`,
//!    `bill_not_found`. A parent that already has a row answers from it: confirmed on this bill
//!    → success with `already_attached`; on another bill (pending or not) → `on_other_bill`
//!    with `other_bill_id`; pending on this bill (a double-fired attach, or a retry after a
//!    failure) → this request settles that reservation itself in step 2.
//! 2. **Claim**, holding the attachment row's lock (`FOR UPDATE`) so no sweeper or concurrent
//!    request acts on the row meanwhile: bag-registry's ClaimParent with the end user's token,
//!    billing's service token and a key derived from the caller's idempotency key.
//! 3. **Confirm** in the same transaction (the parent's expected weight and line from the
//!    claim's answer, the status becomes `processing`, a `billing.parent_attached` event, the
//!    idempotency answer) — or, on a refusal (`bag_not_found`, `not_a_parent`, `on_other_bill`
//!    …), delete the reservation (the place comes back) and return the registry's error
//!    unchanged. When the registry does not answer (unavailable, deadline), the reservation
//!    stays pending: a retry settles it in step 2, or the sweeper does.
//!
//! A crash after step 1 leaves a pending row and no lock: the sweeper, after
//! `sweeper_settle_after_ms`, locks it (`SKIP LOCKED`, so replicas share the work), asks
//! bag-registry where the parent is, and confirms (it is this bill's) or deletes it.
//!
//! ## Detaching, completing, reopening, deleting
//!
//! Each first commits its intent (an attachment `detaching`; a bill `completing`, `reopening`
//! or `deleting`) with one conditional statement, then calls bag-registry (ReleaseParent,
//! FreezeParents, UnfreezeParents) while holding the row's lock, then finishes in that same
//! transaction. A failed call leaves the intent for a retry or the sweeper (every registry call
//! here is idempotent); the lock keeps two finishers (or a completion and a reopening) from
//! interleaving their calls. A closed bill (completing, completed, reopening) refuses attach and
//! detach in the trigger, and cannot be completed while anything is pending or detaching.
//!
//! ## Figures
//!
//! Billing stores attachments, `parent_count` and each parent's expected weight. A Bill's child
//! count and actual weight are read from bag-registry (GetBillFigures: one call per GetBill, per
//! ListBills page, per mutation answer) whenever a Bill is answered, a replayed answer included.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tonic::{Request, Response, Status};
use tracetrack_common::caller::{AreaView as View, Caller, CallerResolver, UserIdentity};
use tracetrack_common::client::{self, Intercepted};
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::idempotency::{self, Begin};
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{bill, qr, ErrorCode, Role};
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::events::v1::Actor;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use uuid::Uuid;

use crate::config::Settings;
use crate::store::{self, bill_completed, bill_not_found, BillRow, Reservation};

pub const SCHEMA: &str = "billing";
pub const SERVICE: &str = "billing";

const MANAGERS: &[Role] = &[Role::Admin, Role::Biller];
/// Bill statuses that accept no attach, detach or capacity change.
const CLOSED: &[&str] = &["completing", "completed", "reopening"];
/// Rounds of reserve-then-claim before giving up with `conflict` (a round repeats only when the
/// row it was about to settle was settled by someone else in between).
const MAX_ATTACH_ROUNDS: usize = 5;
/// Concurrent ReleaseParent calls while deleting a bill.
const RELEASE_CONCURRENCY: usize = 8;
const MAX_DESCRIPTION: usize = 500;
const MAX_DESTINATION: usize = 200;
const MAX_VEHICLE: usize = 50;

pub type RegistryClient = BagRegistryServiceClient<Intercepted>;

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub callers: CallerResolver,
    /// One shared channel to bag-registry (billing's service token on every call).
    pub registry: RegistryClient,
    pub settings: Settings,
}

#[derive(Clone)]
pub struct Billing(pub Arc<Inner>);

/// Who is acting: a request (its user, token and idempotency key) or the sweeper (billing
/// itself).
pub enum Who<'a> {
    Request(&'a Caller),
    Sweeper,
}

impl Who<'_> {
    pub fn actor(&self) -> Actor {
        match self {
            Who::Request(c) => c.actor(),
            Who::Sweeper => Actor {
                service: SERVICE.to_owned(),
                ..Actor::default()
            },
        }
    }

    fn token(&self) -> Option<&str> {
        match self {
            Who::Request(c) => c.user_token.as_deref(),
            Who::Sweeper => None,
        }
    }

    /// The key of a call to bag-registry: derived from the client's key (a retried request makes
    /// the same call), or from a fresh one when there is none.
    fn key(&self, purpose: &str) -> Option<String> {
        match self {
            Who::Request(c) => {
                let user_key = c
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| Uuid::new_v4().to_string());
                Some(idempotency::derive_key(&user_key, &c.scope(), purpose))
            }
            Who::Sweeper => None,
        }
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn from_ts(t: &prost_types::Timestamp, what: &str) -> AppResult<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| AppError::invalid(format!("{what} is not a valid time")))
}

pub fn status_to_pb(status: &str) -> pb::BillStatus {
    match status {
        "new" => pb::BillStatus::New,
        "processing" => pb::BillStatus::Processing,
        "completing" => pb::BillStatus::Completing,
        "completed" => pb::BillStatus::Completed,
        "reopening" => pb::BillStatus::Reopening,
        _ => pb::BillStatus::Unspecified,
    }
}

fn status_from_pb(status: pb::BillStatus) -> Option<&'static str> {
    match status {
        pb::BillStatus::Unspecified => None,
        pb::BillStatus::New => Some("new"),
        pb::BillStatus::Processing => Some("processing"),
        pb::BillStatus::Completing => Some("completing"),
        pb::BillStatus::Completed => Some("completed"),
        pb::BillStatus::Reopening => Some("reopening"),
    }
}

/// A Bill as answered; the figures from bag-registry are filled in by [`apply_figures`].
pub fn to_pb(row: &BillRow) -> pb::Bill {
    pb::Bill {
        bill_id: row.bill_id.clone(),
        status: status_to_pb(&row.status) as i32,
        capacity: row.capacity,
        parent_count: row.confirmed(),
        child_count: 0,
        actual_weight_kg: 0.0,
        expected_weight_kg: row.expected_weight_kg,
        description: row.description.clone(),
        destination: row.destination.clone(),
        vehicle_number: row.vehicle_number.clone(),
        created_by: row.created_by.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(ts(row.created_at)),
        updated_at: Some(ts(row.updated_at)),
        created_by_username: row.created_by_username.clone(),
        completed_at: row.completed_at.map(ts),
    }
}

/// ListBills' filters (shared with ExportBills), without the page.
fn list_filter(req: &pb::ListBillsRequest) -> AppResult<store::ListFilter> {
    let status =
        pb::BillStatus::try_from(req.status).map_err(|_| AppError::invalid("unknown status"))?;
    let created_by = match req.created_by.trim() {
        "" => None,
        id => Some(
            id.parse::<Uuid>()
                .map_err(|_| AppError::invalid("created_by must be a user id"))?,
        ),
    };
    let prefix = bill::sanitize(&req.bill_id_prefix);
    Ok(store::ListFilter {
        status: status_from_pb(status).map(str::to_owned),
        prefix: Some(prefix).filter(|p| !p.is_empty()),
        from: req
            .created_from
            .as_ref()
            .map(|t| from_ts(t, "created_from"))
            .transpose()?,
        to: req
            .created_to
            .as_ref()
            .map(|t| from_ts(t, "created_to"))
            .transpose()?,
        created_by,
        after: None,
        limit: 0,
    })
}

fn apply_figures(bill: &mut pb::Bill, figures: Option<&reg::BillFigures>) {
    bill.child_count = figures.map(|f| f.child_count).unwrap_or(0);
    bill.actual_weight_kg = figures.map(|f| f.actual_weight_kg).unwrap_or(0.0);
}

/// The event payload's view of a bill.
fn snapshot(row: &BillRow) -> serde_json::Value {
    json!({
        "bill_id": row.bill_id,
        "status": row.status,
        "capacity": row.capacity,
        "parent_count": row.confirmed(),
        "expected_weight_kg": row.expected_weight_kg,
        "description": row.description,
        "destination": row.destination,
        "vehicle_number": row.vehicle_number,
        "created_by": row.created_by,
        "created_at": row.created_at,
    })
}

fn qr_err(e: qr::QrError) -> AppError {
    AppError::new(e.code, e.message)
}

/// The bill a request names: an id that cannot exist is simply not found.
fn named_bill(raw: &str) -> AppResult<String> {
    bill::normalize(raw).map_err(|_| bill_not_found())
}

/// A free-text field: sanitised, at most `max` characters.
fn text(raw: &str, max: usize, what: &str) -> AppResult<String> {
    if raw.chars().count() > max * 4 {
        return Err(AppError::invalid(format!(
            "{what} has more than {max} characters"
        )));
    }
    let s = bill::sanitize(raw);
    if s.chars().count() > max {
        return Err(AppError::invalid(format!(
            "{what} has more than {max} characters"
        )));
    }
    Ok(s)
}

fn capacity(c: i32) -> AppResult<i32> {
    if (1..=500).contains(&c) {
        Ok(c)
    } else {
        Err(AppError::invalid("capacity is 1 to 500 parent bags"))
    }
}

fn conflict(message: &str) -> AppError {
    AppError::new(ErrorCode::Conflict, message)
}

fn on_other_bill(other: &str) -> AppError {
    AppError::new(ErrorCode::OnOtherBill, "this parent is on another bill")
        .with_detail("other_bill_id", other)
}

fn not_on_bill(parent: &str) -> AppError {
    AppError::new(ErrorCode::BagNotFound, "that parent is not on this bill")
        .with_detail("parent_qr", parent)
}

/// A registry error, passed on unchanged (code, message and details such as `other_bill_id`),
/// except that a transport failure says which dependency failed instead of leaking its text.
pub fn registry_error(status: &Status) -> AppError {
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

/// Whether a failed registry call may nevertheless have taken effect (no answer, or a failure
/// while committing): then the saga's intent stays for a retry or the sweeper. Every other error
/// is the registry's refusal, made before it changed anything.
pub fn maybe_applied(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unavailable
            | ErrorCode::DeadlineExceeded
            | ErrorCode::Internal
            | ErrorCode::Overloaded
    )
}

fn encode_token(at: DateTime<Utc>, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}\u{1f}{}",
        at.timestamp_micros(),
        id
    ))
}

fn decode_token(token: &str) -> AppResult<(DateTime<Utc>, String)> {
    let bad = || AppError::invalid("bad page_token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (micros, id) = raw.split_once('\u{1f}').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, id.to_owned()))
}

type Tx = Transaction<'static, Postgres>;

impl Billing {
    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    pub fn registry(&self) -> RegistryClient {
        self.0.registry.clone()
    }

    /// The answer stored for the client's idempotency key, if there is one (a replay), or
    /// `idempotency_key_reused` when the key came with a different request. Claims nothing: the
    /// key is claimed in the transaction that makes the change. (The same probe as scan's.)
    async fn stored_answer<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let scope = caller.scope();
        let stored: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM billing.idempotency_keys WHERE scope = $1 AND key = $2)",
        )
        .bind(&scope)
        .bind(key)
        .fetch_one(self.pool())
        .await?;
        if !stored {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        let found = idempotency::begin::<M>(&mut tx, SCHEMA, &scope, key, rpc, req).await?;
        tx.rollback().await?;
        Ok(match found {
            Begin::Replay(m) => Some(m),
            Begin::New => None,
        })
    }

    /// Claims the client's key in the caller's transaction; the first answer if it was used.
    async fn replay<M: prost::Message + Default>(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        match idempotency::begin::<M>(conn, SCHEMA, &caller.scope(), key, rpc, req).await? {
            Begin::New => Ok(None),
            Begin::Replay(m) => Ok(Some(m)),
        }
    }

    async fn remember(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        resp: &impl prost::Message,
    ) -> AppResult<()> {
        if let Some(key) = caller.idempotency_key.as_deref() {
            idempotency::finish(conn, SCHEMA, &caller.scope(), key, resp).await?;
        }
        Ok(())
    }

    /// Writes a `billing.*` event about a bill in the caller's transaction.
    pub(crate) async fn event(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        event_type: &str,
        bill_id: &str,
        version: i64,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        outbox::enqueue(
            conn,
            SCHEMA,
            SERVICE,
            NewEvent {
                event_type,
                aggregate_type: "bill",
                aggregate_id: bill_id,
                aggregate_version: version,
                actor: who.actor(),
                payload,
            },
        )
        .await?;
        metrics::counter!("billing_events_total", "type" => event_type.to_owned()).increment(1);
        Ok(())
    }

    /// Child counts and actual weights of these bills, from bag-registry in one call.
    async fn figures(
        &self,
        token: Option<&str>,
        bill_ids: Vec<String>,
    ) -> AppResult<HashMap<String, reg::BillFigures>> {
        if bill_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let resp = self
            .registry()
            .get_bill_figures(client::request(
                reg::GetBillFiguresRequest { bill_ids },
                token,
                None,
            ))
            .await
            .map_err(|s| registry_error(&s))?;
        Ok(resp
            .into_inner()
            .figures
            .into_iter()
            .map(|f| (f.bill_id.clone(), f))
            .collect())
    }

    /// The registry's view of these bags (one call; missing ones are left out).
    pub(crate) async fn bags(
        &self,
        token: Option<&str>,
        qrs: Vec<String>,
    ) -> AppResult<HashMap<String, reg::Bag>> {
        if qrs.is_empty() {
            return Ok(HashMap::new());
        }
        let resp = self
            .registry()
            .get_bags(client::request(reg::GetBagsRequest { qrs }, token, None))
            .await
            .map_err(|s| registry_error(&s))?;
        Ok(resp
            .into_inner()
            .bags
            .into_iter()
            .map(|b| (b.qr.clone(), b))
            .collect())
    }

    /// Fills a Bill's figures from bag-registry (the answer of every mutation, replays too).
    async fn with_figures(&self, caller: &Caller, bill: &mut Option<pb::Bill>) -> AppResult<()> {
        if let Some(b) = bill.as_mut() {
            let figures = self
                .figures(caller.user_token.as_deref(), vec![b.bill_id.clone()])
                .await?;
            apply_figures(b, figures.get(&b.bill_id));
        }
        Ok(())
    }

    /// A bill readers may see, or `bill_not_found`.
    async fn visible(&self, raw_id: &str) -> AppResult<BillRow> {
        let id = named_bill(raw_id)?;
        store::find_bill(self.pool(), &id)
            .await?
            .ok_or_else(bill_not_found)
    }

    /// Answers a bill as it is now, storing the answer under the client's key (for RPCs whose
    /// request changed nothing, e.g. completing a completed bill).
    async fn answer_current<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
        bill_id: &str,
        make: impl FnOnce(pb::Bill) -> M,
    ) -> AppResult<M> {
        let mut tx = self.pool().begin().await?;
        if let Some(first) = self.replay::<M>(&mut tx, caller, rpc, req).await? {
            return Ok(first);
        }
        let row = store::bill_by_id(&mut tx, bill_id)
            .await?
            .filter(|r| r.status != "deleting")
            .ok_or_else(bill_not_found)?;
        let resp = make(to_pb(&row));
        self.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    // ------------------------------------------------------------------ create, read, update

    async fn create_bill(
        &self,
        req: Request<pb::CreateBillRequest>,
    ) -> AppResult<pb::CreateBillResponse> {
        const RPC: &str = "CreateBill";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let id = bill::normalize(&req.bill_id).map_err(|e| AppError::new(e.code, e.message))?;
        let capacity = capacity(if req.capacity == 0 { 1 } else { req.capacity })?;
        let description = text(&req.description, MAX_DESCRIPTION, "description")?;
        let destination = text(&req.destination, MAX_DESTINATION, "destination")?;
        let vehicle = text(&req.vehicle_number, MAX_VEHICLE, "vehicle_number")?;
        let mut tx = self.pool().begin().await?;
        if let Some(first) = self.replay(&mut tx, &caller, RPC, &req).await? {
            return Ok(first);
        }
        let row: BillRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH b AS (INSERT INTO billing.bills (bill_id, capacity, description, destination, \
                                                 vehicle_number, created_by, created_by_username) \
                        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *) \
             SELECT {} FROM b",
            store::BILL_COLUMNS
        )))
        .bind(&id)
        .bind(capacity)
        .bind(&description)
        .bind(&destination)
        .bind(&vehicle)
        .bind(user.id)
        .bind(&user.username)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            AppError::from_unique(
                e,
                &[
                    (
                        "bills_pkey",
                        ErrorCode::BillExists,
                        "a bill with that id exists",
                    ),
                    (
                        "bills_bill_id_key",
                        ErrorCode::BillExists,
                        "a bill with that id exists (ids ignore case)",
                    ),
                ],
            )
        })?;
        self.event(
            &mut tx,
            &Who::Request(&caller),
            "billing.bill_created",
            &row.bill_id,
            row.version,
            json!({ "bill_id": row.bill_id, "status": row.status, "bill": snapshot(&row) }),
        )
        .await?;
        // A new bill has no parents: its figures are zero without asking bag-registry.
        let resp = pb::CreateBillResponse {
            bill: Some(to_pb(&row)),
        };
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    async fn get_bill(&self, req: Request<pb::GetBillRequest>) -> AppResult<pb::GetBillResponse> {
        let caller = self.caller(&req).await?;
        let view = View::of(caller.user()?);
        let row = self.visible(&req.get_ref().bill_id).await?;
        let attached = store::confirmed_parents(self.pool(), &row.bill_id).await?;
        let token = caller.user_token.as_deref();
        let qrs = attached.iter().map(|a| a.parent_qr.clone()).collect();
        let (bags, figures) = futures::try_join!(
            self.bags(token, qrs),
            self.figures(token, vec![row.bill_id.clone()])
        )?;
        let parents = attached
            .into_iter()
            .filter_map(|a| {
                let bag = bags.get(&a.parent_qr);
                let area = bag.map(|b| b.area.clone()).unwrap_or_default();
                view.sees(&area).then(|| pb::BillParent {
                    product_line: bag
                        .map(|b| b.product_line.clone())
                        .filter(|l| !l.is_empty())
                        .unwrap_or_else(|| a.product_line.clone()),
                    child_count: bag.map(|b| b.child_count).unwrap_or(0),
                    weight_kg: bag.map(|b| b.weight_kg).unwrap_or(0.0),
                    expected_weight_kg: a.expected_weight_kg.unwrap_or(0.0),
                    area,
                    capacity: bag.map(|b| b.capacity).unwrap_or(0),
                    attached_at: a.attached_at.map(ts),
                    qr: a.parent_qr,
                })
            })
            .collect();
        let mut bill = to_pb(&row);
        apply_figures(&mut bill, figures.get(&row.bill_id));
        Ok(pb::GetBillResponse {
            bill: Some(bill),
            parents,
        })
    }

    async fn list_bills(
        &self,
        req: Request<pb::ListBillsRequest>,
    ) -> AppResult<pb::ListBillsResponse> {
        let caller = self.caller(&req).await?;
        caller.user()?;
        let req = req.into_inner();
        let size = match req.page_size {
            0 => 50,
            n => n.min(200),
        } as i64;
        let mut filter = list_filter(&req)?;
        filter.after = match req.page_token.as_str() {
            "" => None,
            t => Some(decode_token(t)?),
        };
        filter.limit = size + 1;
        let rows = store::list_bills(self.pool(), &filter).await?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let figures = self
            .figures(
                caller.user_token.as_deref(),
                page.iter().map(|r| r.bill_id.clone()).collect(),
            )
            .await?;
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => encode_token(last.created_at, &last.bill_id),
            _ => String::new(),
        };
        Ok(pb::ListBillsResponse {
            bills: page
                .iter()
                .map(|r| {
                    let mut b = to_pb(r);
                    apply_figures(&mut b, figures.get(&r.bill_id));
                    b
                })
                .collect(),
            next_page_token,
        })
    }

    /// Admin: every bill matching ListBills' filters, newest first, in chunks read from one
    /// snapshot (see `tracetrack_common::export`), each chunk with its figures from one
    /// GetBillFigures call. The filters are checked and the first page read before the stream
    /// starts, so those errors are the call's own.
    async fn export_bills(
        &self,
        req: Request<pb::ExportBillsRequest>,
    ) -> AppResult<ExportStream<pb::ExportBillsChunk>> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let token = caller.user_token.clone();
        let req = req.into_inner();
        let limit = export::chunk_size(req.chunk_size);
        let mut filter = list_filter(&req.filter.unwrap_or_default())?;
        filter.limit = limit;
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::list_bills(&mut *tx, &filter).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |b: &BillRow| (b.created_at, b.bill_id.clone()),
            move |conn, after| {
                let mut filter = filter.clone();
                filter.after = Some(after);
                Box::pin(async move { store::list_bills(conn, &filter).await })
            },
            "bills",
        );
        let billing = self.clone();
        Ok(pages
            .then(move |page| {
                let billing = billing.clone();
                let token = token.clone();
                async move {
                    let rows = page?;
                    let figures = billing
                        .figures(
                            token.as_deref(),
                            rows.iter().map(|r| r.bill_id.clone()).collect(),
                        )
                        .await?;
                    Ok(pb::ExportBillsChunk {
                        bills: rows
                            .iter()
                            .map(|r| {
                                let mut b = to_pb(r);
                                apply_figures(&mut b, figures.get(&r.bill_id));
                                b
                            })
                            .collect(),
                    })
                }
            })
            .map(|chunk: AppResult<_>| chunk.map_err(Status::from))
            .boxed())
    }

    async fn update_bill(
        &self,
        req: Request<pb::UpdateBillRequest>,
    ) -> AppResult<pb::UpdateBillResponse> {
        const RPC: &str = "UpdateBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let description = req
            .description
            .as_deref()
            .map(|d| text(d, MAX_DESCRIPTION, "description"))
            .transpose()?;
        let destination = req
            .destination
            .as_deref()
            .map(|d| text(d, MAX_DESTINATION, "destination"))
            .transpose()?;
        let vehicle = req
            .vehicle_number
            .as_deref()
            .map(|d| text(d, MAX_VEHICLE, "vehicle_number"))
            .transpose()?;
        let new_capacity = req.capacity.map(capacity).transpose()?;
        if let Some(mut first) = self
            .stored_answer::<pb::UpdateBillResponse>(&caller, RPC, &req)
            .await?
        {
            self.with_figures(&caller, &mut first.bill).await?;
            return Ok(first);
        }
        let mut tx = self.pool().begin().await?;
        if let Some(mut first) = self
            .replay::<pb::UpdateBillResponse>(&mut tx, &caller, RPC, &req)
            .await?
        {
            tx.rollback().await?;
            self.with_figures(&caller, &mut first.bill).await?;
            return Ok(first);
        }
        // The row as it was (locked, for the event's "before" and to explain a refusal); the
        // capacity rule itself is the UPDATE's condition.
        let before: BillRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM billing.bills b WHERE lower(b.bill_id) = lower($1) \
               AND b.status <> 'deleting' FOR UPDATE OF b",
            store::BILL_COLUMNS
        )))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(bill_not_found)?;
        let capacity_changes = new_capacity.is_some_and(|c| c != before.capacity);
        if capacity_changes && CLOSED.contains(&before.status.as_str()) {
            return Err(bill_completed());
        }
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE billing.bills SET description = coalesce($2, description), \
                    destination = coalesce($3, destination), \
                    vehicle_number = coalesce($4, vehicle_number), \
                    capacity = coalesce($5, capacity), \
                    version = version + 1, updated_at = now() \
              WHERE bill_id = $1 \
                AND ($5::int IS NULL OR capacity = $5 \
                     OR (status IN ('new', 'processing') AND parent_count <= $5)) \
             RETURNING bill_id",
        )
        .bind(&before.bill_id)
        .bind(&description)
        .bind(&destination)
        .bind(&vehicle)
        .bind(new_capacity)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| match tracetrack_common::db::check_violation(&e) {
            Some("bills_parent_count_within_capacity") => below_attached(before.parent_count),
            Some("bills_closed_only_when_full") => bill_completed(),
            _ => AppError::from(e),
        })?;
        if updated.is_none() {
            return Err(if CLOSED.contains(&before.status.as_str()) {
                bill_completed()
            } else {
                below_attached(before.parent_count)
            });
        }
        let after = store::bill_by_id(&mut tx, &before.bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        let (mut was, mut now) = (serde_json::Map::new(), serde_json::Map::new());
        for (field, old, new) in [
            ("description", &before.description, &after.description),
            ("destination", &before.destination, &after.destination),
            (
                "vehicle_number",
                &before.vehicle_number,
                &after.vehicle_number,
            ),
        ] {
            if old != new {
                was.insert(field.into(), json!(old));
                now.insert(field.into(), json!(new));
            }
        }
        if before.capacity != after.capacity {
            was.insert("capacity".into(), json!(before.capacity));
            now.insert("capacity".into(), json!(after.capacity));
        }
        self.event(
            &mut tx,
            &Who::Request(&caller),
            "billing.bill_updated",
            &after.bill_id,
            after.version,
            json!({ "bill_id": after.bill_id, "status": after.status, "before": was, "after": now }),
        )
        .await?;
        let resp = pb::UpdateBillResponse {
            bill: Some(to_pb(&after)),
        };
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        let mut resp = resp;
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    // ------------------------------------------------------------------ attach and detach

    async fn attach_parent(
        &self,
        req: Request<pb::AttachParentRequest>,
    ) -> AppResult<pb::AttachParentResponse> {
        const RPC: &str = "AttachParent";
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let parent = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut resp = match self.stored_answer(&caller, RPC, &req).await? {
            Some(first) => first,
            None => self.attach(&caller, &user, &req, &parent).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn attach(
        &self,
        caller: &Caller,
        user: &UserIdentity,
        req: &pb::AttachParentRequest,
        parent: &str,
    ) -> AppResult<pb::AttachParentResponse> {
        const RPC: &str = "AttachParent";
        let bill_id = self.visible(&req.bill_id).await?.bill_id;
        let who = Who::Request(caller);
        let key = who.key("ClaimParent");
        for _ in 0..MAX_ATTACH_ROUNDS {
            // 1. Reserve (committed at once).
            match store::reserve(self.pool(), &bill_id, parent, Some(user.id)).await? {
                Reservation::Reserved => {}
                Reservation::Existing { bill_id: other, .. } if other != bill_id => {
                    return Err(on_other_bill(&other));
                }
                // Confirmed here: answered below. Pending here: settled by this request below.
                Reservation::Existing { .. } => {}
                Reservation::Vanished => continue,
            }
            // 2. Claim, holding the row's lock.
            let mut tx = self.pool().begin().await?;
            match store::lock_attachment(&mut tx, &bill_id, parent)
                .await?
                .as_deref()
            {
                None => continue,
                Some("pending") => {}
                Some("confirmed") => {
                    if let Some(first) = self.replay(&mut tx, caller, RPC, req).await? {
                        return Ok(first);
                    }
                    let row = store::bill_by_id(&mut tx, &bill_id)
                        .await?
                        .ok_or_else(bill_not_found)?;
                    let resp = pb::AttachParentResponse {
                        bill: Some(to_pb(&row)),
                        already_attached: true,
                    };
                    self.remember(&mut tx, caller, &resp).await?;
                    tx.commit().await?;
                    metrics::counter!("billing_attach_total", "outcome" => "already_attached")
                        .increment(1);
                    return Ok(resp);
                }
                Some(_) => {
                    return Err(conflict(
                        "this parent is being detached from this bill; try again",
                    ))
                }
            }
            // Idempotent (its key): retried once on a transport failure.
            let claim = client::retry_transport(|| {
                let mut registry = self.registry();
                let req = client::request(
                    reg::ClaimParentRequest {
                        parent_qr: parent.to_owned(),
                        bill_id: bill_id.clone(),
                    },
                    who.token(),
                    key.as_deref(),
                );
                async move { registry.claim_parent(req).await }
            })
            .await;
            // 3. Confirm, or undo on a refusal.
            let bag = match claim {
                Ok(r) => r.into_inner().parent.unwrap_or_default(),
                Err(status) => {
                    let err = registry_error(&status);
                    if maybe_applied(err.code) {
                        // The claim may have happened: the reservation stays pending for a
                        // retry or the sweeper, which ask bag-registry.
                        tx.rollback().await?;
                    } else {
                        store::remove(&mut tx, &bill_id, parent, "pending").await?;
                        tx.commit().await?;
                    }
                    metrics::counter!("billing_attach_total", "outcome" => err.code.as_str())
                        .increment(1);
                    return Err(err);
                }
            };
            if let Some(first) = self.replay(&mut tx, caller, RPC, req).await? {
                // A concurrent request with this key answered first; this claim stands and the
                // sweeper confirms the reservation.
                tx.rollback().await?;
                return Ok(first);
            }
            let row = self
                .confirm_locked(&mut tx, &who, &bill_id, parent, &bag, "request")
                .await?;
            let resp = pb::AttachParentResponse {
                bill: Some(to_pb(&row)),
                already_attached: false,
            };
            self.remember(&mut tx, caller, &resp).await?;
            tx.commit().await?;
            metrics::counter!("billing_attach_total", "outcome" => "attached").increment(1);
            return Ok(resp);
        }
        Err(conflict("the parent's attachment kept changing; try again"))
    }

    /// Confirms a pending attachment (locked by the caller) with bag-registry's view of the
    /// parent, and writes the event. The bill as it is now.
    pub(crate) async fn confirm_locked(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        bill_id: &str,
        parent: &str,
        bag: &reg::Bag,
        settled_by: &str,
    ) -> AppResult<BillRow> {
        if !store::confirm(
            conn,
            bill_id,
            parent,
            &bag.product_line,
            bag.expected_weight_kg,
        )
        .await?
        {
            return Err(conflict("the reservation changed; try again"));
        }
        let row = store::bill_by_id(conn, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        self.event(
            conn,
            who,
            "billing.parent_attached",
            bill_id,
            row.version,
            json!({
                "bill_id": bill_id,
                "parent_qr": parent,
                "product_line": bag.product_line,
                "area": bag.area,
                "child_count": bag.child_count,
                "expected_weight_kg": bag.expected_weight_kg,
                "parent_count": row.confirmed(),
                "capacity": row.capacity,
                "status": row.status,
                "settled_by": settled_by,
            }),
        )
        .await?;
        Ok(row)
    }

    async fn detach_parent(
        &self,
        req: Request<pb::DetachParentRequest>,
    ) -> AppResult<pb::DetachParentResponse> {
        const RPC: &str = "DetachParent";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let parent = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut resp = match self.stored_answer(&caller, RPC, &req).await? {
            Some(first) => first,
            None => self.detach(&caller, &req, &parent).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn detach(
        &self,
        caller: &Caller,
        req: &pb::DetachParentRequest,
        parent: &str,
    ) -> AppResult<pb::DetachParentResponse> {
        const RPC: &str = "DetachParent";
        let bill_id = self.visible(&req.bill_id).await?.bill_id;
        let who = Who::Request(caller);
        // 1. The intent, committed: confirmed → detaching (the trigger refuses a closed bill).
        if !store::mark_detaching(self.pool(), &bill_id, parent).await? {
            match store::attachment(self.pool(), parent).await? {
                Some(a) if a.bill_id == bill_id && a.state == "detaching" => {}
                Some(a) if a.bill_id == bill_id => {
                    return Err(conflict(
                        "this parent is being attached to this bill; try again",
                    ))
                }
                _ => return Err(not_on_bill(parent)),
            }
        }
        // 2. Release in bag-registry holding the row's lock, then delete the row.
        let mut tx = self.pool().begin().await?;
        match store::lock_attachment(&mut tx, &bill_id, parent)
            .await?
            .as_deref()
        {
            Some("detaching") => {}
            // Finished meanwhile by a concurrent detach or the sweeper: detached.
            None => {
                tx.rollback().await?;
                return self
                    .answer_current(caller, RPC, req, &bill_id, |b| pb::DetachParentResponse {
                        bill: Some(b),
                    })
                    .await;
            }
            Some(_) => return Err(conflict("the parent's attachment changed; try again")),
        }
        let row = match self
            .release_locked(&mut tx, &who, &bill_id, parent, who.key("ReleaseParent"))
            .await?
        {
            Ok(row) => row,
            Err(refused) => {
                tx.commit().await?;
                return Err(refused);
            }
        };
        if let Some(first) = self.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = pb::DetachParentResponse {
            bill: Some(to_pb(&row)),
        };
        self.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// Releases a detaching parent (row locked by the caller) in bag-registry and deletes the
    /// row: `Ok(Ok(bill))`. bag-registry refusing because the parent is frozen puts the row back
    /// (`Ok(Err(bill_completed))`, to commit). Any other failure is an `Err`: nothing was
    /// written, the row stays detaching for a retry or the sweeper.
    pub(crate) async fn release_locked(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        bill_id: &str,
        parent: &str,
        key: Option<String>,
    ) -> AppResult<Result<BillRow, AppError>> {
        let released = client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(
                reg::ReleaseParentRequest {
                    parent_qr: parent.to_owned(),
                    bill_id: bill_id.to_owned(),
                },
                who.token(),
                key.as_deref(),
            );
            async move { registry.release_parent(req).await }
        })
        .await;
        match released {
            Ok(_) => {}
            Err(status) => {
                let err = registry_error(&status);
                if err.code == ErrorCode::BillCompleted {
                    store::unmark_detaching(conn, bill_id, parent).await?;
                    return Ok(Err(err));
                }
                return Err(err);
            }
        }
        store::remove(conn, bill_id, parent, "detaching").await?;
        let row = store::bill_by_id(conn, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        self.event(
            conn,
            who,
            "billing.parent_detached",
            bill_id,
            row.version,
            json!({
                "bill_id": bill_id,
                "parent_qr": parent,
                "parent_count": row.confirmed(),
                "capacity": row.capacity,
                "status": row.status,
            }),
        )
        .await?;
        Ok(Ok(row))
    }

    // ------------------------------------------------------------------ complete, reopen, delete

    async fn complete_bill(
        &self,
        req: Request<pb::CompleteBillRequest>,
    ) -> AppResult<pb::CompleteBillResponse> {
        const RPC: &str = "CompleteBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let make = |b| pb::CompleteBillResponse { bill: Some(b) };
        let mut resp = match self.stored_answer(&caller, RPC, &req).await? {
            Some(first) => first,
            None => self.complete(&caller, &req, &id, make).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn complete(
        &self,
        caller: &Caller,
        req: &pb::CompleteBillRequest,
        id: &str,
        make: impl Fn(pb::Bill) -> pb::CompleteBillResponse,
    ) -> AppResult<pb::CompleteBillResponse> {
        const RPC: &str = "CompleteBill";
        // 1. The intent: only a full bill with nothing in flight.
        let moved = store::transition(
            self.pool(),
            id,
            "completing",
            &["new", "processing", "reopening"],
            true,
        )
        .await?;
        let bill_id = match moved {
            Some(bill_id) => bill_id,
            None => match store::bill_status(self.pool(), id).await? {
                None => return Err(bill_not_found()),
                Some((_, s)) if s == "deleting" => return Err(bill_not_found()),
                Some((bill_id, s)) if s == "completing" => bill_id,
                Some((bill_id, s)) if s == "completed" => {
                    return self.answer_current(caller, RPC, req, &bill_id, make).await;
                }
                Some(_) => {
                    let row = store::find_bill(self.pool(), id)
                        .await?
                        .ok_or_else(bill_not_found)?;
                    let message = if row.unsettled_count > 0 {
                        "a parent is being attached or detached; try again"
                    } else {
                        "a bill is completed only when it holds as many parents as its capacity"
                    };
                    return Err(AppError::new(ErrorCode::BillIncomplete, message)
                        .with_detail("parent_count", row.confirmed())
                        .with_detail("capacity", row.capacity));
                }
            },
        };
        // 2. Freeze in bag-registry and finish, holding the bill's lock.
        let mut tx = self.pool().begin().await?;
        let who = Who::Request(caller);
        let Some(row) = self.complete_locked(&mut tx, &who, &bill_id, false).await? else {
            tx.rollback().await?;
            return match store::bill_status(self.pool(), &bill_id).await? {
                Some((_, s)) if s == "completed" => {
                    self.answer_current(caller, RPC, req, &bill_id, make).await
                }
                Some((_, s)) if s != "deleting" => {
                    Err(conflict("the bill was reopened meanwhile; try again"))
                }
                _ => Err(bill_not_found()),
            };
        };
        if let Some(first) = self.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = make(to_pb(&row));
        self.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// completing → completed: locks the bill (if it is completing; waits, or skips it when
    /// `skip_locked`), freezes its parents in bag-registry, marks it completed and writes the
    /// event in the caller's transaction. None when the bill is not completing (or is locked).
    pub(crate) async fn complete_locked(
        &self,
        tx: &mut Tx,
        who: &Who<'_>,
        bill_id: &str,
        skip_locked: bool,
    ) -> AppResult<Option<BillRow>> {
        if store::lock_bill_in(tx, bill_id, "completing", skip_locked)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let key = who.key("FreezeParents");
        let frozen = client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(
                reg::FreezeParentsRequest {
                    bill_id: bill_id.to_owned(),
                },
                who.token(),
                key.as_deref(),
            );
            async move { registry.freeze_parents(req).await }
        })
        .await
        .map_err(|s| registry_error(&s))?
        .into_inner()
        .frozen;
        sqlx::query(
            "UPDATE billing.bills SET status = 'completed', completed_at = now(), \
                    status_changed_at = now(), updated_at = now(), version = version + 1 \
              WHERE bill_id = $1 AND status = 'completing'",
        )
        .bind(bill_id)
        .execute(&mut **tx)
        .await?;
        let row = store::bill_by_id(tx, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        self.event(
            tx,
            who,
            "billing.bill_completed",
            bill_id,
            row.version,
            json!({
                "bill_id": bill_id,
                "status": row.status,
                "before": {"status": "processing"},
                "after": {"status": "completed"},
                "parent_count": row.confirmed(),
                "capacity": row.capacity,
                "expected_weight_kg": row.expected_weight_kg,
                "parents_frozen": frozen,
            }),
        )
        .await?;
        Ok(Some(row))
    }

    async fn reopen_bill(
        &self,
        req: Request<pb::ReopenBillRequest>,
    ) -> AppResult<pb::ReopenBillResponse> {
        const RPC: &str = "ReopenBill";
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        let make = |b| pb::ReopenBillResponse { bill: Some(b) };
        let mut resp = match self.stored_answer(&caller, RPC, &req).await? {
            Some(first) => first,
            None => self.reopen(&caller, &req, &id, make).await?,
        };
        self.with_figures(&caller, &mut resp.bill).await?;
        Ok(resp)
    }

    async fn reopen(
        &self,
        caller: &Caller,
        req: &pb::ReopenBillRequest,
        id: &str,
        make: impl Fn(pb::Bill) -> pb::ReopenBillResponse,
    ) -> AppResult<pb::ReopenBillResponse> {
        const RPC: &str = "ReopenBill";
        let moved = store::transition(
            self.pool(),
            id,
            "reopening",
            &["completing", "completed"],
            false,
        )
        .await?;
        let bill_id = match moved {
            Some(bill_id) => bill_id,
            None => match store::bill_status(self.pool(), id).await? {
                None => return Err(bill_not_found()),
                Some((_, s)) if s == "deleting" => return Err(bill_not_found()),
                Some((bill_id, s)) if s == "reopening" => bill_id,
                // Not completed: already open, nothing to do.
                Some((bill_id, _)) => {
                    return self.answer_current(caller, RPC, req, &bill_id, make).await;
                }
            },
        };
        let mut tx = self.pool().begin().await?;
        let who = Who::Request(caller);
        let Some(row) = self.reopen_locked(&mut tx, &who, &bill_id, false).await? else {
            tx.rollback().await?;
            return match store::bill_status(self.pool(), &bill_id).await? {
                Some((_, s)) if s == "new" || s == "processing" => {
                    self.answer_current(caller, RPC, req, &bill_id, make).await
                }
                Some((_, s)) if s != "deleting" => {
                    Err(conflict("the bill was completed meanwhile; try again"))
                }
                _ => Err(bill_not_found()),
            };
        };
        if let Some(first) = self.replay(&mut tx, caller, RPC, req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = make(to_pb(&row));
        self.remember(&mut tx, caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// reopening → processing: locks the bill (if it is reopening), unfreezes its parents in
    /// bag-registry, reopens it and writes the event in the caller's transaction.
    pub(crate) async fn reopen_locked(
        &self,
        tx: &mut Tx,
        who: &Who<'_>,
        bill_id: &str,
        skip_locked: bool,
    ) -> AppResult<Option<BillRow>> {
        if store::lock_bill_in(tx, bill_id, "reopening", skip_locked)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let key = who.key("UnfreezeParents");
        let unfrozen = client::retry_transport(|| {
            let mut registry = self.registry();
            let req = client::request(
                reg::UnfreezeParentsRequest {
                    bill_id: bill_id.to_owned(),
                },
                who.token(),
                key.as_deref(),
            );
            async move { registry.unfreeze_parents(req).await }
        })
        .await
        .map_err(|s| registry_error(&s))?
        .into_inner()
        .unfrozen;
        sqlx::query(
            "UPDATE billing.bills \
                SET status = CASE WHEN parent_count - unsettled_count > 0 THEN 'processing' ELSE 'new' END, \
                    completed_at = NULL, status_changed_at = now(), updated_at = now(), \
                    version = version + 1 \
              WHERE bill_id = $1 AND status = 'reopening'",
        )
        .bind(bill_id)
        .execute(&mut **tx)
        .await?;
        let row = store::bill_by_id(tx, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        self.event(
            tx,
            who,
            "billing.bill_reopened",
            bill_id,
            row.version,
            json!({
                "bill_id": bill_id,
                "status": row.status,
                "before": {"status": "completed"},
                "after": {"status": row.status},
                "parents_unfrozen": unfrozen,
            }),
        )
        .await?;
        Ok(Some(row))
    }

    async fn delete_bill(
        &self,
        req: Request<pb::DeleteBillRequest>,
    ) -> AppResult<pb::DeleteBillResponse> {
        const RPC: &str = "DeleteBill";
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let req = req.into_inner();
        let id = named_bill(&req.bill_id)?;
        if let Some(first) = self.stored_answer(&caller, RPC, &req).await? {
            return Ok(first);
        }
        // 1. The intent: a bill being deleted takes no new parent and is hidden from readers.
        let moved = store::transition(
            self.pool(),
            &id,
            "deleting",
            &["new", "processing", "deleting"],
            false,
        )
        .await?;
        let bill_id = match moved {
            Some(bill_id) => bill_id,
            None => match store::bill_status(self.pool(), &id).await? {
                None => return Err(bill_not_found()),
                Some(_) => return Err(bill_completed()),
            },
        };
        // 2. Release every parent in bag-registry, then delete.
        let mut tx = self.pool().begin().await?;
        let who = Who::Request(&caller);
        let deleted = self.delete_locked(&mut tx, &who, &bill_id, false).await?;
        if deleted.is_none() {
            // Finished meanwhile by a concurrent delete or the sweeper.
            tx.rollback().await?;
            let mut tx = self.pool().begin().await?;
            if let Some(first) = self.replay(&mut tx, &caller, RPC, &req).await? {
                return Ok(first);
            }
            let resp = pb::DeleteBillResponse {};
            self.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            return Ok(resp);
        }
        if let Some(first) = self.replay(&mut tx, &caller, RPC, &req).await? {
            tx.rollback().await?;
            return Ok(first);
        }
        let resp = pb::DeleteBillResponse {};
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    /// deleting → gone: under a per-bill advisory lock (waited for, or skipped when
    /// `skip_locked`), locks every attachment row of the bill (waiting for in-flight attaches
    /// and detaches), releases each parent in bag-registry, deletes the rows and the bill and
    /// writes the event. The bill as it was, or None when it is not being deleted.
    pub(crate) async fn delete_locked(
        &self,
        tx: &mut Tx,
        who: &Who<'_>,
        bill_id: &str,
        skip_locked: bool,
    ) -> AppResult<Option<BillRow>> {
        let lock = if skip_locked {
            "SELECT pg_try_advisory_xact_lock(hashtext('tracetrack.billing.delete'), hashtext($1))"
        } else {
            "SELECT true FROM (SELECT pg_advisory_xact_lock(hashtext('tracetrack.billing.delete'), hashtext($1))) l"
        };
        let locked: bool = sqlx::query_scalar(lock)
            .bind(bill_id)
            .fetch_one(&mut **tx)
            .await?;
        if !locked {
            return Ok(None);
        }
        let Some(before) = store::bill_by_id(tx, bill_id)
            .await?
            .filter(|r| r.status == "deleting")
        else {
            return Ok(None);
        };
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT parent_qr FROM billing.attachments WHERE bill_id = $1 ORDER BY parent_qr FOR UPDATE",
        )
        .bind(bill_id)
        .fetch_all(&mut **tx)
        .await?;
        // Every call built up front (owning its data), then run a few at a time.
        let calls: Vec<_> = parents
            .iter()
            .map(|parent| {
                let registry = self.registry();
                let key = who.key(&format!("ReleaseParent:{parent}"));
                let token = who.token().map(str::to_owned);
                let (parent, bill_id) = (parent.clone(), bill_id.to_owned());
                async move {
                    client::retry_transport(|| {
                        let mut registry = registry.clone();
                        let call = client::request(
                            reg::ReleaseParentRequest {
                                parent_qr: parent.clone(),
                                bill_id: bill_id.clone(),
                            },
                            token.as_deref(),
                            key.as_deref(),
                        );
                        async move { registry.release_parent(call).await }
                    })
                    .await
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(RELEASE_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            r.map_err(|s| registry_error(&s))?;
        }
        sqlx::query("DELETE FROM billing.attachments WHERE bill_id = $1")
            .bind(bill_id)
            .execute(&mut **tx)
            .await
            .map_err(store::attachment_error)?;
        sqlx::query("DELETE FROM billing.bills WHERE bill_id = $1 AND status = 'deleting'")
            .bind(bill_id)
            .execute(&mut **tx)
            .await?;
        self.event(
            tx,
            who,
            "billing.bill_deleted",
            bill_id,
            before.version + 1,
            json!({ "bill_id": bill_id, "before": snapshot(&before), "parents": parents }),
        )
        .await?;
        Ok(Some(before))
    }
}

fn below_attached(attached: i32) -> AppError {
    AppError::new(
        ErrorCode::CapacityBelowAttached,
        "the capacity cannot be below the parents attached",
    )
    .with_detail("attached", attached)
}

fn reply<T>(r: AppResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for Billing {
    async fn create_bill(
        &self,
        r: Request<pb::CreateBillRequest>,
    ) -> Result<Response<pb::CreateBillResponse>, Status> {
        reply(Billing::create_bill(self, r).await)
    }
    async fn get_bill(
        &self,
        r: Request<pb::GetBillRequest>,
    ) -> Result<Response<pb::GetBillResponse>, Status> {
        reply(Billing::get_bill(self, r).await)
    }
    async fn list_bills(
        &self,
        r: Request<pb::ListBillsRequest>,
    ) -> Result<Response<pb::ListBillsResponse>, Status> {
        reply(Billing::list_bills(self, r).await)
    }
    type ExportBillsStream = ExportStream<pb::ExportBillsChunk>;

    async fn export_bills(
        &self,
        r: Request<pb::ExportBillsRequest>,
    ) -> Result<Response<Self::ExportBillsStream>, Status> {
        reply(Billing::export_bills(self, r).await)
    }
    async fn update_bill(
        &self,
        r: Request<pb::UpdateBillRequest>,
    ) -> Result<Response<pb::UpdateBillResponse>, Status> {
        reply(Billing::update_bill(self, r).await)
    }
    async fn attach_parent(
        &self,
        r: Request<pb::AttachParentRequest>,
    ) -> Result<Response<pb::AttachParentResponse>, Status> {
        reply(Billing::attach_parent(self, r).await)
    }
    async fn detach_parent(
        &self,
        r: Request<pb::DetachParentRequest>,
    ) -> Result<Response<pb::DetachParentResponse>, Status> {
        reply(Billing::detach_parent(self, r).await)
    }
    async fn complete_bill(
        &self,
        r: Request<pb::CompleteBillRequest>,
    ) -> Result<Response<pb::CompleteBillResponse>, Status> {
        reply(Billing::complete_bill(self, r).await)
    }
    async fn reopen_bill(
        &self,
        r: Request<pb::ReopenBillRequest>,
    ) -> Result<Response<pb::ReopenBillResponse>, Status> {
        reply(Billing::reopen_bill(self, r).await)
    }
    async fn delete_bill(
        &self,
        r: Request<pb::DeleteBillRequest>,
    ) -> Result<Response<pb::DeleteBillResponse>, Status> {
        reply(Billing::delete_bill(self, r).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

    #[test]
    fn page_tokens_round_trip() {
        let at = Utc::now().trunc_subsecs(6);
        let back = decode_token(&encode_token(at, "Bill:7 x"));
        assert!(matches!(back, Ok((a, ref i)) if a == at && i == "Bill:7 x"));
        assert!(decode_token("not a token").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["new", "processing", "completing", "completed", "reopening"] {
            assert_eq!(status_from_pb(status_to_pb(s)), Some(s));
        }
        assert_eq!(status_to_pb("deleting"), pb::BillStatus::Unspecified);
    }

    #[test]
    fn registry_refusals_pass_through_and_transport_failures_are_ambiguous() {
        let status: Status = AppError::new(ErrorCode::OnOtherBill, "on another bill")
            .with_detail("other_bill_id", "B-1")
            .into();
        let e = registry_error(&status);
        assert_eq!(e.code, ErrorCode::OnOtherBill);
        assert_eq!(e.detail("other_bill_id"), Some("B-1"));
        assert!(!maybe_applied(e.code));
        let e = registry_error(&Status::unavailable("tcp connect error"));
        assert!(maybe_applied(e.code));
        assert!(!e.message.contains("tcp"));
        assert!(maybe_applied(
            registry_error(&Status::deadline_exceeded("late")).code
        ));
    }

    #[test]
    fn text_fields_are_sanitised_and_bounded() {
        assert_eq!(
            text("  Jaipur\u{200B}  depot ", 20, "x").ok(),
            Some("Jaipur depot".into())
        );
        assert!(text(&"a".repeat(21), 20, "x").is_err());
        assert!(capacity(0).is_err());
        assert!(capacity(501).is_err());
        assert_eq!(capacity(500).ok(), Some(500));
    }
}
