//! Password reset by e-mail (issue 17 §3). RequestPasswordReset always answers the same, after
//! the same work whether or not the account exists: one lookup, and for an active account with an
//! address a link row and a mail row written in one transaction. The mail itself goes out from
//! the table through [`send_reset_mails`] (auth's outbox), never in the request. The link's page
//! sets a new password under the policy, ends the user's sessions and clears the lockout.

use secrecy::SecretString;
use serde_json::json;
use tonic::Request;
use tracetrack_common::mail::{self, Mail, MailError};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;

use crate::convert::self_actor;
use crate::password;
use crate::rules::random_token;
use crate::state::Auth;
use crate::store;

fn off() -> AppError {
    AppError::new(
        ErrorCode::FeatureDisabled,
        "password reset by e-mail is not configured on this server",
    )
}

fn invalid_link() -> AppError {
    AppError::new(
        ErrorCode::ResetLinkInvalid,
        "this reset link is used or has expired; ask for a new one",
    )
}

impl Auth {
    fn reset_on(&self) -> AppResult<()> {
        if self.0.mailer.is_some() {
            Ok(())
        } else {
            Err(off())
        }
    }

    pub(crate) async fn request_password_reset(
        &self,
        req: Request<pb::RequestPasswordResetRequest>,
    ) -> AppResult<pb::RequestPasswordResetResponse> {
        // The gateway rate-limits per account and per address before it gets here.
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        self.reset_on()?;
        let login = req.into_inner().login.trim().to_lowercase();
        if login.is_empty() {
            // No account: how the gateway asks whether the feature is on.
            return Ok(pb::RequestPasswordResetResponse {});
        }
        // Every answer waits until the same moment after the request came, whether a mail
        // was queued or the account is unknown: the time says nothing either.
        let until = tokio::time::Instant::now()
            + std::time::Duration::from_millis(self.0.settings.password_reset.answer_ms);
        let ip = caller.client_ip.clone().unwrap_or_default();
        let done = self.queue_reset(&login, ip).await;
        tokio::time::sleep_until(until).await;
        done.map(|()| pb::RequestPasswordResetResponse {})
    }

    /// The work of a reset request: a link and its mail for an active account with an address,
    /// nothing otherwise.
    async fn queue_reset(&self, login: &str, ip: String) -> AppResult<()> {
        if login.is_empty() || login.len() > 254 {
            return Ok(());
        }
        let Some(user) = store::user_for_reset(self.pool(), login).await? else {
            return Ok(());
        };
        let token = format!("ttr_{}", random_token(32));
        let link = mail::link(
            &self.0.settings.public_base_url,
            &format!("/#/reset?token={token}"),
        );
        let mut tx = self.pool().begin().await?;
        store::insert_reset(
            &mut tx,
            &store::token_hash(&token),
            user.id,
            self.0.settings.password_reset.link_secs,
        )
        .await?;
        store::queue_reset_mail(&mut tx, &user, &link).await?;
        self.audit(
            &mut tx,
            self_actor(&user, ip),
            "auth.password_reset_requested",
            &user.id.to_string(),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn complete_password_reset(
        &self,
        req: Request<pb::CompletePasswordResetRequest>,
    ) -> AppResult<pb::CompletePasswordResetResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        self.reset_on()?;
        let ip = caller.client_ip.clone().unwrap_or_default();
        let req = req.into_inner();
        let hash = store::token_hash(req.token.trim());
        let user_id = store::reset_user(self.pool(), &hash)
            .await?
            .ok_or_else(invalid_link)?;
        let mut conn = self.pool().acquire().await?;
        let user = store::user_by_id(&mut conn, user_id, false)
            .await?
            .filter(|u| u.active)
            .ok_or_else(invalid_link)?;
        drop(conn);
        password::check_policy(&user.username, &req.new_password)?;
        let new_hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.new_password))
            .await?;
        let mut tx = self.pool().begin().await?;
        if !store::use_reset(&mut tx, &hash).await? {
            return Err(invalid_link());
        }
        store::set_password(&mut tx, user.id, &new_hash, false).await?;
        let ended = store::end_user_sessions(&mut tx, user.id, None, "password_reset").await?;
        store::clear_failures(&mut tx, &user.username.to_lowercase()).await?;
        self.audit(
            &mut tx,
            self_actor(&user, ip),
            "auth.password_reset_by_email",
            &user.id.to_string(),
            json!({"sessions_ended": ended}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::CompletePasswordResetResponse {})
    }
}

/// Sends the reset mails that are due (one batch); how many went out. Each row is locked while
/// it is sent, so replicas never send one twice at once.
pub async fn send_reset_mails(auth: &Auth) -> AppResult<usize> {
    let Some(mailer) = auth.0.mailer.as_ref() else {
        return Ok(0);
    };
    let max = auth.0.settings.password_reset.max_attempts;
    let mut tx = auth.pool().begin().await?;
    let due = store::due_reset_mails(&mut tx, 20).await?;
    let mut sent = 0;
    for m in due {
        let Some(link) = m.link.as_deref() else {
            store::reset_mail_failed(&mut tx, m.id, true, max).await?;
            continue;
        };
        let mins = auth.0.settings.password_reset.link_secs / 60;
        let text = format!(
            "Hello {user},\n\nSomeone (we hope you) asked to reset the TraceTrack password of {user}. \
             To choose a new one, open this link within {mins} minutes; it works once:\n\n{link}\n\n\
             If you did not ask, ignore this mail: your password stays as it is.\n",
            user = m.username
        );
        let html = format!(
            "<p>Hello {user},</p><p>Someone (we hope you) asked to reset the TraceTrack password of \
             <b>{user}</b>. To choose a new one, open this link within {mins} minutes; it works once:</p>\
             <p><a href=\"{link}\">{link}</a></p><p>If you did not ask, ignore this mail: your \
             password stays as it is.</p>",
            user = html_escape(&m.username),
            link = html_escape(link),
        );
        let mail = Mail {
            to: vec![m.mail_to.clone()],
            subject: "Reset your TraceTrack password".into(),
            text,
            html,
            attachments: Vec::new(),
            message_id: format!("reset-{}@tracetrack", m.id),
        };
        match mailer.send(&mail).await {
            Ok(()) => {
                store::reset_mail_sent(&mut tx, m.id).await?;
                sent += 1;
            }
            Err(e) => {
                let permanent = matches!(
                    e,
                    MailError::Invalid(_)
                        | MailError::Smtp {
                            permanent: true,
                            ..
                        }
                );
                tracing::warn!(error = %e, attempt = m.attempts + 1, "a password-reset mail was not sent");
                store::reset_mail_failed(&mut tx, m.id, permanent, max).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(sent)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
