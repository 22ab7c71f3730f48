//! Faults end to end (issue "Nothing acknowledged is lost"): what a caller sees when a
//! dependency dies under a request — never a 500, a 503 `unavailable` it may retry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

/// A connection whose server process is terminated under a request (as when the postmaster
/// dies: `terminating connection due to …`, SQLSTATE 57P01/57P02) answers `unavailable`, not
/// `internal`; and the service recovers by itself on the next request. The request here is an
/// export between two pages (it holds its snapshot's connection while its reader waits).
#[tokio::test]
async fn a_connection_the_server_terminated_is_unavailable_not_internal() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
    let registry = start_registry(registry_settings(&db, &redis_url(), &prefix, &auth)).await;
    let admin = auth.admin_token().await;
    let client = registry_at(&registry.url());
    // More rows than the HTTP/2 windows hold, so the export waits for its reader mid-way.
    bulk_children(&db, "FLT", 60_000).await;
    let mut export = client
        .clone()
        .export_bags(authed(
            reg::ExportBagsRequest {
                filter: None,
                chunk_size: 1000,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(export.message().await.unwrap().is_some());
    // Every server process of the registry's pool is terminated under it.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let killed = db_i64(
        &mut conn,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND application_name = 'tracetrack-registry') t",
    )
    .await;
    assert!(killed >= 1);
    // The export meets its dead connection at its next page: unavailable, never internal.
    let err = loop {
        match export.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the export ended without an error"),
            Err(s) => break AppError::from_status(&s),
        }
    };
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    // And the pool heals: the next request succeeds.
    eventually(
        std::time::Duration::from_secs(10),
        "the registry answers again",
        || {
            let mut c = client.clone();
            let req = authed(
                reg::GetBagRequest {
                    qr: "FLT000001".into(),
                },
                &admin,
            );
            async move { c.get_bag(req).await.is_ok() }
        },
    )
    .await;
}

