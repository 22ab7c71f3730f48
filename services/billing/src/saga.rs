//! The saga steps that keep billing consistent with bag-registry, shared by the handlers in
//! [`crate::rpc`] and the [`crate::sweeper`].
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

use futures::future::Either;
use futures::StreamExt;
use serde_json::json;
use sqlx::PgConnection;
use tracetrack_common::client;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as reg;

use crate::convert::snapshot;
use crate::registry::registry_error;
use crate::rules::{bill_not_found, conflict};
use crate::state::{Billing, Tx, Who};
use crate::store::{self, BillRow};

/// Concurrent ReleaseParent calls while deleting a bill.
const RELEASE_CONCURRENCY: usize = 8;

impl Billing {
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

    /// Finishes a bill's completion (completing → completed, its parents frozen in bag-registry)
    /// or reopening (reopening → processing, its parents unfrozen): locks the bill if it is in
    /// the intent's status (waits, or skips it when `skip_locked`), calls bag-registry, marks the
    /// bill and writes the event, all in the caller's transaction. None when the bill is not in
    /// that status (or is locked).
    pub(crate) async fn settle_locked(
        &self,
        tx: &mut Tx,
        who: &Who<'_>,
        bill_id: &str,
        skip_locked: bool,
        settle: Settle,
    ) -> AppResult<Option<BillRow>> {
        if store::lock_bill_in(tx, bill_id, settle.intent(), skip_locked)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let key = who.key(settle.registry_rpc());
        let moved = client::retry_transport(|| {
            let mut registry = self.registry();
            let (bill_id, token, key) = (bill_id.to_owned(), who.token(), key.as_deref());
            match settle {
                Settle::Complete => {
                    let req = client::request(reg::FreezeParentsRequest { bill_id }, token, key);
                    Either::Left(async move {
                        let r = registry.freeze_parents(req).await?;
                        Ok(tonic::Response::new(r.into_inner().frozen))
                    })
                }
                Settle::Reopen => {
                    let req = client::request(reg::UnfreezeParentsRequest { bill_id }, token, key);
                    Either::Right(async move {
                        let r = registry.unfreeze_parents(req).await?;
                        Ok(tonic::Response::new(r.into_inner().unfrozen))
                    })
                }
            }
        })
        .await
        .map_err(|s| registry_error(&s))?
        .into_inner();
        match settle {
            Settle::Complete => store::mark_completed(tx, bill_id).await?,
            Settle::Reopen => store::mark_reopened(tx, bill_id).await?,
        }
        let row = store::bill_by_id(tx, bill_id)
            .await?
            .ok_or_else(bill_not_found)?;
        let payload = match settle {
            Settle::Complete => json!({
                "bill_id": bill_id,
                "status": row.status,
                "before": {"status": "processing"},
                "after": {"status": "completed"},
                "parent_count": row.confirmed(),
                "capacity": row.capacity,
                "expected_weight_kg": row.expected_weight_kg,
                "parents_frozen": moved,
            }),
            Settle::Reopen => json!({
                "bill_id": bill_id,
                "status": row.status,
                "before": {"status": "completed"},
                "after": {"status": row.status},
                "parents_unfrozen": moved,
            }),
        };
        self.event(tx, who, settle.event_type(), bill_id, row.version, payload)
            .await?;
        Ok(Some(row))
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
        if !store::lock_deletion(tx, bill_id, skip_locked).await? {
            return Ok(None);
        }
        let Some(before) = store::bill_by_id(tx, bill_id)
            .await?
            .filter(|r| r.status == "deleting")
        else {
            return Ok(None);
        };
        let parents = store::lock_parents_of(tx, bill_id).await?;
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
        store::remove_all_of(tx, bill_id).await?;
        store::delete_bill(tx, bill_id).await?;
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

/// Which way a bill's status is settled: completed (parents frozen) or reopened (unfrozen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Complete,
    Reopen,
}

impl Settle {
    /// The status that holds the intent while bag-registry is called.
    pub(crate) fn intent(self) -> &'static str {
        match self {
            Settle::Complete => "completing",
            Settle::Reopen => "reopening",
        }
    }

    fn registry_rpc(self) -> &'static str {
        match self {
            Settle::Complete => "FreezeParents",
            Settle::Reopen => "UnfreezeParents",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Settle::Complete => "billing.bill_completed",
            Settle::Reopen => "billing.bill_reopened",
        }
    }
}
