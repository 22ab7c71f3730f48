//! The sweeper settles what a crash or a failed call to bag-registry left unsettled, once its
//! lease expired (`sweeper_settle_after_ms`, well past the registry deadline, so it never races
//! a request that is still working; see [`crate::saga`]):
//!
//! - a **pending** reservation: bag-registry says where the parent is (one GetBags call per
//!   round); this bill's → confirm (with the `billing.parent_attached` event), anything else →
//!   delete the reservation (the place comes back);
//! - a **detaching** attachment: release the parent in bag-registry, delete the row;
//! - a **returning** parent (a return scan left unfinished): ReturnParent in bag-registry, then
//!   the return is finished (or undone when the parent is on another bill);
//! - a bill left **completing**, **reopening** or **deleting**: finish it exactly as the request
//!   would have (FreezeParents, UnfreezeParents, ReleaseParent are idempotent).
//!
//! Every replica runs it. It takes rows over with one statement each round (a fresh lease
//! stamp, `FOR UPDATE SKIP LOCKED` in its sub-select), so two sweepers never work on the same
//! row; it holds no lock while calling bag-registry and finishes each row with a statement
//! conditional on its stamp, which does nothing if a request took the row over meanwhile.

use std::time::Duration;

use tokio::sync::watch;

use crate::saga::Settle;
use crate::state::{Billing, Who};
use tracetrack_common::client;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as reg;

use crate::store::{self, TakenAttachment, TakenBill, Unsettled};

/// What one round settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub confirmed: u64,
    pub undone: u64,
    pub detached: u64,
    pub bills: u64,
    pub returned: u64,
}

/// Runs rounds every `every` until `stop` turns true.
pub async fn run(billing: Billing, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match billing.sweep().await {
            Ok(s) if s != Swept::default() => tracing::info!(?s, "sweeper settled unsettled work"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "sweeper round failed; retrying next round"),
        }
    }
}

impl Billing {
    fn batch(&self) -> i64 {
        self.0.settings.sweeper_batch.max(1)
    }

    /// One round: reservations, detaches, then bills in a transitional status.
    pub async fn sweep(&self) -> anyhow::Result<Swept> {
        let mut swept = Swept::default();
        let (confirmed, undone) = self.settle_pending().await?;
        swept.confirmed = confirmed;
        swept.undone = undone;
        swept.detached = self.settle_detaching().await?;
        swept.bills = self.settle_bills().await?;
        swept.returned = self.settle_returning().await?;
        for (what, n) in [
            ("confirmed", swept.confirmed),
            ("undone", swept.undone),
            ("detached", swept.detached),
            ("bills", swept.bills),
            ("returned", swept.returned),
        ] {
            if n > 0 {
                metrics::counter!("billing_sweeper_settled_total", "what" => what).increment(n);
            }
        }
        Ok(swept)
    }

