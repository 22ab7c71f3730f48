//! Who is calling: the end user (session token, verified through auth and cached locally for at
//! most 30 s) and the calling service (its service-account token), both available to handlers,
//! with the role, area and caller-service checks every RPC needs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::events::v1::Actor;
use uuid::Uuid;

use crate::client::{self, Intercepted, Outgoing};
use crate::config::AuthClientSettings;
use crate::error::{AppError, AppResult};
use crate::metadata::{self, CLIENT_IP, SERVICE_TOKEN};

/// The service account of the HTTP gateway, the only caller whose `x-client-ip` is believed.
pub const GATEWAY: &str = "gateway";

/// Longest a verified token is trusted without asking auth again.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(30);

/// What a user credential names (issue 17 §2): a person's session or an integration's API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrincipalKind {
    #[default]
    User,
    ApiKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The user's id, or the API key's.
    pub id: Uuid,
    /// The username; for an API key `key:<name>` (usernames have no `:`), so scans, bills and
    /// audit rows name the key and never pass for a person.
    pub username: String,
    pub kind: PrincipalKind,
    pub role: Role,
    /// A dispatcher's area.
    pub area: Option<String>,
    pub must_change_password: bool,
    /// An admin without a second factor while `require_2fa_for_admins` is on: may only enrol
    /// (the restriction after `must_change_password`).
    pub must_enrol_2fa: bool,
    pub session_id: String,
    /// The session's CSRF token (the gateway checks it on cookie-authenticated unsafe requests).
    pub csrf_token: String,
}

impl UserIdentity {
    pub fn from_proto(user: &pb::User, session_id: &str) -> AppResult<Self> {
        let role = match pb::Role::try_from(user.role) {
            Ok(pb::Role::Admin) => Role::Admin,
            Ok(pb::Role::Biller) => Role::Biller,
            Ok(pb::Role::Dispatcher) => Role::Dispatcher,
            _ => return Err(AppError::internal(anyhow::anyhow!("user without a role"))),
        };
        Ok(Self {
            id: user.id.parse().map_err(AppError::internal)?,
            username: user.username.clone(),
            kind: PrincipalKind::User,
            role,
            area: Some(user.dispatch_area.clone()).filter(|a| !a.is_empty()),
            must_change_password: user.must_change_password,
            must_enrol_2fa: user.restrictions.iter().any(|r| r == "enrol_2fa"),
            session_id: session_id.to_owned(),
            csrf_token: String::new(),
        })
    }

    /// An API key's identity from the principal `Authenticate` answers for it: its own role and
    /// area, no session, no restrictions, no CSRF token (keys never travel in cookies).
    pub fn from_api_key(p: &pb::Principal) -> AppResult<Self> {
        let role = match pb::Role::try_from(p.role) {
            Ok(pb::Role::Admin) => Role::Admin,
            Ok(pb::Role::Biller) => Role::Biller,
            Ok(pb::Role::Dispatcher) => Role::Dispatcher,
            _ => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "API key without a role"
                )))
            }
        };
        Ok(Self {
            id: p.id.parse().map_err(AppError::internal)?,
            username: format!("key:{}", p.name),
            kind: PrincipalKind::ApiKey,
            role,
            area: Some(p.dispatch_area.clone()).filter(|a| !a.is_empty()),
            must_change_password: false,
            must_enrol_2fa: false,
            session_id: String::new(),
            csrf_token: String::new(),
        })
    }

    pub fn is_api_key(&self) -> bool {
        self.kind == PrincipalKind::ApiKey
    }
}

#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user: Option<UserIdentity>,
    /// The calling service's name, when a valid service token came with the request.
    pub service: Option<String>,
    /// The end user's token, to pass on to downstream calls.
    pub user_token: Option<String>,
    pub idempotency_key: Option<String>,
    pub client_ip: Option<String>,
}

impl Caller {
    /// The logged-in user, refusing sessions with a restriction in force: the password must be
    /// changed first, then (admins, when required) a second factor enrolled.
    pub fn user(&self) -> AppResult<&UserIdentity> {
        let user = self.user_pending_enrolment_ok()?;
        if user.must_enrol_2fa {
            return Err(AppError::new(
                ErrorCode::TwoFactorRequired,
                "set up two-factor sign-in before continuing",
            ));
        }
        Ok(user)
    }

    /// The logged-in user, even one who still has to enrol a second factor (the enrolment
    /// RPCs), but not one who must change their password first.
    pub fn user_pending_enrolment_ok(&self) -> AppResult<&UserIdentity> {
        let user = self.user_pending_password_ok()?;
        if user.must_change_password {
            return Err(AppError::new(
                ErrorCode::PasswordChangeRequired,
                "change your password before continuing",
            ));
        }
        Ok(user)
    }

