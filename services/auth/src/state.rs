//! auth's state (pool, password hasher, settings, caller resolver), the verifier that checks
//! tokens on auth's own database, and the plumbing every mutation shares: replay a stored
//! answer, remember the answer, write an audit event, all in the mutation's transaction.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver, TokenVerifier, UserIdentity};
use tracetrack_common::mutation::Mutations;
use tracetrack_common::outbox::NewEvent;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::events::v1::Actor;

use crate::config::Settings;
use crate::convert::user_to_pb;
use crate::password::Hasher;
use crate::second_factor::SecretBox;
use crate::store;

pub const SCHEMA: &str = "auth";
pub const SERVICE: &str = "auth";
/// What every mutation writes besides its own rows: idempotency answers and events.
pub(crate) const MUTATIONS: Mutations = Mutations {
    schema: SCHEMA,
    service: SERVICE,
};

pub struct Inner {
    pub pool: PgPool,
    pub hasher: Hasher,
    pub settings: Settings,
    pub callers: CallerResolver,
    /// Seals TOTP secrets; `None` without a configured key (nobody can enrol).
    pub secret_box: Option<SecretBox>,
    /// Sends password-reset mail; `None` without SMTP (the feature is off).
    pub mailer: Option<tracetrack_common::mail::Mailer>,
}

/// Both gRPC services share this state.
#[derive(Clone)]
pub struct Auth(pub Arc<Inner>);

/// auth verifies tokens on its own database.
pub struct LocalVerifier {
    pub pool: PgPool,
    pub idle_secs: u64,
    pub require_2fa_for_admins: bool,
}

#[async_trait]
impl TokenVerifier for LocalVerifier {
    async fn verify_user(&self, token: &str) -> AppResult<Option<UserIdentity>> {
        if crate::rpc::api_keys::is_key_token(token) {
            return crate::rpc::api_keys::key_identity(&self.pool, token).await;
        }
        let found =
            store::session_user(&self.pool, &store::token_hash(token), self.idle_secs).await?;
        found
            .map(|s| {
                UserIdentity::from_proto(
                    &user_to_pb(&s.user, self.require_2fa_for_admins),
                    &s.session_id.to_string(),
                )
                .map(|u| UserIdentity {
                    csrf_token: s.csrf_token.clone(),
                    ..u
                })
            })
            .transpose()
    }

    async fn verify_service(&self, token: &str) -> AppResult<Option<String>> {
        store::service_by_token(&self.pool, &store::token_hash(token)).await
    }
}

impl Auth {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    /// A user as they see themselves: with the restrictions in force for them.
    pub(crate) fn user_pb(&self, u: &store::UserRow) -> tracetrack_proto::auth::v1::User {
        user_to_pb(u, self.0.settings.require_2fa_for_admins)
    }

    pub(crate) async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        let caller = self.0.callers.resolve(req.metadata()).await?;
        // No auth RPC is for an API key: keys never manage users, keys or second factors.
        caller.refuse_api_key()?;
        Ok(caller)
    }

    /// The caller, who must be an admin (every UserAdminService RPC).
    pub(crate) async fn admin<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        let caller = self.caller(req).await?;
        caller.require_role(&[Role::Admin])?;
        Ok(caller)
    }

    pub(crate) fn area_for(&self, role: Role, area: Option<&str>) -> AppResult<Option<String>> {
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

    /// Writes an `auth.*` event about the user `user_id` in `tx`.
    pub(crate) async fn audit(
        &self,
        tx: &mut PgConnection,
        actor: Actor,
        event_type: &str,
        user_id: &str,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        audit_of(tx, ("user", user_id), actor, event_type, payload).await
    }
}

/// Writes an `auth.*` event about `aggregate` (its type and id: a user, an API key) in `tx`.
pub(crate) async fn audit_of(
    tx: &mut PgConnection,
    (aggregate_type, aggregate_id): (&str, &str),
    actor: Actor,
    event_type: &str,
    payload: serde_json::Value,
) -> AppResult<()> {
    MUTATIONS
        .event(
            tx,
            NewEvent {
                event_type,
                aggregate_type,
                aggregate_id,
                aggregate_version: 0,
                actor,
                payload,
            },
        )
        .await
}
