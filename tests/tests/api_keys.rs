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

/// The audit trail's items for `query`, as an admin reads it over HTTP, polled until there are
/// `n` of them (events arrive on their own streams).
async fn audit_items(
    c: &reqwest::Client,
    gw: &Gateway,
    admin: &str,
    query: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    let url = || gw.url(&format!("/api/v1/audit?{query}"));
    let items = || async {
        get_json(c, url(), admin).await["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    eventually(Duration::from_secs(20), query, || async {
        items().await.len() == n
    })
    .await;
    items().await
}

/// Polls until `v` refuses `token` (its cache forgets the key within its window).
async fn refused_eventually(v: &RemoteVerifier, token: &str, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        v.verify_user(token).await.unwrap().is_none()
    })
    .await;
}

/// `secs` seconds from now (negative: in the past).
fn from_now(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + secs,
        nanos: 0,
    }
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
    refused_eventually(&v, &made.token, "the revoked key refused").await;
    auth.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let past = from_now(-60);
    assert_eq!(
        code(create_key(&auth, &admin, "old", pb::Role::Biller, "", Some(past)).await),
        ErrorCode::InvalidArgument
    );
    let soon = from_now(2);
    let made = create_key(&auth, &admin, "brief", pb::Role::Biller, "", Some(soon))
        .await
        .unwrap();
    // With a one-second cache: valid until the expiry passes, then refused.
    let v = verifier(&auth, 1);
    refused_eventually(&v, &made.token, "the expired key refused").await;
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
    let scans: serde_json::Value = get_json(&c, gw.url("/api/v1/scans"), &admin).await;
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
    let list: serde_json::Value = get_json(&c, gw.url("/api/v1/api-keys"), &admin).await;
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

