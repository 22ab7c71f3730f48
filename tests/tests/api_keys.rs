//! API keys for integrations (issue 17 §2), over gRPC against a real auth: created by an admin,
//! resolved by another service's verifier as a principal of kind api_key with its own role and
//! area, never able to manage users or keys, refused once revoked (within the cache window,
//! polled) or expired.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use secrecy::SecretString;
use tracetrack_common::caller::{PrincipalKind, RemoteVerifier, TokenVerifier};
use tracetrack_common::config::AuthClientSettings;
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::*;

fn verifier(auth: &AuthServer, ttl: u64) -> RemoteVerifier {
    RemoteVerifier::new(&AuthClientSettings {
        url: auth.url(),
        service_token: Some(SecretString::from(service_token("scan"))),
        cache_ttl_secs: ttl,
        timeout_ms: 2000,
    })
    .unwrap()
}

async fn create_key(
    auth: &AuthServer,
    token: &str,
    name: &str,
    role: pb::Role,
    area: &str,
    expires_at: Option<prost_types::Timestamp>,
) -> Result<pb::CreateApiKeyResponse, tracetrack_common::AppError> {
    answer(auth.users().create_api_key(authed(
        pb::CreateApiKeyRequest {
            name: name.into(),
            role: role as i32,
            dispatch_area: area.into(),
            expires_at,
        },
        token,
    )))
    .await
}

#[tokio::test]
async fn an_admin_creates_a_dispatcher_key_that_acts_in_its_area_until_revoked() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let made = create_key(
        &auth,
        &admin,
        "scale-1",
        pb::Role::Dispatcher,
        "indore",
        None,
    )
    .await
    .unwrap();
    let key = made.key.unwrap();
    assert!(made.token.starts_with(&format!("tt_key_{}_", key.prefix)));
    assert_eq!(key.prefix.len(), 12);
    assert_eq!(key.dispatch_area, "indore");
    // A dispatcher key needs an area; a biller may not create keys.
    assert_eq!(
        code(create_key(&auth, &admin, "nowhere", pb::Role::Dispatcher, "", None).await),
        ErrorCode::AreaRequired
    );
    let (_, biller) = auth.create_user(&admin, "bina", pb::Role::Biller, "").await;
    assert_eq!(
        code(create_key(&auth, &biller, "mine", pb::Role::Biller, "", None).await),
        ErrorCode::PermissionDenied
    );

    // Another service resolves the key: its own id, name, role and area.
    let v = verifier(&auth, 1);
    let who = v.verify_user(&made.token).await.unwrap().unwrap();
    assert_eq!(who.kind, PrincipalKind::ApiKey);
    assert_eq!(who.id.to_string(), key.id);
    assert_eq!(who.username, "key:scale-1");
    assert_eq!(who.role, Role::Dispatcher);
    assert_eq!(who.area.as_deref(), Some("indore"));
    // A made-up key is refused.
    assert!(v
        .verify_user(&format!("tt_key_{}_nothing", key.prefix))
        .await
        .unwrap()
        .is_none());

    // The key cannot manage users or keys, nor list them.
    assert_eq!(
        code(
            answer(
                auth.users()
                    .list_users(authed(pb::ListUsersRequest::default(), &made.token))
            )
            .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(create_key(&auth, &made.token, "child", pb::Role::Admin, "", None).await),
        ErrorCode::PermissionDenied
    );

    // Listed with prefix, creator and (after the use above) last use.
    let listed = answer(
        auth.users()
            .list_api_keys(authed(pb::ListApiKeysRequest::default(), &admin)),
    )
    .await
    .unwrap();
    let row = listed.keys.iter().find(|k| k.id == key.id).unwrap();
    assert_eq!(row.created_by_username, "admin");
    assert!(row.last_used_at.is_some());

    // Revoked: refused once the verifier's cache forgets it (polled, not timed).
    let revoked = answer(auth.users().revoke_api_key(authed(
        pb::RevokeApiKeyRequest { id: key.id.clone() },
        &admin,
    )))
    .await
    .unwrap();
    assert!(revoked.key.unwrap().revoked_at.is_some());
    eventually(
        Duration::from_secs(30),
        "the revoked key refused",
        || async { v.verify_user(&made.token).await.unwrap().is_none() },
    )
    .await;
    auth.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let past = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 60,
        nanos: 0,
    };
    assert_eq!(
        code(create_key(&auth, &admin, "old", pb::Role::Biller, "", Some(past)).await),
        ErrorCode::InvalidArgument
    );
    let soon = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 2,
        nanos: 0,
    };
    let made = create_key(&auth, &admin, "brief", pb::Role::Biller, "", Some(soon))
        .await
        .unwrap();
    // With a one-second cache: valid until the expiry passes, then refused.
    let v = verifier(&auth, 1);
    eventually(
        Duration::from_secs(30),
        "the expired key refused",
        || async { v.verify_user(&made.token).await.unwrap().is_none() },
    )
    .await;
    auth.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_scans_over_http_bearer_but_never_from_a_cookie_nor_on_user_admin() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let admin = stack.auth.admin_token().await;
    let made = create_key(
        &stack.auth,
        &admin,
        "gate-scanner",
        pb::Role::Dispatcher,
        "indore",
        None,
    )
    .await
    .unwrap();
    let c = reqwest::Client::new();
    // A program scans with the key as a bearer token, in its own area.
    let r = c
        .post(gw.url("/api/v1/scans/parent"))
        .bearer_auth(&made.token)
        .json(&serde_json::json!({"qr": "SB80002", "area": "indore"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "{:?}", r.text().await);
    // The scan is recorded as the key's: `key:<name>` (usernames have no ':').
    let scans: serde_json::Value = c
        .get(gw.url("/api/v1/scans"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        scans["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["username"] == "key:gate-scanner"),
        "{scans}"
    );
    // User administration is refused to a key.
    let r = c
        .get(gw.url("/api/v1/users"))
        .bearer_auth(&made.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    // The same key in the session cookie is refused before auth is asked.
    let r = c
        .get(gw.url("/api/v1/users"))
        .header("cookie", format!("tt_session={}", made.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_are_made_listed_and_revoked_over_http_by_an_admin_only() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let admin = stack.auth.admin_token().await;
    let c = reqwest::Client::new();
    let r = c
        .post(gw.url("/api/v1/api-keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "erp", "role": "biller"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let made: serde_json::Value = r.json().await.unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["key"]["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tt_key_"));
    // The key itself may not list or revoke keys.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/api-keys".to_owned()),
        (reqwest::Method::DELETE, format!("/api/v1/api-keys/{id}")),
    ] {
        let r = c
            .request(method, gw.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN, "{path}");
    }
    let list: serde_json::Value = c
        .get(gw.url("/api/v1/api-keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["name"], "erp");
    assert_eq!(list["items"][0]["created_by_username"], "admin");
    assert!(list["items"][0].get("token").is_none());
    let r = c
        .delete(gw.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // Refused over HTTP once the gateway's cache forgets it (polled).
    eventually(
        Duration::from_secs(40),
        "the revoked key refused over HTTP",
        || async {
            c.get(gw.url("/api/v1/api-keys"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                == reqwest::StatusCode::UNAUTHORIZED
        },
    )
    .await;
}
