//! auth's gRPC handlers: `AuthService` (login, sessions, `Authenticate` for services) and
//! `UserAdminService` (admin only).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tonic::{Request, Response, Status};
use tracetrack_common::caller::{Caller, CallerResolver, TokenVerifier, UserIdentity};
use tracetrack_common::idempotency::{self, Begin};
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{metadata, AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::events::v1::Actor;
use uuid::Uuid;

use crate::config::Settings;
use crate::password::{self, Hasher};
use crate::store::{self, UserRow};

pub const SCHEMA: &str = "auth";
pub const SERVICE: &str = "auth";

pub struct Inner {
    pub pool: PgPool,
    pub hasher: Hasher,
    pub settings: Settings,
    pub callers: CallerResolver,
}

/// Both gRPC services share this state.
#[derive(Clone)]
pub struct Auth(pub Arc<Inner>);

/// auth verifies tokens on its own database.
pub struct LocalVerifier {
    pub pool: PgPool,
    pub idle_secs: u64,
}

#[async_trait]
impl TokenVerifier for LocalVerifier {
    async fn verify_user(&self, token: &str) -> AppResult<Option<UserIdentity>> {
        let found =
            store::session_user(&self.pool, &store::token_hash(token), self.idle_secs).await?;
        found
            .map(|s| {
                UserIdentity::from_proto(&to_pb(&s.user), &s.session_id.to_string()).map(|u| {
                    UserIdentity {
                        csrf_token: s.csrf_token.clone(),
                        ..u
                    }
                })
            })
            .transpose()
    }

    async fn verify_service(&self, token: &str) -> AppResult<Option<String>> {
        store::service_by_token(&self.pool, &store::token_hash(token)).await
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn role_to_pb(role: &str) -> pb::Role {
    match role {
        "admin" => pb::Role::Admin,
        "biller" => pb::Role::Biller,
        "dispatcher" => pb::Role::Dispatcher,
        _ => pb::Role::Unspecified,
    }
}

fn role_from_pb(role: i32) -> AppResult<Role> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Biller) => Ok(Role::Biller),
        Ok(pb::Role::Dispatcher) => Ok(Role::Dispatcher),
        _ => Err(AppError::invalid(
            "role must be admin, biller or dispatcher",
        )),
    }
}

pub fn to_pb(u: &UserRow) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        username: u.username.clone(),
        email: u.email.clone(),
        role: role_to_pb(&u.role) as i32,
        dispatch_area: u.dispatch_area.clone().unwrap_or_default(),
        active: u.active,
        locked_until: u.locked_until.map(ts),
        must_change_password: u.must_change_password,
        created_at: Some(ts(u.created_at)),
        last_login_at: u.last_login_at.map(ts),
    }
}

fn audit_view(u: &UserRow) -> serde_json::Value {
    json!({
        "username": u.username, "email": u.email, "role": u.role,
        "dispatch_area": u.dispatch_area, "active": u.active,
        "must_change_password": u.must_change_password,
    })
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn parse_id(id: &str) -> AppResult<Uuid> {
    id.trim()
        .parse()
        .map_err(|_| AppError::new(ErrorCode::UserNotFound, "no such user"))
}

fn locked(until: DateTime<Utc>) -> AppError {
    let secs = (until - Utc::now()).num_seconds().max(1);
    AppError::new(
        ErrorCode::AccountLocked,
        format!(
            "too many failed logins; try again in {} minutes",
            (secs + 59) / 60
        ),
    )
    .with_detail("seconds_left", secs)
}

fn invalid_credentials() -> AppError {
    AppError::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

/// Usernames: 3–50 of letters, digits, `.`, `_`, `-`.
fn validate_username(username: &str) -> AppResult<()> {
    let ok = (3..=50).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "username must be 3-50 letters, digits, '.', '_' or '-'",
        ))
    }
}

fn validate_email(email: &str) -> AppResult<()> {
    if email.is_empty() {
        return Ok(());
    }
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid("email is not a valid address"))
    }
}

const USER_UNIQUES: &[(&str, ErrorCode, &str)] = &[
    (
        "users_username_key",
        ErrorCode::UsernameTaken,
        "that username is taken",
    ),
    (
        "users_email_key",
        ErrorCode::EmailTaken,
        "that email is already used",
    ),
];