/// The done-when of issue 17 §2 over HTTP, as a script would use keys: an ERP's admin key pulls
/// the scans export and the EPCIS document; a gate scanner's key scans, and the audit trail (as an
/// admin reads it) names the key, marked as one, apart from a person who has the same name.
/// Reads are not events, so the ERP's pulls leave nothing in the trail.
#[tokio::test]
async fn a_keys_uses_are_audited_by_its_name_and_it_reads_exports_and_epcis() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let gw = Gateway::start(&stack, |s| s.stats_url = stats.url()).await;
    let admin = stack.admin.clone();
    let c = reqwest::Client::new();
    let make = |name: &str, role: &str, area: Option<&str>| {
        let mut body = serde_json::json!({"name": name, "role": role});
        if let Some(a) = area {
            body["dispatch_area"] = a.into();
        }
        let (c, url, admin) = (c.clone(), gw.url("/api/v1/api-keys"), admin.clone());
        async move {
            let r = send_json(&c, reqwest::Method::POST, url, admin, &body).await;
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let scanner = make("gate-scanner", "dispatcher", Some("indore")).await;
    let erp = make("erp", "admin", None).await;
    let scanner_id = scanner["key"]["id"].as_str().unwrap().to_owned();
    // A person may be called what a key is called: the trail still tells them apart.
    let (person, person_token) = stack
        .user("gate-scanner", pb::Role::Dispatcher, "indore")
        .await;
    for (token, qr) in [
        (scanner["token"].as_str().unwrap(), "SB81001"),
        (person_token.as_str(), "SB81002"),
    ] {
        let r = send_json(
            &c,
            reqwest::Method::POST,
            gw.url("/api/v1/scans/parent"),
            token,
            &serde_json::json!({"qr": qr}),
        )
        .await;
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{qr}");
    }

    // The ERP's key reads the scans export (the key's scan under its name) and EPCIS.
    let erp_token = erp["token"].as_str().unwrap().to_owned();
    let r = c
        .get(gw.url("/api/v1/exports/scans.csv"))
        .bearer_auth(&erp_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert!(
        csv.lines()
            .any(|l| l.contains("SB81001") && l.contains("key:gate-scanner")),
        "{csv}"
    );
    // As an integration's script would: curl with the key, nothing else.
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body", "--header"])
        .arg(format!("Authorization: Bearer {erp_token}"))
        .arg(gw.url("/api/v1/exports/scans.csv"))
        .output()
        .await
        .expect("curl (scripts/stack.sh installs it)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{body}");
    assert!(body.contains("SB81001"), "{body}");
    eventually(
        Duration::from_secs(20),
        "the key's scan in the EPCIS document read with the ERP's key",
        || async {
            let r = c
                .get(gw.url("/api/v1/exports/epcis"))
                .bearer_auth(&erp_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK);
            r.text().await.unwrap().contains("SB81001")
        },
    )
    .await;

    // The audit trail, as an admin reads it over HTTP: polled until both scans arrived.
    let rows = audit_items(&c, &gw, &admin, "action=scan.recorded&page_size=50", 2).await;
    let by_key = rows
        .iter()
        .find(|e| e["actor_kind"] == "api_key")
        .expect("the key's scan marked as a key's");
    assert_eq!(by_key["actor_username"], "key:gate-scanner");
    assert_eq!(by_key["actor_user_id"], scanner_id.as_str());
    let by_person = rows
        .iter()
        .find(|e| e["actor_kind"] == "user")
        .expect("the person's scan");
    assert_eq!(by_person["actor_username"], "gate-scanner");
    assert_eq!(by_person["actor_user_id"], person.id.as_str());
    // Filtered by the key's id: its own events only.
    let mine = get_json(
        &c,
        gw.url(&format!("/api/v1/audit?user_id={scanner_id}")),
        &admin,
    )
    .await;
    let mine = mine["items"].as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(
        mine.iter()
            .all(|e| e["actor_username"] == "key:gate-scanner" && e["actor_kind"] == "api_key"),
        "{mine:?}"
    );
    // The keys' creation is audited as the admin's (auth's events arrive on their own stream:
    // polled); the ERP's reads are not events.
    assert!(
        audit_items(&c, &gw, &admin, "action=auth.api_key_created", 2)
            .await
            .iter()
            .all(|e| e["actor_username"] == "admin"
                && e["actor_kind"] == "user"
                && e["aggregate_type"] == "api_key")
    );
    let all = get_json(&c, gw.url("/api/v1/audit?page_size=200"), &admin).await;
    let all = all["items"].as_array().unwrap();
    assert!(
        !all.iter().any(|e| e["actor_username"] == "key:erp"),
        "{all:?}"
    );
}

/// A key belongs to the organisation's integration, not to the admin who made it: it keeps
/// working when its creator is deactivated (an admin revokes it when the integration ends).
#[tokio::test]
async fn a_key_outlives_its_creators_deactivation() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = reqwest::Client::new();
    let (ops, ops_session) = stack.user("ops", pb::Role::Admin, "").await;
    let made: serde_json::Value = send_json(
        &c,
        reqwest::Method::POST,
        gw.url("/api/v1/api-keys"),
        &ops_session,
        &serde_json::json!({"name": "label-printer", "role": "biller"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let r = c
        .delete(gw.url(&format!("/api/v1/users/{}", ops.id)))
        .bearer_auth(&stack.admin)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Asked of auth itself (no cache between): the creator's session is gone, the key is not.
    let authenticate = |user_token: &str| {
        let mut req = tonic::Request::new(pb::AuthenticateRequest {
            user_token: user_token.into(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("x-service-token", service_token("scan").parse().unwrap());
        let mut auth = stack.auth.auth();
        async move { answer(auth.authenticate(req)).await }
    };
    let gone = authenticate(&ops_session).await.unwrap();
    assert!(gone.principal.is_none(), "{gone:?}");
    let key = authenticate(&token).await.unwrap().principal.unwrap();
    assert_eq!(key.kind, pb::PrincipalKind::ApiKey as i32);
    assert_eq!(key.name, "label-printer");
    // It still works over HTTP, and the list still names who made it.
    let r = c
        .get(gw.url("/api/v1/scans"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let list = get_json(&c, gw.url("/api/v1/api-keys"), &stack.admin).await;
    assert_eq!(list["items"][0]["created_by_username"], "ops");
    assert!(list["items"][0]["revoked_at"].is_null());
}
