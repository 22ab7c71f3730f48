//! Passwords: ChangePassword (the user's own, behind the lockout) and ResetPassword (an admin
//! sets a temporary one).

use secrecy::SecretString;
use serde_json::json;
use tonic::Request;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;

use crate::convert::to_pb;
use crate::password;
use crate::rules::{locked, parse_id};
use crate::state::{Auth, MUTATIONS};
use crate::store;

impl Auth {
    pub(crate) async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> AppResult<pb::ChangePasswordResponse> {
        let caller = self.caller(&req).await?;
        let me = caller.user_pending_password_ok()?.clone();
        let req = req.into_inner();
        let mut conn = self.pool().acquire().await?;
        let row = store::user_by_id(&mut conn, me.id, false)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        drop(conn);
        let current = SecretString::from(req.current_password);
        password::check_policy(&row.username, &req.new_password)?;
        if req.new_password == secrecy::ExposeSecret::expose_secret(&current) {
            return Err(AppError::new(
                ErrorCode::WeakPassword,
                "choose a password different from the current one",
            )
            .with_detail("reason", "unchanged"));
        }
        // A wrong current password counts toward the same lockout as a login, admitted before
        // it is verified; a locked account is refused without verifying.
        let account = row.username.to_lowercase();
        let (failures, locked_until) = self.admit(&account, &caller.actor()).await?;
        let verified = match self
            .0
            .hasher
            .verify(&current, Some(&row.password_hash))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.release(&account).await;
                return Err(e);
            }
        };
        if !verified {
            return Err(match locked_until {
                Some(until) => locked(until),
                None => AppError::new(
                    ErrorCode::InvalidCredentials,
                    "the current password is wrong",
                ),
            });
        }
        let mut conn = self.pool().acquire().await?;
        store::refund_attempt(
            &mut conn,
            &account,
            failures,
            self.0.settings.lockout.max_failures,
        )
        .await?;
        drop(conn);
        let hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.new_password))
            .await?;
        let mut tx = self.pool().begin().await?;
        store::set_password(&mut tx, me.id, &hash, false).await?;
        let keep = me.session_id.parse().ok();
        store::end_user_sessions(&mut tx, me.id, keep, "password_changed").await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.password_changed",
            &me.id.to_string(),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::ChangePasswordResponse {})
    }

    pub(crate) async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> AppResult<pb::ResetPasswordResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let id = parse_id(&req.id)?;
        let mut conn = self.pool().acquire().await?;
        let row = store::user_by_id(&mut conn, id, false)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        drop(conn);
        password::check_policy(&row.username, &req.temporary_password)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "ResetPassword", &req)
            .await?
        {
            return Ok(r);
        }
        let hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.temporary_password.clone()))
            .await?;
        store::set_password(&mut tx, id, &hash, true).await?;
        store::end_user_sessions(&mut tx, id, None, "password_reset").await?;
        store::clear_failures(&mut tx, &row.username.to_lowercase()).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.password_reset",
            &id.to_string(),
            json!({}),
        )
        .await?;
        let after = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("user vanished")))?;
        let resp = pb::ResetPasswordResponse {
            user: Some(to_pb(&after)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}
