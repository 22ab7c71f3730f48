//! API keys for integrations (issue 17 §2): CreateApiKey, ListApiKeys, RevokeApiKey (admin users
//! only: `Auth::caller` refuses a key on every auth RPC), and how a key's token resolves to a
//! principal for `Authenticate` and auth's own verifier.
//!
//! A token is `tt_key_<prefix>_<secret>`: 12 hex characters naming the key in lists, then 32
//! random bytes (base64url). Only the SHA-256 of the whole token is stored; a fast hash is right
//! for a secret of that entropy (argon2 is for passwords people choose).

use chrono::Utc;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tonic::Request;
use tracetrack_common::caller::{Caller, UserIdentity};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use uuid::Uuid;

use crate::convert::{role_from_pb, role_to_pb, ts};
use crate::rules::random_token;
use crate::state::{audit_of, Auth, MUTATIONS};
use crate::store::{self, ApiKeyRow};

/// What every API key token starts with (session tokens are `tt_` and base64url).
pub(crate) const KEY_TOKEN_PREFIX: &str = "tt_key_";

pub(crate) fn is_key_token(token: &str) -> bool {
    token.starts_with(KEY_TOKEN_PREFIX)
}

fn key_not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such API key")
}

fn key_to_pb(k: &ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        role: role_to_pb(&k.role) as i32,
        dispatch_area: k.dispatch_area.clone().unwrap_or_default(),
        created_by: k.created_by.to_string(),
        created_by_username: k.created_by_username.clone(),
        created_at: Some(ts(k.created_at)),
        expires_at: k.expires_at.map(ts),
        last_used_at: k.last_used_at.map(ts),
        revoked_at: k.revoked_at.map(ts),
    }
}

fn audit_view(k: &ApiKeyRow) -> serde_json::Value {
    json!({
        "name": k.name, "prefix": k.prefix, "role": k.role,
        "dispatch_area": k.dispatch_area, "expires_at": k.expires_at,
    })
}

/// The principal a live key's token names, or `None` (unknown, revoked or expired).
pub(crate) async fn key_principal(pool: &PgPool, token: &str) -> AppResult<Option<pb::Principal>> {
    let Some(k) = store::api_key_principal(pool, &store::token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(Some(pb::Principal {
        kind: pb::PrincipalKind::ApiKey as i32,
        id: k.id.to_string(),
        name: k.name,
        role: role_to_pb(&k.role) as i32,
        dispatch_area: k.dispatch_area.unwrap_or_default(),
    }))
}

/// A key's identity for auth's own caller resolution.
pub(crate) async fn key_identity(pool: &PgPool, token: &str) -> AppResult<Option<UserIdentity>> {
    key_principal(pool, token)
        .await?
        .map(|p| UserIdentity::from_api_key(&p))
        .transpose()
}

impl Auth {
    async fn audit_key(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        event_type: &str,
        key: &ApiKeyRow,
    ) -> AppResult<()> {
        let id = key.id.to_string();
        let payload = json!({"key": audit_view(key)});
        audit_of(tx, ("api_key", &id), caller.actor(), event_type, payload).await
    }

    pub(crate) async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> AppResult<pb::CreateApiKeyResponse> {
        let caller = self.admin(&req).await?;
        let me = caller.user()?.id;
        let req = req.into_inner();
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "a key's name is 1 to 100 characters, without control characters",
            ));
        }
        let role = role_from_pb(req.role)?;
        let area = self.area_for(role, Some(&req.dispatch_area))?;
        let expires_at = match &req.expires_at {
            None => None,
            Some(t) => {
                let at = chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    .ok_or_else(|| AppError::invalid("expires_at is not a time"))?;
                if at <= Utc::now() {
                    return Err(AppError::invalid("expires_at must be in the future"));
                }
                Some(at)
            }
        };

        let mut tx = self.pool().begin().await?;
        // A retried request answers the key it created, without the token (shown once: it is
        // not kept anywhere, the stored answer included).
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "CreateApiKey", &req)
            .await?
        {
            return Ok(r);
        }
        let mut prefix_bytes = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix_bytes);
        let prefix: String = prefix_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("{KEY_TOKEN_PREFIX}{prefix}_{}", random_token(32));
        let id = Uuid::now_v7();
        store::insert_api_key(
            &mut tx,
            &store::NewApiKey {
                id,
                name: &name,
                prefix: &prefix,
                token_hash: &store::token_hash(&token),
                role: role.as_str(),
                dispatch_area: area.as_deref(),
                created_by: me,
                expires_at,
            },
        )
        .await?;
        let row = store::api_key_by_id(&mut tx, id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("inserted key vanished")))?;
        self.audit_key(&mut tx, &caller, "auth.api_key_created", &row)
            .await?;
        let stored = pb::CreateApiKeyResponse {
            key: Some(key_to_pb(&row)),
            token: String::new(),
        };
        MUTATIONS.remember(&mut tx, &caller, &stored).await?;
        tx.commit().await?;
        Ok(pb::CreateApiKeyResponse { token, ..stored })
    }

    pub(crate) async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> AppResult<pb::ListApiKeysResponse> {
        self.admin(&req).await?;
        let rows = store::list_api_keys(self.pool(), req.get_ref().include_revoked).await?;
        Ok(pb::ListApiKeysResponse {
            keys: rows.iter().map(key_to_pb).collect(),
        })
    }

    pub(crate) async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> AppResult<pb::RevokeApiKeyResponse> {
        let caller = self.admin(&req).await?;
        let me = caller.user()?.id;
        let req = req.into_inner();
        let id: Uuid = req.id.trim().parse().map_err(|_| key_not_found())?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "RevokeApiKey", &req)
            .await?
        {
            return Ok(r);
        }
        let revoked = store::revoke_api_key(&mut tx, id, me).await?;
        let row = store::api_key_by_id(&mut tx, id)
            .await?
            .ok_or_else(key_not_found)?;
        // Revoking a revoked key changes nothing and writes no event.
        if revoked {
            self.audit_key(&mut tx, &caller, "auth.api_key_revoked", &row)
                .await?;
        }
        let resp = pb::RevokeApiKeyResponse {
            key: Some(key_to_pb(&row)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}
