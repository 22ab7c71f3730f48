//! Who is asking: the session (cookie or `Authorization: Bearer`), verified through auth with the
//! shared ≤ 30 s cache; the CSRF check for cookie-authenticated unsafe requests; the per-user rate
//! limit; the idempotency key (the client's, or one made here before any retry); the client
//! address and request id passed on to the services.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use tonic::metadata::MetadataValue;
use tracetrack_base::caller::{TokenVerifier, UserIdentity};
use tracetrack_base::metadata::{CLIENT_IP, MAX_IDEMPOTENCY_KEY_LEN, REQUEST_ID};
use tracetrack_base::AppError;
use tracetrack_domain::ErrorCode;

use crate::error::{current_request_id, ApiError};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "tt_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub struct Ctx {
    pub user: UserIdentity,
    pub token: String,
    pub idempotency_key: String,
    pub client_ip: String,
    pub request_id: String,
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Who may tell the gateway the client's address (`X-Forwarded-For`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    /// The immediate peer is always a trusted proxy.
    pub peer: bool,
    pub nets: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    pub fn parse(peer: bool, list: &str) -> anyhow::Result<Self> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("trusted_proxies: {s:?} is not an address or CIDR")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { peer, nets })
    }

    fn listed(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the socket peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` hop that is not a trusted proxy (what the last trusted proxy
    /// saw). Entries further left were written by the client and are never taken.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> String {
        let Some(peer) = peer else {
            return String::new();
        };
        if !(self.peer || self.listed(peer)) {
            return peer.to_string();
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.listed(ip) => continue,
                Ok(ip) => return ip.to_string(),
                // Not an address: nothing a trusted proxy wrote; stop at what we know.
                Err(_) => break,
            }
        }
        peer.to_string()
    }
}

pub fn client_ip(parts: &Parts, proxies: &TrustedProxies) -> String {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    proxies.client(peer, &parts.headers)
}

/// The client's address (the socket peer, or `X-Forwarded-For` behind a trusted proxy).
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.0.proxies)))
    }
}

/// A token the verifier has not seen valid lately: refused early when its client address has
/// failed too often this minute (a guessing client costs no Authenticate call then), and a
/// failure is counted against the address. Tokens seen valid (or issued by a login here) are
/// never refused this way, so many users behind one NAT are not throttled by their own tokens.
async fn verify_uncached(
    state: &AppState,
    token: &str,
    ip: &str,
) -> Result<UserIdentity, ApiError> {
    let limit = state.0.settings.rate_limits.bad_tokens_per_ip_per_minute;
    let key = format!("badtoken:{ip}");
    // A token this gateway has seen valid (or issued) is always checked: a throttled address
    // (a NAT with one misbehaving device) keeps serving its real sessions.
    if !state.0.verifier.seen_valid(token).await {
        crate::ratelimit::refuse_over(state, &key, limit, 60).await?;
    }
    match state.0.verifier.verify_user(token).await? {
        Some(user) => Ok(user),
        None => {
            metrics::counter!("gateway_bad_tokens_total").increment(1);
            crate::ratelimit::count_failure(state, &key, 60).await;
            Err(AppError::unauthenticated().into())
        }
    }
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let (token, via_cookie) = match bearer {
            Some(t) => (t, false),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                // API keys are for programs: never accepted from a cookie (issue 17 §2).
                Some(t) if t.starts_with("tt_key_") => {
                    return Err(AppError::unauthenticated().into())
                }
                Some(t) => (t, true),
                None => return Err(AppError::unauthenticated().into()),
            },
        };
        let user = match state.0.verifier.cached_user(&token).await {
            Some(user) => user,
            None => verify_uncached(state, &token, &client_ip(parts, &state.0.proxies)).await?,
        };
        if via_cookie && is_unsafe(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if sent.is_empty() || sent != user.csrf_token {
                return Err(ApiError(
                    AppError::permission_denied("missing or wrong X-CSRF-Token header")
                        .with_detail("reason", "csrf"),
                ));
            }
        }
        crate::ratelimit::check(
            state,
            // Per principal: `key:<id>` for an API key, as idempotency keys are scoped.
            &match user.kind {
                tracetrack_base::caller::PrincipalKind::ApiKey => format!("key:{}", user.id),
                tracetrack_base::caller::PrincipalKind::User => format!("user:{}", user.id),
            },
            state.0.settings.rate_limits.user_per_second,
            1,
        )
        .await?;
        let idempotency_key = match parts.headers.get("idempotency-key").map(|v| v.to_str()) {
            Some(Ok(k)) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
                k.trim().to_owned()
            }
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "Idempotency-Key must be 1-200 visible characters",
                ));
            }
            None => format!("gw-{}", uuid::Uuid::new_v4()),
        };
        Ok(Ctx {
            user,
            token,
            idempotency_key,
            client_ip: client_ip(parts, &state.0.proxies),
            request_id: current_request_id(),
        })
    }
}

impl Ctx {
    /// A request to a service on this user's behalf, for a read.
    pub fn read<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tracetrack_base::client::request(message, Some(&self.token), None);
        self.stamp(&mut r);
        r
    }

    /// A request for a mutation: carries the idempotency key.
    pub fn write<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tracetrack_base::client::request(
            message,
            Some(&self.token),
            Some(&self.idempotency_key),
        );
        self.stamp(&mut r);
        r
    }

    /// A request for one of several mutations a request makes (an import's bills): carries a
    /// key derived from the request's idempotency key and `purpose`, so the same request sent
    /// again makes the same calls (each answered as the first time).
    pub fn write_part<T>(&self, message: T, purpose: &str) -> tonic::Request<T> {
        let key = derived_key(&self.idempotency_key, purpose);
        let mut r = tracetrack_base::client::request(message, Some(&self.token), Some(&key));
        self.stamp(&mut r);
        r
    }

    fn stamp<T>(&self, r: &mut tonic::Request<T>) {
        if let Ok(v) = MetadataValue::try_from(self.client_ip.as_str()) {
            r.metadata_mut().insert(CLIENT_IP, v);
        }
        if let Ok(v) = MetadataValue::try_from(self.request_id.as_str()) {
            r.metadata_mut().insert(REQUEST_ID, v);
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == tracetrack_domain::Role::Admin
    }
}

/// A key for a part of a request: 128 bits of two FNV-1a hashes of the key and the purpose
/// (deterministic across processes and versions; the services scope keys by user).
/// A request to auth on behalf of a client without a session (a login, a password reset),
/// with the client's address.
pub fn from_client<T>(message: T, ip: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Ok(v) = MetadataValue::try_from(ip) {
        req.metadata_mut().insert(CLIENT_IP, v);
    }
    req
}

pub fn derived_key(key: &str, purpose: &str) -> String {
    let fnv = |offset: u64| {
        let mut h = offset;
        for b in key.bytes().chain([0]).chain(purpose.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!(
        "part-{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let peer = Some("10.0.0.5".parse().unwrap());
        // No proxy trusted: the header is ignored.
        let none = TrustedProxies::default();
        assert_eq!(none.client(peer, &xff(&["1.2.3.4"])), "10.0.0.5");
        // The peer is the ingress: what it appended (right-most) is the client; a spoofed
        // left-most entry is not taken.
        let ingress = TrustedProxies::parse(true, "").unwrap();
        assert_eq!(
            ingress.client(peer, &xff(&["6.6.6.6, 203.0.113.9"])),
            "203.0.113.9"
        );
        assert_eq!(
            ingress.client(peer, &xff(&["6.6.6.6", "203.0.113.9"])),
            "203.0.113.9"
        );
        assert_eq!(ingress.client(peer, &HeaderMap::new()), "10.0.0.5");
        // A CDN in front of the ingress: its hops are skipped.
        let chain = TrustedProxies::parse(false, "10.0.0.0/8, 198.51.100.7").unwrap();
        assert_eq!(
            chain.client(peer, &xff(&["6.6.6.6, 203.0.113.9, 198.51.100.7"])),
            "203.0.113.9"
        );
        // A peer outside the list is the client, whatever it says.
        assert_eq!(
            chain.client(Some("203.0.113.50".parse().unwrap()), &xff(&["6.6.6.6"])),
            "203.0.113.50"
        );
        // Garbage from the client stops the walk at the last trusted hop's peer.
        assert_eq!(chain.client(peer, &xff(&["not-an-ip"])), "10.0.0.5");
        assert!(TrustedProxies::parse(false, "10.0.0.0/33").is_err());
    }
}