impl Auth {
    fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    fn area_for(&self, role: Role, area: Option<&str>) -> AppResult<Option<String>> {
        if role != Role::Dispatcher {
            return Ok(None);
        }
        let area = area
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::AreaRequired,
                    "a dispatcher needs a dispatch area",
                )
            })?;
        if !self.0.settings.areas.contains(&area) {
            return Err(AppError::invalid(format!("unknown dispatch area {area}")));
        }
        Ok(Some(area))
    }

    /// Replays a stored answer for the caller's idempotency key, if any.
    async fn replay<M: prost::Message + Default>(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        match idempotency::begin::<M>(tx, SCHEMA, &caller.scope(), key, rpc, req).await? {
            Begin::New => Ok(None),
            Begin::Replay(m) => Ok(Some(m)),
        }
    }

    async fn remember(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        resp: &impl prost::Message,
    ) -> AppResult<()> {
        if let Some(key) = caller.idempotency_key.as_deref() {
            idempotency::finish(tx, SCHEMA, &caller.scope(), key, resp).await?;
        }
        Ok(())
    }

    async fn audit(
        &self,
        tx: &mut PgConnection,
        actor: Actor,
        event_type: &str,
        user_id: &str,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        outbox::enqueue(
            tx,
            SCHEMA,
            SERVICE,
            NewEvent {
                event_type,
                aggregate_type: "user",
                aggregate_id: user_id,
                aggregate_version: 0,
                actor,
                payload,
            },
        )
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- AuthService

    /// Counts one password attempt on `account` before it is verified; a locked name is
    /// refused here (audited as `auth.login_locked`) without verifying anything.
    async fn admit(&self, account: &str, actor: &Actor) -> AppResult<(i32, Option<DateTime<Utc>>)> {
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
    async fn release(&self, account: &str) {
        let max = self.0.settings.lockout.max_failures;
        let refund = async {
            let mut conn = self.pool().acquire().await?;
            store::refund_attempt(&mut conn, account, 1, max).await
        };
        if let Err(e) = refund.await {
            tracing::warn!(error = %e, "could not take back an unverified password attempt");
        }
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> AppResult<pb::LoginResponse> {
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
            Some(user) => {
                // The success breaks the run: this attempt and those admitted before it are
                // taken back; failures admitted after it (concurrent attempts) stay counted.
                store::refund_attempt(
                    &mut tx,
                    &account,
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
                sqlx::query("UPDATE auth.users SET last_login_at = now() WHERE id = $1")
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?;
                let actor = Actor {
                    user_id: user.id.to_string(),
                    ..actor
                };
                self.audit(
                    &mut tx,
                    actor,
                    "auth.login_succeeded",
                    &user.id.to_string(),
                    json!({"session_id": session_id}),
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
                    user: Some(to_pb(&user)),
                })
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

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> AppResult<pb::LogoutResponse> {
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

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> AppResult<pb::WhoAmIResponse> {
        let token = metadata::bearer(req.metadata()).ok_or_else(AppError::unauthenticated)?;
        let s = store::session_user(
            self.pool(),
            &store::token_hash(token),
            self.0.settings.session.idle_timeout_secs,
        )
        .await?
        .ok_or_else(AppError::unauthenticated)?;
        Ok(pb::WhoAmIResponse {
            user: Some(to_pb(&s.user)),
            csrf_token: s.csrf_token,
            expires_at: Some(ts(s.expires_at)),
            session_id: s.session_id.to_string(),
        })
    }

    async fn authenticate(
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
        if !req.user_token.is_empty() {
            let idle = self.0.settings.session.idle_timeout_secs;
            if let Some(s) =
                store::session_user(self.pool(), &store::token_hash(&req.user_token), idle).await?
            {
                resp.user = Some(to_pb(&s.user));
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

    async fn change_password(
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
        sqlx::query("UPDATE auth.users SET password_hash = $2, must_change_password = false, updated_at = now() WHERE id = $1")
            .bind(me.id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
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

    // ---------------------------------------------------------------- UserAdminService

    async fn admin<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        let caller = self.caller(req).await?;
        caller.require_role(&[Role::Admin])?;
        Ok(caller)
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> AppResult<pb::CreateUserResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let username = req.username.trim().to_owned();
        validate_username(&username)?;
        let email = req.email.trim().to_lowercase();
        validate_email(&email)?;
        let role = role_from_pb(req.role)?;
        let area = self.area_for(role, Some(&req.dispatch_area))?;
        password::check_policy(&username, &req.password)?;

        let mut tx = self.pool().begin().await?;
        if let Some(r) = self.replay(&mut tx, &caller, "CreateUser", &req).await? {
            return Ok(r);
        }
        let hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.password.clone()))
            .await?;
        let id = Uuid::now_v7();
        sqlx::query(
            r#"INSERT INTO auth.users (id, username, email, password_hash, role, dispatch_area)
               VALUES ($1, $2, $3, $4, $5, $6)"#,
        )
        .bind(id)
        .bind(&username)
        .bind(&email)
        .bind(&hash)
        .bind(role.as_str())
        .bind(&area)
        .execute(&mut *tx)
        .await
        .map_err(|e| AppError::from_unique(e, USER_UNIQUES))?;
        let row = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("inserted user vanished")))?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.user_created",
            &id.to_string(),
            json!({"after": audit_view(&row)}),
        )
        .await?;
        let resp = pb::CreateUserResponse {
            user: Some(to_pb(&row)),
        };
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> AppResult<pb::GetUserResponse> {
        self.admin(&req).await?;
        let id = parse_id(&req.get_ref().id)?;
        let mut conn = self.pool().acquire().await?;
        let row = store::user_by_id(&mut conn, id, false)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        Ok(pb::GetUserResponse {
            user: Some(to_pb(&row)),
        })
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> AppResult<pb::ListUsersResponse> {
        self.admin(&req).await?;
        let req = req.into_inner();
        let size = match req.page_size {
            0 => 50,
            n => n.min(200),
        } as i64;
        let after = if req.page_token.is_empty() {
            None
        } else {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&req.page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AppError::invalid("bad page_token"))?;
            Some(raw)
        };
        let prefix = req.query.trim().to_lowercase();
        let prefix = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let role = match req.role {
            0 => None,
            r => Some(role_from_pb(r)?.as_str()),
        };
        let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT {} FROM auth.users u
               WHERE ($1::text IS NULL OR lower(u.username) > $1)
                 AND lower(u.username) LIKE $2 || '%'
                 AND ($3::text IS NULL OR u.role = $3)
                 AND ($4 OR u.active)
               ORDER BY lower(u.username) LIMIT $5"#,
            store::USER_COLUMNS
        )))
        .bind(after)
        .bind(prefix)
        .bind(role)
        .bind(req.include_inactive)
        .bind(size + 1)
        .fetch_all(self.pool())
        .await?;
        let more = rows.len() as i64 > size;
        let users: Vec<pb::User> = rows.iter().take(size as usize).map(to_pb).collect();
        let next_page_token = match (more, users.last()) {
            (true, Some(last)) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(last.username.to_lowercase()),
            _ => String::new(),
        };
        Ok(pb::ListUsersResponse {
            users,
            next_page_token,
        })
    }

    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> AppResult<pb::UpdateUserResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let user = self.change_user(&caller, "UpdateUser", &req).await?;
        Ok(pb::UpdateUserResponse { user: Some(user) })
    }

    /// Every change to a user's email, role, area or active flag, with the self and last-admin
    /// rules, under the admin lock.
    async fn change_user(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &pb::UpdateUserRequest,
    ) -> AppResult<pb::User> {
        let me = caller.user()?.id;
        let id = parse_id(&req.id)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = self.replay::<pb::User>(&mut tx, caller, rpc, req).await? {
            return Ok(r);
        }
        store::lock_admins(&mut tx).await?;
        let before = store::user_by_id(&mut tx, id, true)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        let old_role = Role::parse(&before.role)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("bad role")))?;
        let role = match req.role {
            Some(r) => role_from_pb(r)?,
            None => old_role,
        };
        let active = req.active.unwrap_or(before.active);
        if id == me && (role != old_role || !active) {
            return Err(AppError::new(
                ErrorCode::SelfChangeForbidden,
                "you cannot change your own role or deactivate yourself",
            ));
        }
        let area = self.area_for(
            role,
            req.dispatch_area
                .as_deref()
                .or(before.dispatch_area.as_deref()),
        )?;
        let email = match &req.email {
            Some(e) => {
                let e = e.trim().to_lowercase();
                validate_email(&e)?;
                e
            }
            None => before.email.clone(),
        };
        let was_admin = old_role == Role::Admin && before.active;
        let stays_admin = role == Role::Admin && active;
        if was_admin && !stays_admin && store::other_active_admins(&mut tx, id).await? == 0 {
            return Err(AppError::new(
                ErrorCode::LastAdmin,
                "this is the last active admin",
            ));
        }
        sqlx::query(
            r#"UPDATE auth.users SET email = $2, role = $3, dispatch_area = $4, active = $5, updated_at = now()
               WHERE id = $1"#,
        )
        .bind(id)
        .bind(&email)
        .bind(role.as_str())
        .bind(&area)
        .bind(active)
        .execute(&mut *tx)
        .await
        .map_err(|e| AppError::from_unique(e, USER_UNIQUES))?;
        if !active && before.active {
            store::end_user_sessions(&mut tx, id, None, "deactivated").await?;
        }
        let after = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("updated user vanished")))?;
        let event = if !active && before.active {
            "auth.user_deactivated"
        } else {
            "auth.user_changed"
        };
        self.audit(
            &mut tx,
            caller.actor(),
            event,
            &id.to_string(),
            json!({"before": audit_view(&before), "after": audit_view(&after)}),
        )
        .await?;
        let user = to_pb(&after);
        self.remember(&mut tx, caller, &user).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn deactivate_user(
        &self,
        req: Request<pb::DeactivateUserRequest>,
    ) -> AppResult<pb::DeactivateUserResponse> {
        let caller = self.admin(&req).await?;
        let update = pb::UpdateUserRequest {
            id: req.into_inner().id,
            active: Some(false),
            ..Default::default()
        };
        let user = self.change_user(&caller, "DeactivateUser", &update).await?;
        Ok(pb::DeactivateUserResponse { user: Some(user) })
    }

    async fn unlock_user(
        &self,
        req: Request<pb::UnlockUserRequest>,
    ) -> AppResult<pb::UnlockUserResponse> {
        let caller = self.admin(&req).await?;
        let id = parse_id(&req.get_ref().id)?;
        let mut tx = self.pool().begin().await?;
        let row = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        let was_locked = row.locked_until.is_some();
        store::clear_failures(&mut tx, &row.username.to_lowercase()).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.user_unlocked",
            &id.to_string(),
            json!({"was_locked": was_locked}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::UnlockUserResponse {
            user: Some(to_pb(&UserRow {
                locked_until: None,
                ..row
            })),
        })
    }

    async fn unlock_all(
        &self,
        req: Request<pb::UnlockAllUsersRequest>,
    ) -> AppResult<pb::UnlockAllUsersResponse> {
        let caller = self.admin(&req).await?;
        let mut tx = self.pool().begin().await?;
        let locked: i64 = sqlx::query_scalar(
            "WITH d AS (DELETE FROM auth.login_failures RETURNING locked_until) SELECT count(*) FROM d WHERE locked_until > now()",
        )
        .fetch_one(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.users_unlocked_all",
            "",
            json!({"unlocked": locked}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::UnlockAllUsersResponse {
            unlocked: locked as u32,
        })
    }

    async fn reset_password(
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
        if let Some(r) = self.replay(&mut tx, &caller, "ResetPassword", &req).await? {
            return Ok(r);
        }
        let hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.temporary_password.clone()))
            .await?;
        sqlx::query("UPDATE auth.users SET password_hash = $2, must_change_password = true, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
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
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}

