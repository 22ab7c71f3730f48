//! Sessions: Login, Logout, WhoAmI, and Authenticate (how the other services and the gateway
//! resolve a token).

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use tonic::Request;
use tracetrack_common::{metadata, AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::events::v1::Actor;
use uuid::Uuid;

use crate::convert::ts;
use crate::rules::{invalid_credentials, locked, random_token};
use crate::state::Auth;
use crate::store::{self, UserRow};

impl Auth {
    pub(crate) async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> AppResult<pb::LoginResponse> {
        // Only the gateway logs users in: it rate-limits logins per account and per address
        // before they get here.
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        let ip = caller.client_ip.clone();
        let req = req.into_inner();
        let username = req.username.trim();
        if username.is_empty() || username.len() > 100 || req.password.len() > 1024 {
            return Err(invalid_credentials());
        }
        let account = username.to_lowercase();
        let actor = Actor {
            username: username.to_owned(),
            ip: ip.clone().unwrap_or_default(),
            ..Actor::default()
        };
        let (failures, locked_until) = self.admit(&account, &actor).await?;
        let password = SecretString::from(req.password);
        let checked = async {
            let user = store::user_by_username(self.pool(), &account).await?;
            let stored = user.as_ref().map(|u| u.password_hash.as_str());
            let verified = self.0.hasher.verify(&password, stored).await?;
            Ok::<_, AppError>((user, verified))
        };
        let (user, verified) = match checked.await {
            Ok(v) => v,
            Err(e) => {
                self.release(&account).await;
                return Err(e);
            }
        };
        let mut tx = self.pool().begin().await?;
        match user.filter(|u| verified && u.active) {
            // A second factor: the attempt stays counted until the code completes the login.
            Some(user) if user.two_factor_enabled => {
                self.challenge(tx, &user, locked_until, actor, ip).await
            }
            Some(user) => {
                self.issue_session(tx, user, &account, failures, actor, ip)
                    .await
            }
            None => {
                // Already counted when admitted.
                let (event, err) = match locked_until {
                    Some(until) => ("auth.login_locked", locked(until)),
                    None => ("auth.login_failed", invalid_credentials()),
                };
                self.audit(
                    &mut tx,
                    actor,
                    event,
                    "",
                    json!({"account": account, "failures": failures}),
                )
                .await?;
                tx.commit().await?;
                Err(err)
            }
        }
    }

    /// Ends a successful login: refunds the attempts counted for it (this one and those admitted
    /// before it, whose run the success broke; failures admitted after it by concurrent attempts
    /// stay counted), opens the session and audits it. The password step of a user without a
    /// second factor, or CompleteLogin's code.
    pub(crate) async fn issue_session(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        user: UserRow,
        account: &str,
        failures: i32,
        actor: Actor,
        ip: Option<String>,
    ) -> AppResult<pb::LoginResponse> {
        store::refund_attempt(
            &mut tx,
            account,
            failures,
            self.0.settings.lockout.max_failures,
        )
        .await?;
        let token = format!("tt_{}", random_token(32));
        let csrf = random_token(24);
        let session_id = Uuid::now_v7();
        let expires_at = store::insert_session(
            &mut tx,
            store::NewSession {
                id: session_id,
                user_id: user.id,
                token_hash: &store::token_hash(&token),
                csrf_token: &csrf,
                absolute_secs: self.0.settings.session.absolute_timeout_secs,
                client_ip: ip.as_deref(),
            },
        )
        .await?;
        store::touch_last_login(&mut tx, user.id).await?;
        let actor = Actor {
            user_id: user.id.to_string(),
            ..actor
        };
        self.audit(
            &mut tx,
            actor,
            "auth.login_succeeded",
            &user.id.to_string(),
            json!({"session_id": session_id, "second_factor": user.two_factor_enabled}),
        )
        .await?;
        tx.commit().await?;
        let user = UserRow {
            last_login_at: Some(Utc::now()),
            locked_until: None,
            ..user
        };
        Ok(pb::LoginResponse {
            token,
            csrf_token: csrf,
            expires_at: Some(ts(expires_at)),
            must_change_password: user.must_change_password,
            user: Some(self.user_pb(&user)),
            ..pb::LoginResponse::default()
        })
    }

    pub(crate) async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> AppResult<pb::LogoutResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.user_pending_password_ok()?;
        let token = caller.user_token.as_deref().unwrap_or_default();
        let mut tx = self.pool().begin().await?;
        store::end_session(&mut tx, &store::token_hash(token), "logout").await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.logout",
            &user.id.to_string(),
            json!({"session_id": user.session_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::LogoutResponse {})
    }

    pub(crate) async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> AppResult<pb::WhoAmIResponse> {
        let token = metadata::bearer(req.metadata()).ok_or_else(AppError::unauthenticated)?;
        let s = store::session_user(
            self.pool(),
            &store::token_hash(token),
            self.0.settings.session.idle_timeout_secs,
        )
        .await?
        .ok_or_else(AppError::unauthenticated)?;
        Ok(pb::WhoAmIResponse {
            user: Some(self.user_pb(&s.user)),
            csrf_token: s.csrf_token,
            expires_at: Some(ts(s.expires_at)),
            session_id: s.session_id.to_string(),
        })
    }

    pub(crate) async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> AppResult<pb::AuthenticateResponse> {
        let service_token =
            metadata::get_str(req.metadata(), metadata::SERVICE_TOKEN).ok_or_else(|| {
                AppError::new(ErrorCode::CallerNotAllowed, "Authenticate is for services")
            })?;
        store::service_by_token(self.pool(), &store::token_hash(service_token))
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::Unauthenticated, "unknown service token"))?;
        let req = req.into_inner();
        let mut resp = pb::AuthenticateResponse::default();
        if crate::rpc::api_keys::is_key_token(&req.user_token) {
            resp.principal =
                crate::rpc::api_keys::key_principal(self.pool(), &req.user_token).await?;
        } else if !req.user_token.is_empty() {
            let idle = self.0.settings.session.idle_timeout_secs;
            if let Some(s) =
                store::session_user(self.pool(), &store::token_hash(&req.user_token), idle).await?
            {
                resp.principal = Some(pb::Principal {
                    kind: pb::PrincipalKind::User as i32,
                    id: s.user.id.to_string(),
                    name: s.user.username.clone(),
                    role: crate::convert::role_to_pb(&s.user.role) as i32,
                    dispatch_area: s.user.dispatch_area.clone().unwrap_or_default(),
                });
                resp.user = Some(self.user_pb(&s.user));
                resp.session_id = s.session_id.to_string();
                resp.csrf_token = s.csrf_token;
                resp.session_expires_at = Some(ts(s.expires_at));
            }
        }
        if !req.service_token.is_empty() {
            if let Some(name) =
                store::service_by_token(self.pool(), &store::token_hash(&req.service_token)).await?
            {
                resp.service = name;
            }
        }
        Ok(resp)
    }
}
