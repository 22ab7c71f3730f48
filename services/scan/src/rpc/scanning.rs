//! The scanning workflow: ScanParent, ScanChild, UndoLastChild, each a call to bag-registry
//! plus one record in the scan log.
//!
//! ## One scan, step by step
//!
//! 1. Resolve the caller; every RPC needs a logged-in user.
//! 2. If the client sent an idempotency key and scan already stored an answer for it, return
//!    that answer: no registry call, nothing recorded (`Mutations::stored_answer`, a read that
//!    holds no lock and claims nothing).
//! 3. Call bag-registry with the end user's token, scan's service token, and a key derived
//!    deterministically from the client's key (or a fresh one when the client sent none).
//!    No transaction is open during this call: a slow registry holds no database connection.
//! 4. One statement, so one round trip and one commit, shared with the concurrent scans of a
//!    batch (`recorder.rs`, [`store::record_many`]; alone [`store::record`]): claim the
//!    idempotency key with the answer, append the scan event and write the `scan.recorded`
//!    outbox row. If a concurrent request with the same key committed first, its answer is
//!    read and returned, and this one records nothing. Both made the same registry call with
//!    the same derived key, which bag-registry answers once, so nothing happened twice.
//! 5. A refusal (or a failure) of the registry is recorded too, with the error code as its
//!    outcome (event plus outbox row, batched the same way), and then returned to the
//!    caller unchanged. Refusals are not stored under the idempotency key: a retry with the
//!    same key tries again.
//!
//! If step 4 fails after the registry succeeded, the caller gets an error and retries; with
//! its key, bag-registry replays its first answer and the scan is recorded then; without one,
//! the retry finds the child already linked (`already_linked`). No acknowledged scan is lost.

use std::future::Future;

use tonic::{Request, Response, Status};
use tracetrack_common::{client, idempotency, AppError, AppResult};
use tracetrack_proto::registry::v1 as registry;
use tracetrack_proto::scan::v1 as pb;

use crate::attempt::{self, logged_qr, Attempt, Kind};
use crate::state::{RegistryClient, Scan, MUTATIONS, SCHEMA};
use crate::store;