    /// The logged-in user, even one who still has to change their password.
    pub fn user_pending_password_ok(&self) -> AppResult<&UserIdentity> {
        self.user.as_ref().ok_or_else(AppError::unauthenticated)
    }

    /// Refuses an API key (issue 17 §2): users, keys and second factors are managed by people
    /// only. Passes a person, or no user at all (the caller's own checks follow).
    pub fn refuse_api_key(&self) -> AppResult<()> {
        match &self.user {
            Some(u) if u.is_api_key() => Err(AppError::permission_denied(
                "an API key cannot manage users, keys or second factors",
            )
            .with_detail("reason", "api_key")),
            _ => Ok(()),
        }
    }

    pub fn require_role(&self, roles: &[Role]) -> AppResult<&UserIdentity> {
        let user = self.user()?;
        if roles.contains(&user.role) {
            Ok(user)
        } else {
            Err(AppError::permission_denied(format!(
                "this needs the role {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// For RPCs that exist for another service: only those callers may use them.
    pub fn require_service(&self, allowed: &[&str]) -> AppResult<&str> {
        match self.service.as_deref() {
            Some(s) if allowed.contains(&s) => Ok(s),
            _ => Err(AppError::new(
                ErrorCode::CallerNotAllowed,
                format!("only {} may call this", allowed.join(", ")),
            )),
        }
    }

    /// Dispatchers act only on their own area.
    pub fn check_area(&self, area: &str) -> AppResult<()> {
        let user = self.user()?;
        if user.role.is_area_scoped() && user.area.as_deref() != Some(area) {
            return Err(
                AppError::new(ErrorCode::WrongArea, "that bag belongs to another area")
                    .with_detail("area", area),
            );
        }
        Ok(())
    }

    /// The scope idempotency keys are stored under: the same key from two users never collides.
    pub fn scope(&self) -> String {
        match (&self.user, &self.service) {
            (Some(u), _) if u.is_api_key() => format!("key:{}", u.id),
            (Some(u), _) => format!("user:{}", u.id),
            (None, Some(s)) => format!("svc:{s}"),
            (None, None) => "anonymous".to_owned(),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self
                .user
                .as_ref()
                .map(|u| u.id.to_string())
                .unwrap_or_default(),
            username: self
                .user
                .as_ref()
                .map(|u| u.username.clone())
                .unwrap_or_default(),
            service: self.service.clone().unwrap_or_default(),
            ip: self.client_ip.clone().unwrap_or_default(),
        }
    }
}

/// Resolves tokens to identities. Auth implements it on its own database; every other service
/// uses [`RemoteVerifier`].
#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// `Ok(None)` for a token that is not (or no longer) valid.
    async fn verify_user(&self, token: &str) -> AppResult<Option<UserIdentity>>;
    async fn verify_service(&self, token: &str) -> AppResult<Option<String>>;
}

#[derive(Clone)]
pub struct CallerResolver {
    verifier: Arc<dyn TokenVerifier>,
}

impl CallerResolver {
    pub fn new(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self { verifier }
    }

    /// Reads the caller from request metadata. A token that is present but invalid is refused
    /// (`unauthenticated`) rather than ignored.
    pub async fn resolve(&self, md: &MetadataMap) -> AppResult<Caller> {
        let mut caller = Caller {
            idempotency_key: crate::metadata::idempotency_key(md)?,
            ..Caller::default()
        };
        if let Some(token) = metadata::get_str(md, SERVICE_TOKEN) {
            caller.service = Some(self.verifier.verify_service(token).await?.ok_or_else(|| {
                AppError::new(ErrorCode::Unauthenticated, "unknown service token")
            })?);
        }
        // The end user's address is the gateway's word: from anyone else it could be made up.
        if caller.service.as_deref() == Some(GATEWAY) {
            caller.client_ip = metadata::get_str(md, CLIENT_IP).map(str::to_owned);
        }
        if let Some(token) = metadata::bearer(md) {
            caller.user = Some(
                self.verifier
                    .verify_user(token)
                    .await?
                    .ok_or_else(AppError::unauthenticated)?,
            );
            caller.user_token = Some(token.to_owned());
        }
        Ok(caller)
    }
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verifies tokens through auth's `Authenticate`, caching answers for at most 30 s so logout,
/// deactivation and role changes take effect everywhere within a minute.
pub struct RemoteVerifier {
    client: pb::auth_service_client::AuthServiceClient<Intercepted>,
    users: Cache<[u8; 32], UserIdentity>,
    services: Cache<[u8; 32], String>,
    /// Tokens auth said it does not know, remembered for a minute: a random token sent again
    /// costs no Authenticate call. (A refused token never becomes valid: tokens are random and
    /// an ended session is never revived.)
    refused: Cache<[u8; 32], ()>,
    /// Tokens seen valid in the last 12 hours (a session's longest life): a client address
    /// throttled for failed token checks still gets these checked (see the gateway's `Ctx`).
    seen: Cache<[u8; 32], ()>,
}

impl RemoteVerifier {
    pub fn new(settings: &AuthClientSettings) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let channel = client::channel(&settings.url, Duration::from_millis(settings.timeout_ms))?;
        let token = settings
            .service_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let outgoing = Outgoing::new(token.as_deref())?
            .with_deadline(Duration::from_millis(settings.timeout_ms));
        let ttl = Duration::from_secs(settings.cache_ttl_secs).min(MAX_CACHE_TTL);
        Ok(Self {
            client: pb::auth_service_client::AuthServiceClient::with_interceptor(channel, outgoing),
            users: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            services: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(ttl)
                .build(),
            refused: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            seen: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(Duration::from_secs(12 * 3600))
                .build(),
        })
    }

    /// True when this token was valid at some point in the last 12 hours (or was just issued).
    pub async fn seen_valid(&self, token: &str) -> bool {
        self.seen.contains_key(&token_key(token))
    }

    /// Remembers a token just issued (a login), so it counts as seen valid.
    pub async fn issued(&self, token: &str) {
        self.seen.insert(token_key(token), ()).await;
    }

    /// Drops a token's cached user, so the next request asks auth again (the gateway, after a
    /// change to the caller's own restrictions such as a second factor enrolled).
    pub async fn forget(&self, token: &str) {
        self.users.invalidate(&token_key(token)).await;
    }

    /// The user of a token verified in the last 30 s, without asking auth.
    pub async fn cached_user(&self, token: &str) -> Option<UserIdentity> {
        self.users.get(&token_key(token)).await
    }

    async fn authenticate(
        &self,
        req: pb::AuthenticateRequest,
    ) -> AppResult<pb::AuthenticateResponse> {
        let mut client = self.client.clone();
        match client.authenticate(req).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => {
                let err = AppError::from_status(&status);
                if err.code == ErrorCode::Unauthenticated {
                    Ok(pb::AuthenticateResponse::default())
                } else if matches!(
                    err.code,
                    ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded
                ) {
                    Err(AppError::unavailable("the auth service", status))
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[async_trait]
impl TokenVerifier for RemoteVerifier {
    async fn verify_user(&self, token: &str) -> AppResult<Option<UserIdentity>> {
        let key = token_key(token);
        if let Some(u) = self.users.get(&key).await {
            return Ok(Some(u));
        }
        if self.refused.contains_key(&key) {
            return Ok(None);
        }
        let resp = self
            .authenticate(pb::AuthenticateRequest {
                user_token: token.to_owned(),
                service_token: String::new(),
            })
            .await?;
        let identity = match (&resp.user, &resp.principal) {
            (Some(user), _) => UserIdentity {
                csrf_token: resp.csrf_token.clone(),
                ..UserIdentity::from_proto(user, &resp.session_id)?
            },
            (None, Some(p)) if p.kind == pb::PrincipalKind::ApiKey as i32 => {
                UserIdentity::from_api_key(p)?
            }
            _ => {
                self.refused.insert(key, ()).await;
                return Ok(None);
            }
        };
        self.users.insert(key, identity.clone()).await;
        self.seen.insert(key, ()).await;
        Ok(Some(identity))
    }

    async fn verify_service(&self, token: &str) -> AppResult<Option<String>> {
        let key = token_key(token);
        if let Some(s) = self.services.get(&key).await {
            return Ok(Some(s));
        }
        let resp = self
            .authenticate(pb::AuthenticateRequest {
                user_token: String::new(),
                service_token: token.to_owned(),
            })
            .await?;
        if resp.service.is_empty() {
            return Ok(None);
        }
        self.services.insert(key, resp.service.clone()).await;
        Ok(Some(resp.service))
    }
}

/// What an end user may see of area-bound data (scans, a bill's parents): dispatchers their own
/// area's, everyone else all; an area-scoped user without an area sees nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AreaView {
    All,
    Area(String),
    Nothing,
}

impl AreaView {
    pub fn of(user: &UserIdentity) -> Self {
        if !user.role.is_area_scoped() {
            return AreaView::All;
        }
        match &user.area {
            Some(a) => AreaView::Area(a.clone()),
            None => AreaView::Nothing,
        }
    }

    pub fn sees(&self, area: &str) -> bool {
        match self {
            AreaView::All => true,
            AreaView::Area(a) => a == area,
            AreaView::Nothing => false,
        }
    }
}