/// While Redis is down the gateway neither waits for it (a circuit leaves it alone after a
/// failure) nor drops its limits: they are counted in the replica instead, `/readyz` says so,
/// and once Redis is back they are shared again.
#[tokio::test]
async fn with_redis_down_the_gateway_limits_locally_and_says_so() {
    use reqwest::{Client, StatusCode};
    let mut redis = redis_server::RedisServer::start();
    let stack = Stack::start(1).await;
    let redis_url = redis.url();
    let gw = Gateway::start(&stack, |s| {
        s.redis.url = redis_url.clone();
        s.rate_limits.bad_tokens_per_ip_per_minute = 3;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    let ready = || public_json(&c, gw.url("/readyz"));
    assert_eq!(ready().await["redis"], "ok");

    redis.kill();
    // Requests are answered; the bogus-token limit still holds (counted in this replica).
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = http_me(&c, &gw, format!("tt_bogus_{i}")).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    assert_eq!(http_me(&c, &gw, &admin).await.status(), StatusCode::OK);
    let r = ready().await;
    assert_eq!(r["status"], "ready");
    assert_eq!(r["redis"], "down: rate limits are per replica");
    assert_eq!(
        metric(gw.admin_addr, "gateway_redis_circuit_open").await,
        1.0
    );

    // Redis back: after the circuit's pause the limits are shared again.
    redis.restart();
    eventually(
        std::time::Duration::from_secs(30),
        "redis is used again",
        || {
            let c = c.clone();
            let url = gw.url("/api/v1/auth/me");
            let admin = admin.clone();
            let ready = ready();
            async move {
                let _ = c.get(url).bearer_auth(admin).send().await;
                ready.await["redis"] == "ok"
            }
        },
    )
    .await;
}

/// Requests cancelled at any moment (clients giving up, deadlines passing) never leave a pooled
/// connection inside a transaction: sqlx 0.8's `begin()` did when cancelled during `BEGIN`
/// (transact-rs/sqlx#4393, fixed in 0.9.1), and the next borrower then ran inside it ("there is
/// already a transaction in progress"). Hundreds of mutations are cancelled at random points,
/// then no registry connection is idle in a transaction and every later request succeeds.
#[tokio::test]
async fn cancelled_requests_leave_no_connection_in_a_transaction() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
    // The registry reaches Postgres through a proxy that delays every answer by 2 ms, so a
    // request cancelled at a random moment often falls inside a BEGIN's round trip.
    let (_proxy, via_proxy) = proxy::in_front_of(&db, std::time::Duration::from_millis(2)).await;
    let mut s = registry_settings(&via_proxy, &redis_url(), &prefix, &auth);
    s.common.database.max_connections = 20;
    let registry = start_registry(s).await;
    let admin = auth.admin_token().await;
    let client = registry_at(&registry.url());
    let register = |qr: String| {
        let mut c = client.clone();
        let req = authed(
            reg::RegisterBagRequest {
                qr,
                r#type: reg::BagType::Parent as i32,
                area: "lucknow".into(),
            },
            &admin,
        );
        async move { c.register_bag(req).await }
    };
    // Warm the pool: 20 connections open, the admin's session cached.
    futures::future::join_all((0..20u32).map(|i| register(format!("SB{:05}", 59000 + i))))
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    // Waves of 20 calls, each dropped 1-12 ms after it was sent: before, during or after its
    // BEGIN (every statement's answer takes 2 ms through the proxy).
    for wave in 0..30u32 {
        let cancelled = (0..20u32).map(|i| {
            let call = register(format!("SB{:05}", 60000 + wave * 20 + i));
            async move {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(u64::from(1 + (wave + i) % 12)),
                    call,
                )
                .await;
            }
        });
        futures::future::join_all(cancelled).await;
    }
    let observer = sqlx::PgPool::connect(&db).await.unwrap();
    eventually(
        std::time::Duration::from_secs(10),
        "no registry connection idle in a transaction",
        || {
            let observer = observer.clone();
            async move {
                let stuck = db_i64(&observer, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'tracetrack-registry' AND state LIKE 'idle in transaction%'").await;
                stuck == 0
            }
        },
    )
    .await;
    // Every connection of the pool serves the next requests cleanly.
    for i in 0..12u32 {
        register(format!("SB{:05}", 61000 + i)).await.unwrap();
    }
}

/// The stream's entries (id, event id) once it holds every sequence bag-registry has given
/// (at least `at_least`); waits for that, bounded.
async fn settled_stream(
    pool: &sqlx::PgPool,
    redis_url: &str,
    stream: &str,
    at_least: i64,
    what: &str,
) -> Vec<(String, String)> {
    use redis::AsyncCommands;
    let start = std::time::Instant::now();
    loop {
        let last = db_i64(pool, "SELECT last_seq FROM registry.outbox_sequence").await;
        let entries: Option<redis::streams::StreamRangeReply> = async {
            let client = redis::Client::open(redis_url).ok()?;
            let mut r = client.get_multiplexed_async_connection().await.ok()?;
            r.xrange_all(stream).await.ok()
        }
        .await;
        if let Some(entries) = entries {
            let ids: Vec<(String, String)> = entries
                .ids
                .iter()
                .map(|e| {
                    (
                        e.id.clone(),
                        e.get::<String>("event_id").unwrap_or_default(),
                    )
                })
                .collect();
            if last >= at_least && ids.last().map(|e| e.0.clone()) == Some(format!("{last}-0")) {
                return ids;
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The event contract (SPEC §2): each event's stream entry id is its publish sequence, and a
/// Redis restored from a stale snapshot (it lost the tail, and whatever marker it held says all
/// is well) gets the missing events again, under the same ids.
#[tokio::test]
async fn a_redis_restored_from_a_stale_snapshot_gets_the_lost_events_again() {
    let mut server = redis_server::RedisServer::start_persistent();
    let stack = Stack::start_on(1, &server.url()).await;
    let stream = tracetrack_common::outbox::stream_key(&stack.prefix, "bag-registry");
    let mut registry = stack.registry_client();
    let register = |qr: &str| {
        authed(
            reg::RegisterBagRequest {
                qr: qr.into(),
                r#type: reg::BagType::Parent as i32,
                area: "lucknow".into(),
            },
            &stack.admin,
        )
    };
    let pool = stack.registries[0].pool.clone();
    for qr in ["SB76001", "SB76002", "SB76003"] {
        registry.register_bag(register(qr)).await.unwrap();
    }
    settled_stream(
        &pool,
        &server.url(),
        &stream,
        3,
        "the first events are published",
    )
    .await;
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SAVE").query_async(&mut conn).await.unwrap();
    for qr in ["SB76004", "SB76005", "SB76006"] {
        registry.register_bag(register(qr)).await.unwrap();
    }
    let before = settled_stream(
        &pool,
        &server.url(),
        &stream,
        6,
        "the later events are published",
    )
    .await;
    // Every entry id is the publish sequence, and each event is in the stream once.
    let ids: Vec<String> = before.iter().map(|e| e.0.clone()).collect();
    let expected: Vec<String> = (1..=before.len()).map(|i| format!("{i}-0")).collect();
    assert_eq!(ids, expected);

    // Redis dies and comes back from the snapshot taken before the last three events.
    server.kill();
    server.restart();
    let after = settled_stream(
        &pool,
        &server.url(),
        &stream,
        6,
        "the lost events are published again",
    )
    .await;
    assert_eq!(after, before, "the same events under the same ids");
}

/// A service whose database is gone from the network (connections hang) answers each request
/// `unavailable` (503) within its caller's deadline, not `deadline_exceeded` after it: the first
/// failed connection opens a circuit, so the next requests are refused at once instead of each
/// waiting out the pool's acquire timeout (and scan's record of the failed attempt, which would
/// wait for it a second time, is skipped); the circuit closes by itself when the database answers.
#[tokio::test]
async fn a_database_gone_from_the_network_costs_a_503_not_the_callers_deadline() {
    use reqwest::Client;
    use serde_json::json;
    let mut stack = Stack::start(1).await;
    // scan again, its database behind a proxy that can hang (acquire timeout 3 s here; the
    // gateway's upstream deadline is 5 s: two waits do not fit in it).
    let (db, via_proxy) = tracetrack_tests::proxy::in_front_of(&stack.db, Default::default()).await;
    let urls = stack.registries[0].url();
    stack.scan = start_scan(scan_settings(
        &via_proxy,
        &redis_url(),
        &stack.prefix,
        &stack.auth,
        &urls,
    ))
    .await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let c = Client::new();
    let admin = stack.admin.clone();
    let scan = |qr: &'static str| {
        let (c, url, admin) = (c.clone(), gw.url("/api/v1/scans/parent"), admin.clone());
        async move {
            c.post(url)
                .bearer_auth(admin)
                .json(&json!({"qr": qr, "area": "lucknow"}))
                .send()
                .await
                .unwrap()
        }
    };
    let first = scan("SB90001").await;
    assert!(
        first.status().is_success(),
        "{}",
        first.text().await.unwrap()
    );

    db.hang();
    for qr in ["SB90002", "SB90003", "SB90004"] {
        let body = problem(scan(qr).await, 503, "unavailable").await;
        assert_eq!(body["retryable"], true);
    }

    db.restore();
    eventually(
        std::time::Duration::from_secs(20),
        "scan answers again once its database does",
        || {
            let r = scan("SB90005");
            async move { r.await.status().is_success() }
        },
    )
    .await;
}