impl Scan {
    pub(crate) async fn scan_parent(
        &self,
        req: Request<pb::ScanParentRequest>,
    ) -> AppResult<pb::ScanParentResponse> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        let mut at = Attempt::new(caller, Kind::Parent, &req.qr)?;
        at.ev.parent_qr = logged_qr(&req.qr);
        let call = registry::EnsureParentRequest {
            qr: req.qr.trim().to_owned(),
            area: req.area.trim().to_owned(),
        };
        let send = |mut r: RegistryClient, q| async move { r.ensure_parent(q).await };
        self.attempt(at, &req, call, send, |answer, ev| {
            attempt::apply_parent(ev, answer.parent.as_ref());
            let outcome = if answer.created { "created" } else { "ok" };
            let resp = pb::ScanParentResponse {
                parent: answer.parent,
                created: answer.created,
            };
            (outcome, resp)
        })
        .await
    }

    pub(crate) async fn scan_child(
        &self,
        req: Request<pb::ScanChildRequest>,
    ) -> AppResult<pb::ScanChildResponse> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        // The scanner typed the child; the parent is the one held on the page.
        let mut at = Attempt::new(caller, Kind::Child, &req.child_qr)?;
        at.ev.parent_qr = logged_qr(&req.parent_qr);
        at.ev.child_qr = Some(logged_qr(&req.child_qr)).filter(|c| !c.is_empty());
        let call = registry::LinkChildRequest {
            parent_qr: req.parent_qr.trim().to_owned(),
            child_qr: req.child_qr.trim().to_owned(),
        };
        let send = |mut r: RegistryClient, q| async move { r.link_child(q).await };
        self.attempt(at, &req, call, send, |answer, ev| {
            attempt::apply_parent(ev, answer.parent.as_ref());
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
            (outcome, resp)
        })
        .await
    }

    pub(crate) async fn undo_last_child(
        &self,
        req: Request<pb::UndoLastChildRequest>,
    ) -> AppResult<pb::UndoLastChildResponse> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        let mut at = Attempt::new(caller, Kind::Undo, &req.parent_qr)?;
        at.ev.parent_qr = logged_qr(&req.parent_qr);
        let call = registry::UndoLastLinkRequest {
            parent_qr: req.parent_qr.trim().to_owned(),
            child_qr: req.child_qr.trim().to_owned(),
        };
        let send = |mut r: RegistryClient, q| async move { r.undo_last_link(q).await };
        self.attempt(at, &req, call, send, |answer, ev| {
            attempt::apply_parent(ev, answer.parent.as_ref());
            ev.child_qr = Some(answer.unlinked_child_qr.clone()).filter(|c| !c.is_empty());
            let resp = pb::UndoLastChildResponse {
                parent: answer.parent,
                unlinked_child_qr: answer.unlinked_child_qr,
            };
            ("ok", resp)
        })
        .await
    }

    /// Steps 2 to 5 of every scan: the stored answer if there is one; else bag-registry's
    /// answer to `call` (sent by `send`), which `answered` turns into the attempt's outcome and
    /// the response, recorded with it; or the registry's refusal, recorded and returned.
    async fn attempt<M, C, A, F, Fut>(
        &self,
        mut at: Attempt,
        req: &impl prost::Message,
        call: C,
        send: F,
        answered: impl FnOnce(A, &mut store::ScanEventRow) -> (&'static str, M),
    ) -> AppResult<M>
    where
        M: prost::Message + Default,
        C: Clone,
        F: Fn(RegistryClient, Request<C>) -> Fut,
        Fut: Future<Output = Result<Response<A>, Status>>,
    {
        match MUTATIONS
            .stored_answer(self.pool(), &at.caller, at.kind.rpc(), req)
            .await
        {
            Ok(Some(first)) => return Ok(first),
            Ok(None) => {}
            Err(e) => return Err(self.record_failure(&at, e).await),
        }
        let key = at.kind.downstream_key(&at.caller);
        let token = at.caller.user_token.as_deref();
        // Idempotent (the derived key): retried once on a transport failure.
        let answer = match client::retry_transport(|| {
            send(
                self.registry(),
                client::request(call.clone(), token, Some(&key)),
            )
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let err = AppError::from_upstream(&status, "the bag registry");
                return Err(self.record_failure(&at, err).await);
            }
        };
        let (outcome, resp) = answered(answer, &mut at.ev);
        self.record_success(at, req, outcome, resp).await
    }

    /// Records a successful scan with its answer and event in one transaction; returns the
    /// answer to give (the first one, if a concurrent request with the same key won).
    async fn record_success<R: prost::Message + Default>(
        &self,
        at: Attempt,
        req: &impl prost::Message,
        outcome: &str,
        resp: R,
    ) -> AppResult<R> {
        let Attempt {
            caller,
            kind,
            mut ev,
        } = at;
        let scope = caller.scope();
        attempt::stamp(&mut ev, outcome);
        let event = attempt::event_row(&caller, &ev)?;
        let Some(key) = caller.idempotency_key.as_deref() else {
            let record = store::Record {
                ev,
                event,
                claim: None,
            };
            self.record(record).await?;
            return Ok(resp);
        };
        let hash = idempotency::request_hash(kind.rpc(), req);
        let claim = store::OwnedClaim {
            scope: scope.clone(),
            key: key.to_owned(),
            request_hash: hash.clone(),
            response: resp.encode_to_vec(),
        };
        let record = store::Record {
            ev,
            event,
            claim: Some(claim),
        };
        if self.record(record).await? {
            return Ok(resp);
        }
        // A request with the same key got there first (both made the same registry call, which
        // bag-registry answered once): its answer, and nothing recorded twice.
        let mut conn = self.pool().acquire().await?;
        idempotency::stored::<R>(&mut conn, SCHEMA, &scope, key, &hash).await
    }

    /// Records a failed attempt (event and outbox row, committed), then hands back the error
    /// for the caller. If even that cannot be written, the original error still goes back.
    async fn record_failure(&self, at: &Attempt, err: AppError) -> AppError {
        // The database is gone (the circuit is open): the record cannot be written, and trying
        // would wait out the pool's acquire timeout a second time, past the caller's deadline.
        if !tracetrack_common::db::answers() {
            metrics::counter!("scan_failures_unrecorded_total").increment(1);
            return err;
        }
        let mut ev = at.ev.clone();
        attempt::stamp(&mut ev, err.code.as_str());
        let outcome = ev.outcome.clone();
        let written = async {
            let event = attempt::event_row(&at.caller, &ev)?;
            self.record(store::Record {
                ev,
                event,
                claim: None,
            })
            .await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, outcome = %outcome, "could not record a failed scan attempt");
        }
        err
    }
}