    /// Pending reservations: confirmed when bag-registry says the parent is on that bill,
    /// deleted otherwise. Returns (confirmed, undone).
    async fn settle_pending(&self) -> anyhow::Result<(u64, u64)> {
        let rows = store::take_unsettled(
            self.pool(),
            Unsettled::Pending,
            self.lease_ms(),
            self.batch(),
        )
        .await?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        // Asked once the rows are ours: no request is claiming them meanwhile (their leases had
        // expired, and a live lease is never taken over).
        let bags = self
            .bags(None, rows.iter().map(|r| r.parent_qr.clone()).collect())
            .await?;
        let (mut confirmed, mut undone) = (0, 0);
        for TakenAttachment {
            parent_qr: parent,
            bill_id,
            stamp,
        } in &rows
        {
            let mut tx = self.pool().begin().await?;
            match bags.get(parent) {
                Some(bag) if &bag.bill_id == bill_id => {
                    if self
                        .confirm_leased(
                            &mut tx,
                            &Who::Sweeper,
                            bill_id,
                            parent,
                            bag,
                            *stamp,
                            "sweeper",
                        )
                        .await?
                        .is_some()
                    {
                        confirmed += 1;
                    }
                }
                _ => {
                    if store::remove(&mut *tx, bill_id, parent, "pending", *stamp).await? {
                        tracing::info!(%bill_id, %parent, "sweeper undid an unclaimed reservation");
                        undone += 1;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok((confirmed, undone))
    }

    /// Detaching attachments: released in bag-registry, then deleted.
    async fn settle_detaching(&self) -> anyhow::Result<u64> {
        let rows = store::take_unsettled(
            self.pool(),
            Unsettled::Detaching,
            self.lease_ms(),
            self.batch(),
        )
        .await?;
        let mut detached = 0;
        for TakenAttachment {
            parent_qr: parent,
            bill_id,
            stamp,
        } in &rows
        {
            match self
                .release_parent(&Who::Sweeper, bill_id, parent, None)
                .await
            {
                Ok(()) => {
                    let mut tx = self.pool().begin().await?;
                    if self
                        .finish_detach(&mut tx, &Who::Sweeper, bill_id, parent, *stamp)
                        .await?
                        .is_some()
                    {
                        detached += 1;
                    }
                    tx.commit().await?;
                }
                Err(refused) if refused.code == ErrorCode::BillCompleted => {
                    store::unmark_detaching(self.pool(), bill_id, parent, *stamp).await?;
                    tracing::warn!(%bill_id, %parent, error = %refused, "detach refused; attachment kept")
                }
                // The registry did not answer: try the rest next round.
                Err(e) => {
                    tracing::warn!(%bill_id, %parent, error = ?e, "detach not settled");
                    break;
                }
            }
        }
        Ok(detached)
    }

    /// Bills left completing, reopening or deleting.
    async fn settle_bills(&self) -> anyhow::Result<u64> {
        let bills = store::take_transitional(self.pool(), self.lease_ms(), self.batch()).await?;
        let mut settled = 0;
        for TakenBill {
            bill_id,
            status,
            stamp,
        } in &bills
        {
            match self.settle_bill_leased(bill_id, status, *stamp).await {
                Ok(true) => {
                    tracing::info!(%bill_id, from = %status, "sweeper finished a bill's transition");
                    settled += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%bill_id, from = %status, error = ?e, "bill transition not settled");
                }
            }
        }
        Ok(settled)
    }

    /// Finishes one bill's transition the sweeper took over; whether it did.
    async fn settle_bill_leased(
        &self,
        bill_id: &str,
        status: &str,
        stamp: store::Stamp,
    ) -> tracetrack_common::AppResult<bool> {
        let settle = match status {
            "completing" => Settle::Complete,
            "reopening" => Settle::Reopen,
            _ => {
                return Ok(
                    match self
                        .delete_leased(&Who::Sweeper, bill_id, stamp, false)
                        .await?
                    {
                        Some((tx, _)) => {
                            tx.commit().await?;
                            true
                        }
                        None => false,
                    },
                )
            }
        };
        let moved = self.settle_call(&Who::Sweeper, bill_id, settle).await?;
        let mut tx = self.pool().begin().await?;
        let done = self
            .finish_settle(&mut tx, &Who::Sweeper, bill_id, stamp, settle, moved)
            .await?
            .is_some();
        tx.commit().await?;
        Ok(done)
    }

    /// Returns left `returning`: ReturnParent in bag-registry (idempotent), then finished.
    async fn settle_returning(&self) -> anyhow::Result<u64> {
        let rows =
            store::take_unsettled_returns(self.pool(), self.lease_ms(), self.batch()).await?;
        let mut returned = 0;
        for r in &rows {
            let answer = client::retry_transport(|| {
                let mut registry = self.registry();
                let call = client::request(
                    reg::ReturnParentRequest {
                        parent_qr: r.parent_qr.clone(),
                        bill_id: r.bill_id.clone(),
                        area: r.area.clone(),
                    },
                    None,
                    None,
                );
                async move { registry.return_parent(call).await }
            })
            .await;
            let answer = match answer {
                Ok(a) => a.into_inner(),
                Err(status) => {
                    tracing::warn!(bill_id = %r.bill_id, parent = %r.parent_qr, ?status, "return not settled");
                    break;
                }
            };
            let Some(ticket) = store::ticket(self.pool(), &r.ticket_id).await? else {
                continue;
            };
            let mut tx = self.pool().begin().await?;
            if self
                .finish_return_leased(
                    &mut tx,
                    &Who::Sweeper,
                    &ticket,
                    &r.bill_id,
                    &r.parent_qr,
                    r.stamp,
                    &answer,
                )
                .await?
                .is_some()
            {
                returned += 1;
            }
            tx.commit().await?;
        }
        Ok(returned)
    }
}
