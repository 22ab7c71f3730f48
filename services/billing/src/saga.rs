//! The saga steps that keep billing consistent with bag-registry, shared by the handlers in
//! [`crate::rpc`] and the [`crate::sweeper`].
//!
//! **No row lock is held across a call to bag-registry.** Each saga commits its intent with one
//! conditional statement, which also gives the row a lease (see [`crate::store::Stamp`]: the
//! row's `state_changed_at` / `status_changed_at`), calls bag-registry with no transaction open
//! (every call is idempotent, with a key derived from the caller's), then finishes with one
//! conditional statement that applies only if the row is still in that intent under that lease
//! (`… AND state = 'pending' AND state_changed_at = $stamp`). Meanwhile readers, edits and other
//! bills' work never wait for bag-registry.
//!
//! A lease is live for `sweeper_settle_after_ms` (well past the registry deadline). A live lease
//! is never taken over: a request that meets one (a double-fired attach, a reopen while the
//! completion is freezing, a delete while a claim is on its way) waits for it to be finished or
//! to expire (polling the row, as it would have waited for the lock before); the sweeper skips
//! it. An expired lease is taken over with a fresh stamp (one conditional update), so of two
//! finishers only the one holding the current stamp finishes; the other finds its statement
//! changed nothing, reads the row and answers from it. Since a live lease is never taken over,
//! two calls in opposite directions (claim vs release, freeze vs unfreeze) never overlap.
//!
//! ## Attaching a parent (SPEC §2), step by step
//!
//! 1. **Reserve**, one statement, committed at once: a `pending` row under UNIQUE(parent_qr)
//!    with its lease; the trigger takes a place on the bill in the same statement
//!    (`parent_count < capacity AND status IN ('new', 'processing')`), or refuses: `bill_full`,
//!    `bill_completed`, `bill_not_found`. A parent that already has a row answers from it:
//!    confirmed on this bill → success with `already_attached`; on another bill (pending or
//!    not) → `on_other_bill` with `other_bill_id`; pending on this bill (a double-fired attach,
//!    or a retry after a failure) → wait for its lease, then answer from the row, or take it
//!    over when the lease expired.
//! 2. **Claim** with no lock held: bag-registry's ClaimParent with the end user's token,
//!    billing's service token and a key derived from the caller's idempotency key.
//! 3. **Confirm** (the parent's expected weight and line from the claim's answer, the status
//!    becomes `processing`, a `billing.parent_attached` event, the idempotency answer) with one
//!    statement conditional on the lease — or, on a refusal (`bag_not_found`, `not_a_parent`,
//!    `on_other_bill` …), delete the reservation (the place comes back) and return the
//!    registry's error unchanged. When the registry does not answer (unavailable, deadline), the
//!    reservation stays pending: a retry takes it over once its lease expired, or the sweeper.
//!
//! The sweeper takes over reservations whose lease expired (a crash, a failed call), asks
//! bag-registry where the parent is, and confirms (it is this bill's) or deletes each.
//!
//! ## Detaching, completing, reopening, deleting
//!
//! Each first commits its intent (an attachment `detaching`; a bill `completing`, `reopening`
//! or `deleting`) with one conditional statement, then calls bag-registry (ReleaseParent,
//! FreezeParents, UnfreezeParents) with no lock, then finishes conditionally on its lease. A
//! failed call leaves the intent for a retry or the sweeper once the lease expired. A reopen
//! meeting a live `completing` (or a completion meeting a live `reopening`) waits for it, so a
//! freeze and an unfreeze of one bill never overlap. A deletion waits until no reservation of
//! the bill is leased (no claim on its way) before it releases the parents; the bill takes no
//! new reservation once `deleting`. A closed bill (completing, completed, reopening) refuses
//! attach and detach in the trigger, and cannot be completed while anything is pending or
//! detaching.
//!
//! ## Returning a parent (SPEC §1 "Returns (IPT)")
//!
//! The same shape (see [`crate::rpc`]'s returns module): the intent in one transaction (the
//! attachment `returning` on a completed bill, a `returning` row in `billing.returns` holding the
//! lease, the open ticket's count), bag-registry's ReturnParent with no lock, then the finish
//! conditional on the lease (the return `returned` with its snapshot, the attachment row gone);
//! a refusal undoes the intent, no answer leaves it for a retry or the sweeper.
//!
//! ## Figures
//!
//! Billing stores attachments, `parent_count` and each parent's expected weight. A Bill's child
//! count and actual weight are read from bag-registry (GetBillFigures: one call per GetBill, per
//! ListBills page, per mutation answer) whenever a Bill is answered, a replayed answer included.

use std::time::{Duration, Instant};

use futures::future::Either;
use futures::StreamExt;
use serde_json::json;
use sqlx::PgConnection;
use tracetrack_common::client;
use tracetrack_common::{AppError, AppResult};
use tracetrack_proto::registry::v1 as reg;

use crate::convert::snapshot;
use crate::registry::registry_error;
use crate::rules::{bill_not_found, conflict};
use crate::state::{Billing, Tx, Who};
use crate::store::{self, BillRow, Stamp};

/// Concurrent ReleaseParent calls while deleting a bill.
const RELEASE_CONCURRENCY: usize = 8;

