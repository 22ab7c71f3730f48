//! The holes of the security review (issue "Hardening"), each proved closed against the real
//! stack: area scoping of bag history and batch reads, who may say the client's address,
//! upstream error text, live streams that follow their viewer, export and request limits with
//! load shedding, and bogus tokens refused early.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

async fn get(c: &Client, gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    c.get(gw.url(path)).bearer_auth(token).send().await.unwrap()
}

/// Hole 1: a bag's history is scoped like every area read (a dispatcher of another area gets
/// 403 `wrong_area`), and only admins see the actor's address and the raw details. Batch reads
/// (GetBags) leave out another area's bags for a dispatcher.
#[tokio::test]
async fn bag_history_is_scoped_to_the_area_and_hides_addresses_from_non_admins() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let gw = Gateway::start(&stack, |s| s.stats_url = stats.url()).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    stack.user("lata", Role::Dispatcher, "lucknow").await;
    stack.user("indu", Role::Dispatcher, "indore").await;
    stack.user("bina", Role::Biller, "").await;
    let lata = http_token(&c, &gw, "lata", USER_PASSWORD).await;
    let indu = http_token(&c, &gw, "indu", USER_PASSWORD).await;
    let bina = http_token(&c, &gw, "bina", USER_PASSWORD).await;
    // The admin registers the parent over HTTP (so its event carries the address the gateway
    // saw); the lucknow dispatcher scans a child into it.
    let r = send_json(
        &c,
        reqwest::Method::POST,
        gw.url("/api/v1/bags"),
        &admin,
        &json!({"qr": "SB71001", "type": "parent", "area": "lucknow"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send_json(
        &c,
        reqwest::Method::POST,
        gw.url("/api/v1/scans/child"),
        &lata,
        &json!({"parent_qr": "SB71001", "child_qr": "HIST0001"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The admin sees the history with the address the gateway saw and the raw details.
    let start = std::time::Instant::now();
    let admin_view: Value = loop {
        let view: Value = get(&c, &gw, "/api/v1/bags/SB71001/history", &admin)
            .await
            .json()
            .await
            .unwrap();
        if view.as_array().is_some_and(|a| a.len() >= 2) {
            break view;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "history: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = &admin_view[0];
    assert_eq!(first["action"], "registry.bag_registered", "{admin_view}");
    assert_eq!(first["ip"], "127.0.0.1", "{admin_view}");
    assert!(
        first["details"].as_object().is_some_and(|d| !d.is_empty()),
        "{admin_view}"
    );

    // A dispatcher of another area: 403 wrong_area (as the bag's children are).
    problem(
        get(&c, &gw, "/api/v1/bags/HIST0001/history", &indu).await,
        403,
        "wrong_area",
    )
    .await;
    problem(
        get(&c, &gw, "/api/v1/bags/SB71001/history", &indu).await,
        403,
        "wrong_area",
    )
    .await;
    problem(
        get(&c, &gw, "/api/v1/bags/SB71001/children", &indu).await,
        403,
        "wrong_area",
    )
    .await;
    // A bag that does not exist is not found for a dispatcher (nothing to scope it by).
    problem(
        get(&c, &gw, "/api/v1/bags/NOSUCH01/history", &indu).await,
        404,
        "bag_not_found",
    )
    .await;

    // The bag's own dispatcher and a biller see the events, without addresses or raw details.
    for viewer in [&lata, &bina] {
        let r = get(&c, &gw, "/api/v1/bags/SB71001/history", viewer).await;
        assert_eq!(r.status(), StatusCode::OK);
        let items: Value = r.json().await.unwrap();
        let items = items.as_array().unwrap();
        assert_eq!(items.len(), admin_view.as_array().unwrap().len());
        assert_eq!(items[0]["action"], "registry.bag_registered");
        for e in items {
            assert_eq!(e["ip"], "", "{e}");
            assert_eq!(e["details"], json!({}), "{e}");
        }
    }

    // GetBags (a batch) as the indore dispatcher leaves the lucknow bags out; one bag by id
    // (GetBag) stays open to every role, as SPEC §1 says.
    let (_, indu_grpc) = stack.user("indu2", Role::Dispatcher, "indore").await;
    let got = stack
        .registry_client()
        .get_bags(authed(
            reg::GetBagsRequest {
                qrs: vec!["SB71001".into(), "HIST0001".into()],
            },
            &indu_grpc,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(got.bags.is_empty(), "{:?}", got.bags);
    assert_eq!(
        stack.bag(&indu_grpc, "HIST0001").await.unwrap().area,
        "lucknow"
    );
}

/// Hole 8: a service believes `x-client-ip` only from the gateway; anyone else calling it
/// directly cannot write an address of their choosing into the audit trail.
#[tokio::test]
async fn only_the_gateway_may_say_the_client_address() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let register = |qr: &str| reg::RegisterBagRequest {
        qr: qr.into(),
        r#type: reg::BagType::Parent as i32,
        area: "jaipur".into(),
    };
    // Called directly (no gateway token), the claimed address is ignored.
    let mut req = authed(register("SB72001"), &stack.admin);
    req.metadata_mut()
        .insert("x-client-ip", "6.6.6.6".parse().unwrap());
    stack.registry_client().register_bag(req).await.unwrap();
    // The same through the gateway's service token is believed.
    let mut req = stack.as_service(register("SB72002"), Some(&stack.admin), "gateway");
    req.metadata_mut()
        .insert("x-client-ip", "203.0.113.9".parse().unwrap());
    stack.registry_client().register_bag(req).await.unwrap();

    let stats_client = tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient::new(
        tonic::transport::Channel::from_shared(stats.url())
            .unwrap()
            .connect_lazy(),
    );
    let start = std::time::Instant::now();
    let ips = loop {
        let mut ips = Vec::new();
        for qr in ["SB72001", "SB72002"] {
            let h = stats_client
                .clone()
                .get_bag_history(authed(
                    tracetrack_proto::stats::v1::GetBagHistoryRequest { qr: qr.into() },
                    &stack.admin,
                ))
                .await
                .unwrap()
                .into_inner();
            if let Some(e) = h.events.first() {
                ips.push(e.ip.clone());
            }
        }
        if ips.len() == 2 {
            break ips;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no history yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ips, vec![String::new(), "203.0.113.9".to_owned()]);
}

/// Hole 10: an upstream that cannot be reached answers 503 `unavailable` in our words, never
/// the transport's text.
#[tokio::test]
async fn transport_errors_reach_clients_in_our_words() {
    let stack = Stack::start(1).await;
    let down = closed_port().await;
    let gw = Gateway::start(&stack, |s| s.stats_url = down.clone()).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let body = problem(
        get(&c, &gw, "/api/v1/stats/dashboard", &admin).await,
        503,
        "unavailable",
    )
    .await;
    let text = body.to_string().to_lowercase();
    for leak in ["tcp", "connect error", "os error", "transport", "refused"] {
        assert!(!text.contains(leak), "{body}");
    }
}

/// Hole 5: a live stream ends when its viewer's area (or role) changes, so a dispatcher moved
/// to another area does not keep watching the old one; streams are capped per user.
#[tokio::test]
async fn live_streams_follow_their_viewer_and_are_capped() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.sse_recheck_secs = 1;
        s.sse_max_per_user = 2;
        s.auth.cache_ttl_secs = 1;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let (user, _) = stack.user("moti", Role::Dispatcher, "hisar").await;
    let moti = http_token(&c, &gw, "moti", USER_PASSWORD).await;
    let open = |path: &'static str| c.get(gw.url(path)).bearer_auth(&moti).send();
    let scans = open("/api/v1/scans/live").await.unwrap();
    assert_eq!(scans.status(), StatusCode::OK);
    let dash = open("/api/v1/stats/live").await.unwrap();
    assert_eq!(dash.status(), StatusCode::OK);
    // A third stream of the same user is refused with 429 and Retry-After.
    let third = open("/api/v1/scans/live").await.unwrap();
    assert!(third.headers().contains_key("retry-after"));
    problem(third, 429, "overloaded").await;

    // The admin moves moti to another area: both streams end with `view changed`.
    let r = send_json(
        &c,
        reqwest::Method::PATCH,
        gw.url(&format!("/api/v1/users/{}", user.id)),
        &admin,
        &json!({"dispatch_area": "bathinda"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    for resp in [scans, dash] {
        let mut body = resp.bytes_stream();
        let mut seen = String::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(Ok(chunk)) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("the stream did not end");
        assert!(
            seen.contains("event: end") && seen.contains("view changed"),
            "{seen}"
        );
    }
    // Their places are given back: moti can open two again.
    let again = open("/api/v1/scans/live").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

/// Hole 5: WatchDashboard is the gateway's (one stream for all its browsers, filtered and
/// re-checked per viewer by the gateway); a user's stream would never be re-checked.
#[tokio::test]
async fn watch_dashboard_is_for_the_gateway_alone() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let client = tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient::new(
        tonic::transport::Channel::from_shared(stats.url())
            .unwrap()
            .connect_lazy(),
    );
    let refused = client
        .clone()
        .watch_dashboard(authed(
            tracetrack_proto::stats::v1::WatchDashboardRequest {},
            &stack.admin,
        ))
        .await;
    assert_eq!(code_of(refused.map(|_| ())), ErrorCode::CallerNotAllowed);
    let mut stream = client
        .clone()
        .watch_dashboard(stack.as_service(
            tracetrack_proto::stats::v1::WatchDashboardRequest {},
            None,
            "gateway",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
}

/// Hole 6: exports are limited per replica (`limits.max_concurrent_exports`); one more is
/// refused at once with `overloaded`, so exports cannot take the scan path's connections. A
/// pool whose connections are all busy answers `overloaded` (429), not `unavailable`.
#[tokio::test]
async fn exports_are_limited_and_a_busy_pool_is_overloaded_not_down() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
    let mut s = registry_settings(&db, &redis_url(), &prefix, &auth);
    s.common.limits.max_concurrent_exports = 1;
    s.common.database.max_connections = 1;
    s.common.database.acquire_timeout_ms = 300;
    let registry = start_registry(s).await;
    let admin = auth.admin_token().await;
    let mut client = registry_at(&registry.url());
    for qr in ["SB73001", "SB73002", "SB73003"] {
        let req = reg::RegisterBagRequest {
            qr: qr.into(),
            r#type: reg::BagType::Parent as i32,
            area: "lucknow".into(),
        };
        client.register_bag(authed(req, &admin)).await.unwrap();
    }
    // Enough rows that an export cannot finish into the HTTP/2 flow-control windows while its
    // reader waits: it stays open, holding its place and its snapshot's connection.
    bulk_children(&db, "EXP", 60_000).await;
    let export_request = || {
        authed(
            reg::ExportBagsRequest {
                filter: None,
                chunk_size: 1000,
            },
            &admin,
        )
    };
    // The first export holds its place (and its snapshot's connection) while it is read.
    let mut first = client
        .clone()
        .export_bags(export_request())
        .await
        .unwrap()
        .into_inner();
    assert!(first.message().await.unwrap().is_some());
    let second = client.clone().export_bags(export_request()).await;
    assert_eq!(code_of(second.map(|_| ())), ErrorCode::Overloaded);
    // Its snapshot holds the only connection: a read now finds the pool busy, the database
    // answering — overloaded (retry soon), not an outage.
    let busy = client
        .get_bag(authed(
            reg::GetBagRequest {
                qr: "SB73001".into(),
            },
            &admin,
        ))
        .await;
    assert_eq!(code_of(busy.map(|_| ())), ErrorCode::Overloaded);
    assert_eq!(
        health(registry.addr, "").await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    // When the first is done, its place and connection are free again.
    drop(first);
    eventually(Duration::from_secs(10), "a new export starts", || {
        let mut c = client.clone();
        let admin = admin.clone();
        async move {
            c.export_bags(authed(
                reg::ExportBagsRequest {
                    filter: None,
                    chunk_size: 1000,
                },
                &admin,
            ))
            .await
            .is_ok()
        }
    })
    .await;
}

/// Hole 7: random bearer tokens cost one failed check each until the client address passes
/// `bad_tokens_per_ip_per_minute`; then 429 with Retry-After, before auth is asked. A valid
/// token (cached) from the same address keeps working.
#[tokio::test]
async fn bogus_tokens_are_refused_early_per_address() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| s.rate_limits.bad_tokens_per_ip_per_minute = 5).await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        get(&c, &gw, "/api/v1/auth/me", &admin).await.status(),
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for i in 0..8 {
        let bogus = format!("tt_{}{i}", uuid::Uuid::new_v4().simple());
        statuses.push(
            get(&c, &gw, "/api/v1/auth/me", &bogus)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429, 429, 429]);
    // A session logged in after the address was throttled is served (issued here, so known).
    let late = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        get(&c, &gw, "/api/v1/auth/me", &late).await.status(),
        StatusCode::OK
    );
    let r = get(&c, &gw, "/api/v1/auth/me", "tt_still_bogus").await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429, "rate_limited").await;
    // The valid session is not throttled.
    assert_eq!(
        get(&c, &gw, "/api/v1/auth/me", &admin).await.status(),
        StatusCode::OK
    );
}

/// Hole 4, through the gateway: requests beyond `max_concurrent_requests` are refused at once
/// with 429 `overloaded` and Retry-After (not queued), and a request that takes longer than
/// `request_timeout_ms` answers 503 `deadline_exceeded`; health is never shed.
#[tokio::test]
async fn the_gateway_sheds_load_and_bounds_each_request() {
    let stack = Stack::start(1).await;
    let hole = black_hole().await;
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = hole.clone();
        s.rate_limits.enabled = false;
        s.max_concurrent_requests = 2;
        s.request_timeout_ms = 1_500;
        s.upstream_timeout_ms = 10_000;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    // Two requests that hang on the black-holed upstream fill the gateway.
    let hanging: Vec<_> = (0..2)
        .map(|_| {
            let (c, url, admin) = (c.clone(), gw.url("/api/v1/stats/dashboard"), admin.clone());
            tokio::spawn(async move { c.get(url).bearer_auth(admin).send().await.unwrap() })
        })
        .collect();
    eventually(Duration::from_secs(5), "two requests in flight", || async {
        metric(gw.admin_addr, "gateway_requests_in_flight").await == 2.0
    })
    .await;
    let shed = get(&c, &gw, "/api/v1/auth/me", &admin).await;
    assert_eq!(shed.headers()["retry-after"], "1");
    problem(shed, 429, "overloaded").await;
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    // The hanging ones end at the request timeout with 503 deadline_exceeded.
    for h in hanging {
        problem(h.await.unwrap(), 503, "deadline_exceeded").await;
    }
    assert_eq!(
        get(&c, &gw, "/api/v1/auth/me", &admin).await.status(),
        StatusCode::OK
    );
}

/// Hole 4, in a service: calls beyond `limits.max_concurrent_rpcs` get RESOURCE_EXHAUSTED
/// `overloaded` at once; health is exempt; a call gets at most `request_timeout_ms`.
#[tokio::test]
async fn a_service_sheds_calls_beyond_its_limit() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
    let hole = black_hole().await;
    let mut s = scan_settings(&db, &redis_url(), &prefix, &auth, &hole);
    s.common.limits.max_concurrent_rpcs = 1;
    s.common.limits.request_timeout_ms = 1_500;
    s.registry_timeout_ms = 10_000;
    let scan = start_scan(s).await;
    let admin = auth.admin_token().await;
    let client = tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient::new(
        tonic::transport::Channel::from_shared(scan.url())
            .unwrap()
            .connect_lazy(),
    );
    let scan_parent = |qr: &str| {
        let mut c = client.clone();
        let req = authed(
            tracetrack_proto::scan::v1::ScanParentRequest {
                qr: qr.into(),
                area: "lucknow".into(),
            },
            &admin,
        );
        async move { c.scan_parent(req).await }
    };
    // The first call hangs on the black-holed registry and takes the only place.
    let first = tokio::spawn(scan_parent("SB74001"));
    let in_flight = "grpc_server_in_flight{method=\"/tracetrack.scan.v1.ScanService/ScanParent\"}";
    eventually(
        Duration::from_secs(5),
        "the first call is in flight",
        || async { metric(scan.admin_addr, in_flight).await == 1.0 },
    )
    .await;
    let err = AppError::from_status(&scan_parent("SB74002").await.unwrap_err());
    assert_eq!(err.code, ErrorCode::Overloaded);
    assert_eq!(err.detail("retry_after_seconds"), Some("1"));
    assert_eq!(
        health(scan.addr, "").await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    // The hanging call ends at the service's own request timeout.
    let first = first.await.unwrap();
    assert_eq!(code_of(first), ErrorCode::DeadlineExceeded);
}
