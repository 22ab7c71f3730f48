//! Finishing touches on the OpenAPI document generated from the handlers, applied to every
//! operation so that no route can forget them: the session security schemes, the problem answers
//! any route can give (bad input, not logged in, role, rate limit, an upstream down, …), and problem
//! documents under their own media type, `application/problem+json`.

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Operations anyone may call (no session).
const PUBLIC: &[&str] = &["login"];

pub fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The `token` from login, for scripts."))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::ctx::SESSION_COOKIE,
            "The session cookie set by login, for browsers; unsafe requests also need the \
             `X-CSRF-Token` header.",
        ))),
    );
    doc.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("session_cookie", Vec::<String>::new()),
    ]);
    for item in doc.paths.paths.values_mut() {
        for (mutation, op) in operations(item) {
            finish_operation(op, mutation);
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (bool, &mut Operation)> {
    [
        (false, item.get.as_mut()),
        (true, item.post.as_mut()),
        (true, item.put.as_mut()),
        (true, item.patch.as_mut()),
        (true, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(mutation, op)| op.map(|op| (mutation, op)))
}

fn finish_operation(op: &mut Operation, mutation: bool) {
    let public = op
        .operation_id
        .as_deref()
        .is_some_and(|id| PUBLIC.contains(&id));
    if public {
        // An empty requirement: no session needed.
        op.security = Some(vec![SecurityRequirement::default()]);
    }
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_input = !params.is_empty() || op.request_body.is_some();
    let has_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let mut common: Vec<(&str, &str)> = Vec::new();
    if has_input {
        common.push((
            "400",
            "Bad input: `invalid_argument` (a malformed body, query or path), `invalid_qr`",
        ));
    }
    if !public {
        common.push(("401", "Not logged in: `unauthenticated`"));
        common.push((
            "403",
            "Not allowed: `permission_denied` (role, or a cookie session without its CSRF token), \
             `password_change_required`, `wrong_area`",
        ));
    }
    if has_path {
        common.push((
            "404",
            "No such thing: `not_found`, `user_not_found`, `bag_not_found`, `bill_not_found`",
        ));
    }
    if mutation && !public {
        common.push((
            "409",
            "A concurrent change won (`conflict`); retrying is safe",
        ));
    }
    if op.request_body.is_some() {
        common.push(("413", "The body is too large: `payload_too_large`"));
    }
    if mutation && !public {
        common.push((
            "422",
            "The `Idempotency-Key` was used for a different request: `idempotency_key_reused`",
        ));
    }
    common.push((
        "429",
        "Too many requests: `rate_limited` (with `Retry-After`)",
    ));
    common.push((
        "503",
        "An upstream service is down or slow: `unavailable`, `deadline_exceeded`",
    ));
    for (status, description) in common {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(description)));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if status.starts_with('4') || status.starts_with('5') {
            if let RefOr::T(r) = response {
                if let Some(json) = r.content.shift_remove("application/json") {
                    r.content.insert(PROBLEM_JSON.to_owned(), json);
                }
            }
        }
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