/// How often a request waiting for someone else's live lease looks at the row again.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// Waits for leases held by others, polling: [`LeaseWait::next`] sleeps a little, or refuses
/// with `conflict` (retryable) once the wait is longer than a lease can be.
pub(crate) struct LeaseWait {
    until: Instant,
}

impl LeaseWait {
    pub(crate) async fn next(&self, what: &str) -> AppResult<()> {
        if Instant::now() >= self.until {
            return Err(conflict(&format!("{what}; try again")));
        }
        tokio::time::sleep(LEASE_POLL).await;
        Ok(())
    }
}

impl Billing {
    /// How long a lease lasts (ms): the sweeper's settle-after delay.
    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.0.settings.sweeper_settle_after_ms).unwrap_or(i64::MAX)
    }

    /// A wait for others' leases, bounded by two leases.
    pub(crate) fn lease_wait(&self) -> LeaseWait {
        let lease = Duration::from_millis(self.0.settings.sweeper_settle_after_ms);
        LeaseWait {
            until: Instant::now() + lease * 2 + Duration::from_secs(1),
        }
    }

    /// Confirms a pending attachment held under `stamp` with bag-registry's view of the parent,
    /// and writes the event. The bill as it is now, or None when the lease was lost (nothing
    /// written).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn confirm_leased(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        bill_id: &str,
        parent: &str,
        bag: &reg::Bag,
        stamp: Stamp,
        settled_by: &str,
    ) -> AppResult<Option<BillRow>> {
        if !store::confirm(
            conn,
            bill_id,
            parent,
            &bag.product_line,
            bag.expected_weight_kg,
            stamp,
        )
        .await?
        {
            return Ok(None);
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
        Ok(Some(row))
    }

    /// bag-registry's ReleaseParent (no lock held; idempotent).
    pub(crate) async fn release_parent(
        &self,
        who: &Who<'_>,
        bill_id: &str,
        parent: &str,
        key: Option<String>,
    ) -> Result<(), AppError> {
        client::retry_transport(|| {
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
        .await
        .map(|_| ())
        .map_err(|s| registry_error(&s))
    }

    /// Finishes a detach whose ReleaseParent answered: deletes the row held under `stamp` and
    /// writes the event. The bill as it is now, or None when the lease was lost.
    pub(crate) async fn finish_detach(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        bill_id: &str,
        parent: &str,
        stamp: Stamp,
    ) -> AppResult<Option<BillRow>> {
        if !store::remove(&mut *conn, bill_id, parent, "detaching", stamp).await? {
            return Ok(None);
        }
        let row = store::bill_by_id(&mut *conn, bill_id)
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
        Ok(Some(row))
    }

    /// Calls bag-registry for a bill's completion (FreezeParents) or reopening
    /// (UnfreezeParents), with no lock held: how many parents it moved.
    pub(crate) async fn settle_call(
        &self,
        who: &Who<'_>,
        bill_id: &str,
        settle: Settle,
    ) -> AppResult<u32> {
        let key = who.key(settle.registry_rpc());
        Ok(client::retry_transport(|| {
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
        .into_inner())
    }

    /// Finishes a completion (completing → completed) or reopening (reopening → processing)
    /// whose call answered, only if the bill is still in the intent under `stamp`, and writes
    /// the event in the caller's transaction. None when the lease was lost.
    pub(crate) async fn finish_settle(
        &self,
        tx: &mut Tx,
        who: &Who<'_>,
        bill_id: &str,
        stamp: Stamp,
        settle: Settle,
        moved: u32,
    ) -> AppResult<Option<BillRow>> {
        if !store::finish_settle(&mut **tx, bill_id, settle.intent(), stamp).await? {
            return Ok(None);
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

    /// deleting → gone, for the holder of the bill's lease `stamp`: waits until no reservation
    /// of the bill is leased (a claim may be on its way; the sweeper, `wait` false, skips the
    /// bill instead), releases every parent in bag-registry with no lock held, then deletes the
    /// rows and the bill and writes the event in a transaction it returns uncommitted (with the
    /// bill as it was). None when the lease was lost or the bill was skipped.
    pub(crate) async fn delete_leased(
        &self,
        who: &Who<'_>,
        bill_id: &str,
        stamp: Stamp,
        wait: bool,
    ) -> AppResult<Option<(Tx, BillRow)>> {
        let waiting = self.lease_wait();
        while store::pending_leased(self.pool(), bill_id, self.lease_ms()).await? {
            if !wait {
                return Ok(None);
            }
            waiting
                .next("a parent is being attached to this bill")
                .await?;
        }
        let parents = store::parents_of(self.pool(), bill_id).await?;
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
        let mut tx = self.pool().begin().await?;
        let Some(before) = store::bill_by_id(&mut tx, bill_id)
            .await?
            .filter(|r| r.status == "deleting")
        else {
            return Ok(None);
        };
        if !store::finish_delete(&mut tx, bill_id, stamp).await? {
            return Ok(None);
        }
        self.event(
            &mut tx,
            who,
            "billing.bill_deleted",
            bill_id,
            before.version + 1,
            json!({ "bill_id": bill_id, "before": snapshot(&before), "parents": parents }),
        )
        .await?;
        Ok(Some((tx, before)))
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

    pub(crate) fn registry_rpc(self) -> &'static str {
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