fn reply<T>(r: AppResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for Auth {
    async fn login(
        &self,
        r: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        reply(Auth::login(self, r).await)
    }
    async fn logout(
        &self,
        r: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        reply(Auth::logout(self, r).await)
    }
    async fn who_am_i(
        &self,
        r: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        reply(Auth::who_am_i(self, r).await)
    }
    async fn authenticate(
        &self,
        r: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        reply(Auth::authenticate(self, r).await)
    }
    async fn change_password(
        &self,
        r: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        reply(Auth::change_password(self, r).await)
    }
}

#[tonic::async_trait]
impl pb::user_admin_service_server::UserAdminService for Auth {
    async fn create_user(
        &self,
        r: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        reply(Auth::create_user(self, r).await)
    }
    async fn get_user(
        &self,
        r: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        reply(Auth::get_user(self, r).await)
    }
    async fn list_users(
        &self,
        r: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        reply(Auth::list_users(self, r).await)
    }
    async fn update_user(
        &self,
        r: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        reply(Auth::update_user(self, r).await)
    }
    async fn deactivate_user(
        &self,
        r: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<pb::DeactivateUserResponse>, Status> {
        reply(Auth::deactivate_user(self, r).await)
    }
    async fn unlock_user(
        &self,
        r: Request<pb::UnlockUserRequest>,
    ) -> Result<Response<pb::UnlockUserResponse>, Status> {
        reply(Auth::unlock_user(self, r).await)
    }
    async fn unlock_all_users(
        &self,
        r: Request<pb::UnlockAllUsersRequest>,
    ) -> Result<Response<pb::UnlockAllUsersResponse>, Status> {
        reply(Auth::unlock_all(self, r).await)
    }
    async fn reset_password(
        &self,
        r: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        reply(Auth::reset_password(self, r).await)
    }
}
