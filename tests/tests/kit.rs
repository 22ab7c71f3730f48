//! The service kit through auth: outbox to Redis (and Redis restarted empty), health following
//! the database, graceful drain on SIGTERM, and trace context crossing a hop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use redis::AsyncCommands;
use tonic_health::pb::health_check_response::ServingStatus;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::redis_server::RedisServer;
use tracetrack_tests::*;

async fn stream_event_types(redis_url: &str, stream: &str) -> Vec<String> {
    let Ok(client) = redis::Client::open(redis_url) else {
        return vec![];
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return vec![];
    };
    let entries: redis::streams::StreamRangeReply = match conn.xrange_all(stream).await {
        Ok(e) => e,
        Err(_) => return vec![],
    };
    entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("type"))
        .collect()
}

#[tokio::test]
async fn outbox_events_reach_the_stream_and_survive_redis_restarting_empty() {
    let mut redis = RedisServer::start();
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis.url(), &prefix)).await;
    let stream = tracetrack_common::outbox::stream_key(&prefix, "auth");

    auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    let url = redis.url();
    eventually(
        Duration::from_secs(10),
        "login event in the stream",
        || async {
            stream_event_types(&url, &stream)
                .await
                .contains(&"auth.login_succeeded".to_owned())
        },
    )
    .await;
    let envelope: Vec<u8> = {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let r: redis::streams::StreamRangeReply = c.xrange_all(&stream).await.unwrap();
        r.ids
            .iter()
            .find(|e| e.get::<String>("type").as_deref() == Some("auth.login_succeeded"))
            .unwrap()
            .get("envelope")
            .unwrap()
    };
    let env = tracetrack_common::outbox::decode_envelope(&envelope).unwrap();
    assert_eq!(env.source, "auth");
    assert_eq!(env.actor.unwrap().username, "admin");

    // Redis dies and comes back empty; an event written while it was down is kept in the outbox.
    redis.kill();
    auth.login("admin", "wrong-password").await.unwrap_err();
    redis.restart();
    eventually(
        Duration::from_secs(20),
        "events re-published after the restart",
        || async {
            let types = stream_event_types(&url, &stream).await;
            types.contains(&"auth.login_succeeded".to_owned())
                && types.contains(&"auth.login_failed".to_owned())
        },
    )
    .await;
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth.outbox WHERE published_at IS NULL")
            .fetch_one(&auth.pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 0);
}

#[tokio::test]
async fn health_is_not_serving_while_the_database_is_cut() {
    let db = fresh_database().await;
    // Migrate directly, then run auth through a proxy the test controls.
    let (proxy, via_proxy) = tracetrack_tests::proxy::in_front_of(&db, Duration::ZERO).await;
    let mut s = auth_settings(&via_proxy, &redis_url(), &unique_prefix());
    s.common.database.acquire_timeout_ms = 500;
    let auth = AuthServer::start(s).await;
    let svc = "tracetrack.auth.v1.AuthService";
    assert_eq!(health(auth.addr, svc).await, Some(ServingStatus::Serving));

    proxy.cut();
    wait_health(auth.addr, svc, ServingStatus::NotServing).await;
    wait_health(auth.addr, "", ServingStatus::NotServing).await;
    // Calls fail cleanly meanwhile: unavailable, not internal.
    let e = auth.login("admin", ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(e.code, tracetrack_domain::ErrorCode::Unavailable, "{e:?}");

    proxy.restore();
    wait_health(auth.addr, svc, ServingStatus::Serving).await;
    auth.login("admin", ADMIN_PASSWORD).await.unwrap();
}

/// A real auth process: SIGTERM while logins are in flight lets them finish, then exits 0.
#[tokio::test]
async fn sigterm_drains_in_flight_rpcs() {
    let db = fresh_database().await;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(workspace_bin("tracetrack-auth"))
        .env("TRACETRACK_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("TRACETRACK_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .env("TRACETRACK_DATABASE__URL", &db)
        .env("TRACETRACK_DATABASE__MIGRATE_ON_START", "true")
        .env("TRACETRACK_REDIS__URL", redis_url())
        .env("TRACETRACK_EVENTS__KEY_PREFIX", unique_prefix())
        .env("TRACETRACK_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // One hash at a time, so a burst of logins queues up and stays in flight.
        .env("TRACETRACK_ARGON2__MAX_CONCURRENT", "1")
        // Login answers only the gateway; and 12 parallel logins of one account would pass the
        // lockout's limit on attempts in flight (each counts until it succeeds).
        .env(
            "TRACETRACK_SERVICE_TOKENS__GATEWAY",
            service_token("gateway"),
        )
        .env("TRACETRACK_LOCKOUT__MAX_FAILURES", "100")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    wait_serving(addr, "").await;
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let mut c = pb::auth_service_client::AuthServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut req = tonic::Request::new(pb::LoginRequest {
                    username: "admin".into(),
                    password: ADMIN_PASSWORD.into(),
                });
                req.metadata_mut()
                    .insert("x-service-token", service_token("gateway").parse().unwrap());
                c.login(req).await
            })
        })
        .collect();
    let series = "grpc_server_in_flight{method=\"/tracetrack.auth.v1.AuthService/Login\"}";
    eventually(Duration::from_secs(10), "logins in flight", || async {
        metric(admin, series).await >= 8.0
    })
    .await;

    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    for c in calls {
        let r = c.await.unwrap();
        assert!(r.is_ok(), "an in-flight login was cut: {r:?}");
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // And it is gone: new connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A replica that starts with `migrate_on_start` beside live traffic runs `migrate` again. The
/// kit's DDL used to run every time, and `ALTER TABLE … ADD COLUMN IF NOT EXISTS` (like `CREATE
/// INDEX IF NOT EXISTS`) takes its table lock before it looks: the new replica queued behind every
/// open write on the outbox, every later write queued behind it, and two kit tables locked in
/// opposite orders could deadlock. Applied once, the kit is not run again.
#[tokio::test]
async fn migrating_again_beside_open_writes_takes_no_table_lock() {
    let db = fresh_database().await;
    // Waiting on a lock fails after 2 s instead of hanging: a guard, not a measurement.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET lock_timeout = '2s'").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&db)
        .await
        .unwrap();
    let migrator = &tracetrack_auth::startup::MIGRATOR;
    tracetrack_common::db::migrate(&pool, "auth", migrator)
        .await
        .unwrap();

    // Requests in flight: an open transaction holding writes on both kit tables.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO auth.outbox (event_id, event_type, aggregate_id, envelope) \
         VALUES ($1, 'test.open_write', 'a', '')",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO auth.idempotency_keys (scope, key, request_hash) VALUES ('t', 'k', '')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();

    let again = tracetrack_common::db::migrate(&pool, "auth", migrator).await;
    assert!(
        again.is_ok(),
        "a second migrate beside open writes must not wait for their locks: {again:?}"
    );
    tx.commit().await.unwrap();
}
