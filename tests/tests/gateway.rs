//! Black-box HTTP tests of the gateway against the real stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

#[tokio::test]
async fn cookie_session_csrf_and_bearer() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let client = Client::new();
    let r = http_login(&client, &gw, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.starts_with("tt_session="),
        "{cookie}"
    );
    let body: Value = r.json().await.unwrap();
    let (token, csrf) = (
        body["token"].as_str().unwrap().to_owned(),
        body["csrf_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(body["user"]["role"], "admin");
    let session = cookie.split(';').next().unwrap().to_owned();

    let me: Value = client
        .get(gw.url("/api/v1/auth/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["csrf_token"], csrf.as_str());
    assert_eq!(me["user"]["username"], "admin");

    // A cookie-authenticated unsafe request needs the CSRF header.
    let scan = json!({"qr": "SB80001", "area": "lucknow"});
    let r = client
        .post(gw.url("/api/v1/scans/parent"))
        .header("cookie", &session)
        .json(&scan)
        .send()
        .await
        .unwrap();
    let p = problem(r, 403, "permission_denied").await;
    assert_eq!(p["reason"], "csrf");
    let r = client
        .post(gw.url("/api/v1/scans/parent"))
        .header("cookie", &session)
        .header("x-csrf-token", "wrong")
        .json(&scan)
        .send()
        .await
        .unwrap();
    problem(r, 403, "permission_denied").await;
    let r = client
        .post(gw.url("/api/v1/scans/parent"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&scan)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Scripts use the bearer token and need no CSRF header.
    let r = send_json(
        &client,
        reqwest::Method::POST,
        gw.url("/api/v1/scans/child"),
        &token,
        &json!({"parent_qr": "SB80001", "child_qr": "CH0001"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["parent"]["child_count"], 1);
    assert_eq!(b["child"]["parent_qr"], "SB80001");

    // Logout clears the cookie and ends the session.
    let r = client
        .post(gw.url("/api/v1/auth/logout"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = client
        .get(gw.url("/api/v1/auth/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
    // Security headers on every answer.
    let r = client.get(gw.url("/healthz")).send().await.unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn error_codes_as_problem_documents() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = Client::new();
    problem(
        http_login(&c, &gw, "admin", "wrong").await,
        401,
        "invalid_credentials",
    )
    .await;
    problem(
        http_login(&c, &gw, "nobody", "wrong").await,
        401,
        "invalid_credentials",
    )
    .await;
    problem(
        c.get(gw.url("/api/v1/bags/SB1")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(
        c.get(gw.url("/api/v1/nothing-here")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let (_, _) = stack.user("dina", Role::Dispatcher, "ranchi").await;
    let dina = http_token(&c, &gw, "dina", USER_PASSWORD).await;
    problem(
        c.post(gw.url("/api/v1/scans/parent"))
            .bearer_auth(&admin)
            .body("{not json")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_argument",
    )
    .await;
    // In order (each row may build on the ones before): who asks, what, and the answer — a
    // problem document with this status and code, or (0, "") for success.
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, &str, Value, u16, &str)> = vec![
        ("admin", "POST", "/api/v1/scans/parent", json!({"qr": "SB<>"}), 400, "invalid_qr"),
        ("admin", "POST", "/api/v1/scans/parent", json!({"qr": "SB81001"}), 400, "area_required"),
        ("admin", "POST", "/api/v1/scans/parent", json!({"qr": "0016586"}), 409, "qr_is_child"),
        ("admin", "POST", "/api/v1/scans/parent", json!({"qr": "SB81001", "area": "akola"}), 0, ""),
        ("dina", "POST", "/api/v1/scans/parent", json!({"qr": "SB81001"}), 403, "wrong_area"),
        ("admin", "POST", "/api/v1/scans/child", json!({"parent_qr": "SB89999", "child_qr": "AB12"}), 404, "parent_not_found"),
        ("admin", "POST", "/api/v1/scans/child", json!({"parent_qr": "SB81001", "child_qr": "SB81001"}), 400, "same_as_parent"),
        ("admin", "POST", "/api/v1/scans/child", json!({"parent_qr": "SB81001", "child_qr": "SB81002"}), 409, "qr_is_parent"),
        ("admin", "POST", "/api/v1/scans/parent", json!({"qr": "SB81002", "area": "akola"}), 0, ""),
        ("admin", "POST", "/api/v1/scans/child", json!({"parent_qr": "SB81001", "child_qr": "AB12"}), 0, ""),
        ("admin", "POST", "/api/v1/scans/child", json!({"parent_qr": "SB81002", "child_qr": "AB12"}), 409, "child_linked_elsewhere"),
        ("dina", "POST", "/api/v1/scans/undo", json!({"parent_qr": "SB81002"}), 403, "wrong_area"),
        ("admin", "POST", "/api/v1/scans/undo", json!({"parent_qr": "SB81002"}), 404, "nothing_to_undo"),
        ("admin", "GET", "/api/v1/bags/NOSUCH1", Value::Null, 404, "bag_not_found"),
        ("admin", "POST", "/api/v1/bags", json!({"qr": "SB81001", "type": "parent", "area": "akola"}), 409, "bag_exists"),
        ("dina", "POST", "/api/v1/bags", json!({"qr": "SB81009", "type": "parent", "area": "ranchi"}), 403, "permission_denied"),
        ("admin", "DELETE", "/api/v1/bags/SB81001", Value::Null, 409, "bag_has_children"),
        ("admin", "DELETE", "/api/v1/bags/AB12", Value::Null, 409, "bag_linked"),
        ("dina", "GET", "/api/v1/users", Value::Null, 403, "permission_denied"),
        ("admin", "POST", "/api/v1/users", json!({"username": "x1y", "password": "short", "role": "biller"}), 400, "weak_password"),
        ("admin", "POST", "/api/v1/users", json!({"username": "dina", "password": "Fresh-Sack-77", "role": "biller"}), 409, "username_taken"),
        ("admin", "POST", "/api/v1/users", json!({"username": "disp2", "password": "Fresh-Sack-77", "role": "dispatcher"}), 400, "area_required"),
    ];
    for (who, method, path, body, status, code) in rows {
        let token = if who == "admin" { &admin } else { &dina };
        let mut req = c
            .request(method.parse().unwrap(), gw.url(path))
            .bearer_auth(token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        if status == 0 {
            assert!(
                r.status().is_success(),
                "{who} {method} {path} {body}: {}",
                r.status()
            );
            continue;
        }
        let p = problem(r, status, code).await;
        if code == "child_linked_elsewhere" {
            assert_eq!(p["other_parent_qr"], "SB81001");
        }
    }

    // The same Idempotency-Key with another request.
    let k = |body: Value| {
        c.post(gw.url("/api/v1/scans/child"))
            .bearer_auth(&admin)
            .header("idempotency-key", "k-77")
            .json(&body)
            .send()
    };
    let first: Value = k(json!({"parent_qr": "SB81002", "child_qr": "CD34"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again: Value = k(json!({"parent_qr": "SB81002", "child_qr": "CD34"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, again);
    problem(
        k(json!({"parent_qr": "SB81002", "child_qr": "EF56"}))
            .await
            .unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;

    // Lists: keyset pages of bags.
    let page: Value = get_json(&c, gw.url("/api/v1/bags?q=SB81&page_size=1"), &admin).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let next = page["next_page_token"].as_str().unwrap();
    let page2: Value = get_json(
        &c,
        gw.url(&format!(
            "/api/v1/bags?q=SB81&page_size=1&page_token={next}"
        )),
        &admin,
    )
    .await;
    assert_eq!(page2["items"][0]["qr"], "SB81002");
    let kids: Value = get_json(&c, gw.url("/api/v1/bags/SB81001/children"), &admin).await;
    assert_eq!(kids["items"][0]["qr"], "AB12");
    let scans: Value = get_json(&c, gw.url("/api/v1/scans?qr=AB12"), &admin).await;
    let outcomes: Vec<&str> = scans["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"child_linked_elsewhere") && outcomes.contains(&"ok"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn login_rate_limit_answers_429_with_retry_after() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| s.rate_limits.login_per_account_per_minute = 3).await;
    let c = Client::new();
    for _ in 0..3 {
        assert_eq!(
            http_login(&c, &gw, "someone", "x").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = http_login(&c, &gw, "someone", "x").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    problem(r, 429, "rate_limited").await;
    // Another account from the same address is not affected.
    assert_eq!(
        http_login(&c, &gw, "admin", ADMIN_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_down_upstream_answers_503_on_its_routes_only() {
    let stack = Stack::start(1).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&stack, |s| s.scan_url = format!("http://{dead}")).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let r = send_json(
        &c,
        reqwest::Method::POST,
        gw.url("/api/v1/scans/parent"),
        &admin,
        &json!({"qr": "SB82001", "area": "hisar"}),
    )
    .await;
    problem(r, 503, "unavailable").await;
    assert_eq!(
        c.get(gw.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(gw.url("/api/v1/users"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_served() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = Client::new();
    let doc = gw.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    // Every documented operation is routed (the fallback answers "no such route" otherwise).
    for (method, path) in &operations {
        let concrete = path.replace(['{', '}'], "");
        let r = c
            .request(method.parse().unwrap(), gw.url(&concrete))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::NOT_FOUND {
            let body: Value = r.json().await.unwrap_or_default();
            assert_ne!(
                body["detail"], "no such route",
                "{method} {path} is documented but not routed"
            );
        }
    }
    // Every SPEC §3 route served so far is documented.
    for (method, path) in [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/auth/me"),
        ("POST", "/api/v1/auth/password"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/{id}"),
        ("PATCH", "/api/v1/users/{id}"),
        ("DELETE", "/api/v1/users/{id}"),
        ("POST", "/api/v1/users/{id}/unlock"),
        ("POST", "/api/v1/users/unlock-all"),
        ("POST", "/api/v1/users/{id}/reset-password"),
        ("POST", "/api/v1/scans/parent"),
        ("POST", "/api/v1/scans/child"),
        ("POST", "/api/v1/scans/undo"),
        ("GET", "/api/v1/scans"),
        ("GET", "/api/v1/scans/live"),
        ("GET", "/api/v1/bags/{qr}"),
        ("GET", "/api/v1/bags"),
        ("GET", "/api/v1/bags/{qr}/children"),
        ("POST", "/api/v1/bags"),
        ("DELETE", "/api/v1/bags/{parent_qr}/children/{child_qr}"),
        ("POST", "/api/v1/bags/{child_qr}/move"),
        ("DELETE", "/api/v1/bags/{qr}"),
        ("GET", "/api/v1/exports/bags.csv"),
        ("GET", "/api/v1/exports/bags.xlsx"),
        ("GET", "/api/v1/exports/bills.csv"),
        ("GET", "/api/v1/exports/bills.xlsx"),
        ("GET", "/api/v1/exports/scans.csv"),
        ("GET", "/api/v1/exports/scans.xlsx"),
        ("POST", "/api/v1/imports/labels"),
        // Issue 17: API keys, two-factor sign-in, password reset and the public configuration.
        ("GET", "/api/v1/api-keys"),
        ("POST", "/api/v1/api-keys"),
        ("DELETE", "/api/v1/api-keys/{id}"),
        ("POST", "/api/v1/auth/login/complete"),
        ("POST", "/api/v1/auth/two-factor/enrolment"),
        ("POST", "/api/v1/auth/two-factor/confirm"),
        ("POST", "/api/v1/auth/two-factor/disable"),
        ("POST", "/api/v1/users/{id}/reset-two-factor"),
        ("POST", "/api/v1/auth/password-reset"),
        ("POST", "/api/v1/auth/password-reset/complete"),
        ("GET", "/api/v1/config"),
    ] {
        assert!(
            operations.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} missing from OpenAPI"
        );
    }
}

#[tokio::test]
async fn an_sse_client_sees_a_scan_and_dispatchers_only_their_area() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    stack.user("hari", Role::Dispatcher, "hisar").await;
    let hari = http_token(&c, &gw, "hari", USER_PASSWORD).await;
    let open = |t: String| {
        let c = c.clone();
        let url = gw.url("/api/v1/scans/live");
        async move {
            let r = c.get(url).bearer_auth(t).send().await.unwrap();
            assert_eq!(r.headers()["content-type"], "text/event-stream");
            r.bytes_stream()
        }
    };
    let mut all = open(admin.clone()).await;
    let mut mine = open(hari.clone()).await;
    // One scan in indore (the admin's), one in the dispatcher's hisar.
    for (token, path, body) in [
        (&admin, "parent", json!({"qr": "SB83001", "area": "indore"})),
        (
            &admin,
            "child",
            json!({"parent_qr": "SB83001", "child_qr": "OTHERAREA1"}),
        ),
        (&hari, "parent", json!({"qr": "SB83002"})),
        (
            &hari,
            "child",
            json!({"parent_qr": "SB83002", "child_qr": "MYAREA1"}),
        ),
    ] {
        let url = gw.url(&format!("/api/v1/scans/{path}"));
        send_json(&c, reqwest::Method::POST, url, token, &body).await;
    }

    let seen_all = read_until(&mut all, "MYAREA1").await;
    assert!(
        seen_all.contains("event: scan") && seen_all.contains("OTHERAREA1"),
        "{seen_all}"
    );
    let seen_mine = read_until(&mut mine, "MYAREA1").await;
    assert!(
        !seen_mine.contains("OTHERAREA1"),
        "a dispatcher saw another area: {seen_mine}"
    );
}

/// Reads an SSE stream until `needle` shows; all it read.
async fn read_until(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    needle: &str,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended or timed out before {needle}: {other:?}\n{seen}"),
        }
    }
    seen
}

#[tokio::test]
async fn dashboard_audit_and_history_over_http_and_a_live_dashboard() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let gw = Gateway::start(&stack, |s| s.stats_url = stats.url()).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let (user, _) = stack.user("gita", Role::Dispatcher, "jaipur").await;
    let gita = http_token(&c, &gw, "gita", USER_PASSWORD).await;
    let mut live = c
        .get(gw.url("/api/v1/stats/live"))
        .bearer_auth(&gita)
        .send()
        .await
        .unwrap()
        .bytes_stream();

    let post = |t: &str, path: &str, body: Value| {
        c.post(gw.url(path))
            .bearer_auth(t.to_owned())
            .json(&body)
            .send()
    };
    post(&gita, "/api/v1/scans/parent", json!({"qr": "SB84001"}))
        .await
        .unwrap();
    for i in 0..3 {
        let r = post(
            &gita,
            "/api/v1/scans/child",
            json!({"parent_qr": "SB84001", "child_qr": format!("DASH{i}")}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    post(
        &admin,
        "/api/v1/scans/parent",
        json!({"qr": "SB84002", "area": "hisar"}),
    )
    .await
    .unwrap();

    // The dashboard converges (generous bound); a dispatcher's is their area's.
    let start = std::time::Instant::now();
    loop {
        let d: Value = get_json(&c, gw.url("/api/v1/stats/dashboard"), &admin).await;
        if d["children"] == 3 && d["parents"] == 2 {
            assert_eq!(d["scans_today"], 3, "{d}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "dashboard: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The live stream pushed the dispatcher's figures (their area only: one parent).
    let seen = read_until(&mut live, "\"children\":3").await;
    let last = seen.lines().rfind(|l| l.starts_with("data: {")).unwrap();
    let figures: Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
    assert_eq!(
        figures["parents"], 1,
        "a dispatcher sees only jaipur: {figures}"
    );

    // Audit (admin only) and history.
    problem(
        c.get(gw.url("/api/v1/audit"))
            .bearer_auth(&gita)
            .send()
            .await
            .unwrap(),
        403,
        "permission_denied",
    )
    .await;
    let audit: Value = get_json(
        &c,
        gw.url(&format!("/api/v1/audit?user_id={}&action=scan.", user.id)),
        &admin,
    )
    .await;
    assert!(!audit["items"].as_array().unwrap().is_empty());
    let history: Value = get_json(&c, gw.url("/api/v1/bags/DASH1/history"), &gita).await;
    assert_eq!(history[0]["action"], "registry.child_linked");
    let activity: Value = get_json(
        &c,
        gw.url(&format!("/api/v1/stats/users/{}/activity", user.id)),
        &admin,
    )
    .await;
    assert_eq!(activity["total_scans"], 3);
}

/// SIGTERM: `/readyz` turns 503 and live streams end at once, requests are still served during
/// the grace period, then the listener closes.
#[tokio::test]
async fn shutdown_stops_readiness_ends_live_streams_then_closes() {
    let stack = Stack::start(1).await;
    let mut gw = Gateway::start(&stack, |s| {
        s.shutdown.grace_ms = 5_000;
        s.shutdown.drain_timeout_ms = 5_000;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let ready = c.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let mut live = c
        .get(gw.url("/api/v1/scans/live"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .bytes_stream();

    gw.begin_shutdown();
    let start = std::time::Instant::now();
    loop {
        let r = c.get(gw.url("/readyz")).send().await.unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.json::<Value>().await.unwrap()["status"], "draining");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving during the grace period.
    assert_eq!(http_me(&c, &gw, &admin).await.status(), StatusCode::OK);
    // The live stream ends (heartbeats until then), so the browser reconnects elsewhere.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = live.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the live stream did not end");
    // Then the listener closes.
    eventually(
        Duration::from_secs(30),
        "the gateway to stop listening",
        || async { c.get(gw.url("/healthz")).send().await.is_err() },
    )
    .await;
}

#[tokio::test]
async fn meta_serves_areas_product_lines_and_the_error_table() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = Client::new();
    problem(
        c.get(gw.url("/api/v1/meta")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    stack.user("mira", Role::Dispatcher, "akola").await;
    let mira = http_token(&c, &gw, "mira", USER_PASSWORD).await;
    let r = c
        .get(gw.url("/api/v1/meta"))
        .bearer_auth(&mira)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let meta: Value = r.json().await.unwrap();
    // bag-registry's configuration, not a copy.
    let areas: Vec<&str> = meta["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let configured: Vec<&str> = tracetrack_domain::DEFAULT_AREAS.to_vec();
    assert_eq!(areas, configured);
    let lines = meta["product_lines"].as_array().unwrap();
    assert!(!lines.is_empty());
    assert!(lines
        .iter()
        .all(|l| l["capacity"].as_i64().unwrap() > 0 && l["parent_pattern"].is_string()));
    // The business time zone the web client's reports take "today" in (the gateway's default).
    assert_eq!(meta["time_zone"], "Asia/Kolkata");
    // The whole error table, each code as the domain crate has it.
    let codes = meta["error_codes"].as_array().unwrap();
    assert_eq!(codes.len(), tracetrack_domain::ErrorCode::ALL.len());
    for c in tracetrack_domain::ErrorCode::ALL {
        let row = codes
            .iter()
            .find(|r| r["code"] == c.as_str())
            .unwrap_or_else(|| panic!("{} missing", c.as_str()));
        assert_eq!(row["retryable"], c.is_retryable(), "{}", c.as_str());
        assert_eq!(row["http_status"], c.http_status(), "{}", c.as_str());
    }
}
