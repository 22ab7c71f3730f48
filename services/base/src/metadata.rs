//! gRPC metadata keys shared by every service and the gateway.

use tonic::metadata::MetadataMap;

/// `authorization: Bearer <session token>` — the end user.
pub const AUTHORIZATION: &str = "authorization";
/// The calling service's own service-account token.
pub const SERVICE_TOKEN: &str = "x-service-token";
/// Opaque key on every mutation; a replay within 24 h returns the first answer.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The end user's address as the gateway saw it.
pub const CLIENT_IP: &str = "x-client-ip";
/// The gateway's request id, echoed in logs and problem documents.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

pub fn get_str<'a>(md: &'a MetadataMap, key: &str) -> Option<&'a str> {
    md.get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The session token from `authorization: Bearer …`.
pub fn bearer(md: &MetadataMap) -> Option<&str> {
    let v = get_str(md, AUTHORIZATION)?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The idempotency key of a request, if any (validated).
pub fn idempotency_key(md: &MetadataMap) -> crate::AppResult<Option<String>> {
    match get_str(md, IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_LEN || k.chars().any(char::is_control) => Err(
            crate::AppError::invalid("idempotency-key must be 1-200 printable characters"),
        ),
        Some(k) => Ok(Some(k.to_owned())),
    }
}
