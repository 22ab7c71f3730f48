//! The web client in a real browser: starts the whole stack and the gateway, then runs the
//! Playwright tests in tests/browser (Debian's Chromium, playwright-core from the lockfile; both
//! installed by scripts/browser-deps.sh, which `make test` runs). Screenshots land in
//! tests/browser/screenshots.
//!
//! scan runs as its own process, so that the browser tests can have it really killed (SIGKILL)
//! and started again while the page scans. The node test asks for that through a small HTTP
//! control port this test serves (`TT_CONTROL_URL`; `node --test` gives a test file no stdin, so
//! there is no line to answer on): `POST /kill/scan` (`?during=ScanChild`: once a ScanChild is
//! inside scan), `POST /start/scan`, `POST /expire-sessions/<username>`, each answered 200 once
//! done (500 with the reason if not).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::browser::NodeTests;
use tracetrack_tests::*;

#[tokio::test]
async fn the_web_client_in_chromium() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let billing = stack.billings[0].url();
    // The gateway calls this process; the stack's in-process scan stays up unused by it (a
    // second replica on the same database: either one's relay publishes the shared outbox).
    let scan = stack.scan_process().await;
    let scan_url = scan.url();
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.billing_url = billing.clone();
        s.scan_url = scan_url;
        // A session that ends on the server reaches the gateway within a second, not the 30 s
        // production allows, so the expired-session test need not wait that long.
        s.auth.cache_ttl_secs = 1;
    })
    .await;
    stack.user("dina", Role::Dispatcher, "lucknow").await;

    let scan = Arc::new(Mutex::new(scan));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_url = format!("http://{}", listener.local_addr().unwrap());
    let control = tokio::spawn(serve_control(
        listener,
        scan.clone(),
        stack.auth.pool.clone(),
    ));

    NodeTests::new(&["scan-station.test.mjs"], gw.addr)
        .env("TT_CONTROL_URL", &control_url)
        .env("TT_DISPATCHER", "dina")
        .run()
        .await;
    control.abort();
    assert!(
        scan.lock().await.pid().is_some(),
        "the browser tests left scan killed"
    );

    // Whatever the page went through (outages, a scan killed with requests in flight, sessions
    // ended), on the server every child it linked was linked once: one successful child scan per
    // child still in a parent, none for a child taken out again beyond its undo.
    let pool = stack.registry_pool();
    let twice: Vec<(String, i64)> = sqlx::query_as(
        r#"SELECT child_qr, count(*) FROM scan.scan_events
           WHERE kind = 'child' AND outcome = 'ok' GROUP BY child_qr HAVING count(*) > 1"#,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(twice.is_empty(), "children scanned in twice: {twice:?}");
    let unrecorded = links_without_their_scan(pool).await;
    assert!(
        unrecorded.is_empty(),
        "links without their scan: {unrecorded:?}"
    );
    // The scans made around scan's kills are there, each in its parent: KIL… in SB90010 (2
    // before the kill, those made while it landed, 4 after), EXQ… in SB90011.
    let around: Vec<(String, i64, i64)> = sqlx::query_as(
        r#"SELECT left(qr, 3), count(*), count(*) FILTER (WHERE parent_qr =
                    CASE left(qr, 3) WHEN 'KIL' THEN 'SB90010' ELSE 'SB90011' END)
           FROM registry.bags WHERE kind = 'child' AND (qr LIKE 'KIL%' OR qr LIKE 'EXQ%')
           GROUP BY 1 ORDER BY 1"#,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(around.len(), 2, "{around:?}");
    let (exq, kil) = (&around[0], &around[1]);
    assert!(exq.0 == "EXQ" && exq.1 == 4 && exq.2 == 4, "{around:?}");
    assert!(kil.0 == "KIL" && kil.1 >= 6 && kil.2 == kil.1, "{around:?}");
}

/// Serves the control port until aborted, one request at a time (so actions never overlap).
async fn serve_control(
    listener: tokio::net::TcpListener,
    scan: Arc<Mutex<ServiceProcess>>,
    auth: sqlx::PgPool,
) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.is_err() {
            continue;
        }
        // The rest of the head; the requests carry no body.
        loop {
            let mut line = String::new();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => {}
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let started = std::time::Instant::now();
        let result = act(&path, &scan, &auth).await;
        println!(
            "[control] {path}: {result:?} in {} ms",
            started.elapsed().as_millis()
        );
        let (status, body) = match result {
            Ok(body) => ("200 OK", body),
            Err(body) => ("500 Internal Server Error", body),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = write.write_all(answer.as_bytes()).await;
        let _ = write.shutdown().await;
    }
}

async fn act(
    path: &str,
    scan: &Mutex<ServiceProcess>,
    auth: &sqlx::PgPool,
) -> Result<String, String> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    match path.trim_start_matches('/').split_once('/') {
        Some(("kill", "scan")) => {
            let mut scan = scan.lock().await;
            let pid = scan.pid().ok_or("scan is not running")?;
            // `?during=<Method>`: the kill waits (polling scan's in-flight gauge, at most 20 s) for
            // a call of that method to be inside scan, so it lands mid-request: the gateway gets
            // no answer, and the call may or may not have been saved.
            let mut caught = String::new();
            if let Some(method) = query.strip_prefix("during=") {
                let series = format!(
                    "grpc_server_in_flight{{method=\"/tracetrack.scan.v1.ScanService/{method}\"}}"
                );
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(20) {
                    if metric(scan.admin_addr, &series).await >= 1.0 {
                        caught = format!(" with a {method} in flight");
                        break;
                    }
                }
                if caught.is_empty() {
                    caught = format!(" (no {method} came in flight within 20 s)");
                }
            }
            scan.kill().await;
            // Gone: nothing listens on its port any more.
            if tokio::net::TcpStream::connect(scan.addr).await.is_ok() {
                return Err(format!("scan {pid} killed, yet {} answers", scan.addr));
            }
            Ok(format!("scan {pid} killed (SIGKILL){caught}"))
        }
        Some(("start", "scan")) => {
            let mut scan = scan.lock().await;
            if scan.pid().is_some() {
                return Err("scan is already running".into());
            }
            // Returns once it reports SERVING.
            scan.restart().await;
            Ok(format!(
                "scan {} serving on {}",
                scan.pid().unwrap_or(0),
                scan.addr
            ))
        }
        Some(("expire-sessions", user)) => {
            // What the passing of the absolute expiry does: the sessions are still there, past
            // their end.
            let n = sqlx::query(
                r#"UPDATE auth.sessions s SET expires_at = now() - interval '1 second'
                   FROM auth.users u
                   WHERE u.id = s.user_id AND u.username = $1
                     AND s.ended_at IS NULL AND s.expires_at > now()"#,
            )
            .bind(user)
            .execute(auth)
            .await
            .map_err(|e| e.to_string())?
            .rows_affected();
            if n == 0 {
                return Err(format!("{user} has no open session"));
            }
            Ok(format!("{n} session(s) of {user} expired"))
        }
        _ => Err(format!("unknown control {path}")),
    }
}
