//! The sweeper settles what a crash or a failed call to bag-registry left unsettled, once it has
//! been unsettled for `sweeper_settle_after_ms` (well past the registry deadline, so it never
//! races a request that is still working; the row locks make it safe even if it did):
//!
//! - a **pending** reservation: bag-registry says where the parent is (one GetBags call per
//!   round); this bill's → confirm (with the `billing.parent_attached` event), anything else →
//!   delete the reservation (the place comes back);
//! - a **detaching** attachment: release the parent in bag-registry, delete the row;
//! - a bill left **completing**, **reopening** or **deleting**: finish it exactly as the request
//!   would have (FreezeParents, UnfreezeParents, ReleaseParent are idempotent).
//!
//! Every replica runs it. Rows are taken with `FOR UPDATE SKIP LOCKED` (bills by their row lock,
//! deletions by a per-bill advisory lock, tried without waiting), so two sweepers never work on
//! the same row, and a request holding a row is never waited for.

use std::time::Duration;

use tokio::sync::watch;

use crate::saga::Settle;
use crate::state::{Billing, Who};
use crate::store::{self, AttachmentKey, BillState, Unsettled};

/// What one round settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub confirmed: u64,
    pub undone: u64,
    pub detached: u64,
    pub bills: u64,
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
    fn settle_after_ms(&self) -> i64 {
        i64::try_from(self.0.settings.sweeper_settle_after_ms).unwrap_or(i64::MAX)
    }

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
        for (what, n) in [
            ("confirmed", swept.confirmed),
            ("undone", swept.undone),
            ("detached", swept.detached),
            ("bills", swept.bills),
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
        let mut tx = self.pool().begin().await?;
        let rows = store::lock_unsettled(
            &mut tx,
            Unsettled::Pending,
            self.settle_after_ms(),
            self.batch(),
        )
        .await?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        // Asked while the rows are locked: no request can be claiming them meanwhile.
        let bags = self
            .bags(None, rows.iter().map(|r| r.parent_qr.clone()).collect())
            .await?;
        let (mut confirmed, mut undone) = (0, 0);
        for AttachmentKey {
            parent_qr: parent,
            bill_id,
        } in &rows
        {
            match bags.get(parent) {
                Some(bag) if &bag.bill_id == bill_id => {
                    self.confirm_locked(&mut tx, &Who::Sweeper, bill_id, parent, bag, "sweeper")
                        .await?;
                    confirmed += 1;
                }
                _ => {
                    store::remove(&mut tx, bill_id, parent, "pending").await?;
                    tracing::info!(%bill_id, %parent, "sweeper undid an unclaimed reservation");
                    undone += 1;
                }
            }
        }
        tx.commit().await?;
        Ok((confirmed, undone))
    }

    /// Detaching attachments: released in bag-registry, then deleted.
    async fn settle_detaching(&self) -> anyhow::Result<u64> {
        let mut tx = self.pool().begin().await?;
        let rows = store::lock_unsettled(
            &mut tx,
            Unsettled::Detaching,
            self.settle_after_ms(),
            self.batch(),
        )
        .await?;
        let mut detached = 0;
        for AttachmentKey {
            parent_qr: parent,
            bill_id,
        } in &rows
        {
            match self
                .release_locked(&mut tx, &Who::Sweeper, bill_id, parent, None)
                .await
            {
                Ok(Ok(_)) => detached += 1,
                Ok(Err(refused)) => {
                    tracing::warn!(%bill_id, %parent, error = %refused, "detach refused; attachment kept")
                }
                // The registry did not answer: nothing written, try the rest next round.
                Err(e) => {
                    tracing::warn!(%bill_id, %parent, error = ?e, "detach not settled");
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(detached)
    }

    /// Bills left completing, reopening or deleting.
    async fn settle_bills(&self) -> anyhow::Result<u64> {
        let bills =
            store::transitional_bills(self.pool(), self.settle_after_ms(), self.batch()).await?;
        let mut settled = 0;
        for BillState { bill_id, status } in &bills {
            let mut tx = self.pool().begin().await?;
            let done = match status.as_str() {
                "completing" => self
                    .settle_locked(&mut tx, &Who::Sweeper, bill_id, true, Settle::Complete)
                    .await
                    .map(|r| r.is_some()),
                "reopening" => self
                    .settle_locked(&mut tx, &Who::Sweeper, bill_id, true, Settle::Reopen)
                    .await
                    .map(|r| r.is_some()),
                _ => self
                    .delete_locked(&mut tx, &Who::Sweeper, bill_id, true)
                    .await
                    .map(|r| r.is_some()),
            };
            match done {
                Ok(true) => {
                    tx.commit().await?;
                    tracing::info!(%bill_id, from = %status, "sweeper finished a bill's transition");
                    settled += 1;
                }
                Ok(false) => tx.rollback().await?,
                Err(e) => {
                    tx.rollback().await?;
                    tracing::warn!(%bill_id, from = %status, error = ?e, "bill transition not settled");
                }
            }
        }
        Ok(settled)
    }
}
