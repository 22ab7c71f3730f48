//! The lockout around every password check (a login, a password change): an attempt is counted
//! before its password is verified, so a burst of parallel attempts gets exactly the allowed
//! number of verifications (see `store::reserve_attempt`).

use chrono::{DateTime, Utc};
use serde_json::json;
use tracetrack_common::AppResult;
use tracetrack_proto::events::v1::Actor;

use crate::rules::locked;
use crate::state::Auth;
use crate::store;

impl Auth {
    /// Counts one password attempt on `account` before it is verified; a locked name is
    /// refused here (audited as `auth.login_locked`) without verifying anything.
    pub(crate) async fn admit(
        &self,
        account: &str,
        actor: &Actor,
    ) -> AppResult<(i32, Option<DateTime<Utc>>)> {
        let lockout = &self.0.settings.lockout;
        match store::reserve_attempt(
            self.pool(),
            account,
            lockout.max_failures,
            lockout.lock_secs,
        )
        .await?
        {
            store::Attempt::Admitted {
                failures,
                locked_until,
            } => Ok((failures, locked_until)),
            store::Attempt::Locked(until) => {
                let mut tx = self.pool().begin().await?;
                self.audit(
                    &mut tx,
                    actor.clone(),
                    "auth.login_locked",
                    "",
                    json!({"account": account, "locked_until": until}),
                )
                .await?;
                tx.commit().await?;
                Err(locked(until))
            }
        }
    }

    /// Takes back an admitted attempt that was never verified (overload, a database error):
    /// no password was tried. Best effort; the attempt stays counted if this fails too.
    pub(crate) async fn release(&self, account: &str) {
        let max = self.0.settings.lockout.max_failures;
        let refund = async {
            let mut conn = self.pool().acquire().await?;
            store::refund_attempt(&mut conn, account, 1, max).await
        };
        if let Err(e) = refund.await {
            tracing::warn!(error = %e, "could not take back an unverified password attempt");
        }
    }
}
