//! The dashboard GET answered from the gateway's memory (issue 18, direction 4): while the one
//! upstream WatchDashboard stream is connected and its snapshot is fresh, a read never reaches
//! stats; the figures equal what stats answers, for each viewer's scope; a stale snapshot or a cut
//! stream sends the read to stats, and with stats down the answer is 503 `unavailable`, never
//! the figures the gateway last held.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

/// Dashboard answers by source, summed over this process (every gateway of the test).
async fn answers(gw: &Gateway, source: &str) -> f64 {
    metric(
        gw.admin_addr,
        &format!("gateway_dashboard_answers_total{{source=\"{source}\"}}"),
    )
    .await
}

/// GetDashboard calls stats has handled (any outcome).
async fn stats_reads(gw: &Gateway) -> f64 {
    http_get(gw.admin_addr, "/metrics")
        .await
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{") && l.contains("StatsService/GetDashboard")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn dashboard(c: &Client, gw: &Gateway, token: &str) -> Value {
    let r = c
        .get(gw.url("/api/v1/stats/dashboard"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The figures, without when they were read.
fn figures(mut d: Value) -> Value {
    let o = d.as_object_mut().unwrap();
    assert!(
        o.remove("as_of").unwrap().is_string(),
        "as_of on every answer"
    );
    o.remove("freshness_seconds");
    d
}

async fn scan(c: &Client, gw: &Gateway, token: &str, path: &str, body: Value) {
    let r = c
        .post(gw.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path} {body}");
}

#[tokio::test]
async fn the_dashboard_is_answered_from_memory_with_the_figures_stats_gives_each_viewer() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    // memory: a snapshot stays fresh for a minute (the stream sends only changes); direct: always
    // stats; brief: a snapshot is stale after 300 ms.
    let memory = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.dashboard_snapshot_max_age_ms = 60_000;
    })
    .await;
    let direct = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.dashboard_snapshot_max_age_ms = 0;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &memory, "admin", ADMIN_PASSWORD).await;
    stack.user("gita", Role::Dispatcher, "jaipur").await;
    stack.user("hari", Role::Dispatcher, "hisar").await;
    stack.user("bina", Role::Biller, "").await;
    let gita = http_token(&c, &memory, "gita", USER_PASSWORD).await;
    let hari = http_token(&c, &memory, "hari", USER_PASSWORD).await;
    let bina = http_token(&c, &memory, "bina", USER_PASSWORD).await;

    scan(
        &c,
        &memory,
        &gita,
        "/api/v1/scans/parent",
        json!({"qr": "SB85001"}),
    )
    .await;
    for i in 0..3 {
        let body = json!({"parent_qr": "SB85001", "child_qr": format!("MEMJ{i}")});
        scan(&c, &memory, &gita, "/api/v1/scans/child", body).await;
    }
    scan(
        &c,
        &memory,
        &hari,
        "/api/v1/scans/parent",
        json!({"qr": "SB85002"}),
    )
    .await;
    let body = json!({"parent_qr": "SB85002", "child_qr": "MEMH0"});
    scan(&c, &memory, &hari, "/api/v1/scans/child", body).await;

    // The snapshot converges on the scans (read through the memory gateway).
    eventually(
        Duration::from_secs(30),
        "the dashboard shows the scans",
        || {
            let (c, memory, admin) = (&c, &memory, &admin);
            async move {
                let d = dashboard(c, memory, admin).await;
                d["children"] == 4 && d["parents"] == 2 && d["scans_today"] == 4
            }
        },
    )
    .await;
    // Reads from memory: the memory counter moves by one per read, stats is not asked.
    let (mem0, stats0) = (answers(&memory, "memory").await, stats_reads(&memory).await);
    let mut from_memory = Vec::new();
    for token in [&admin, &bina, &gita, &hari] {
        from_memory.push(figures(dashboard(&c, &memory, token).await));
    }
    assert_eq!(answers(&memory, "memory").await, mem0 + 4.0);
    assert_eq!(stats_reads(&memory).await, stats0, "stats was not asked");

    // The same viewers through a gateway that always asks stats: the same figures.
    let (via_stats0, stats1) = (answers(&direct, "stats").await, stats_reads(&direct).await);
    for (token, remembered) in [&admin, &bina, &gita, &hari].into_iter().zip(&from_memory) {
        let asked = figures(dashboard(&c, &direct, token).await);
        assert_eq!(&asked, remembered, "memory and stats agree");
    }
    assert_eq!(answers(&direct, "stats").await, via_stats0 + 4.0);
    assert_eq!(stats_reads(&direct).await, stats1 + 4.0);

    // Scope: each dispatcher sees their own area only, never another's figures.
    let (all, jaipur, hisar) = (&from_memory[0], &from_memory[2], &from_memory[3]);
    assert_eq!(
        (all["parents"].clone(), all["children"].clone()),
        (json!(2), json!(4))
    );
    assert_eq!(jaipur["parents"], 1, "{jaipur}");
    assert_eq!(jaipur["children"], 3, "{jaipur}");
    assert_eq!(jaipur["scans_today"], 3, "{jaipur}");
    let areas = |d: &Value| -> Vec<Value> {
        d["areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["area"].clone())
            .collect()
    };
    assert_eq!(areas(jaipur), vec![json!("jaipur")]);
    assert_eq!(hisar["children"], 1, "{hisar}");
    assert_eq!(areas(hisar), vec![json!("hisar")]);
    assert_eq!(jaipur["returns_today"], 0, "not a dispatcher's work");

    // A stale snapshot is not used: with no change for longer than its max age, a read asks
    // stats even though the stream is connected.
    let brief = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.dashboard_snapshot_max_age_ms = 300;
    })
    .await;
    let asked = answers(&brief, "stats").await;
    eventually(
        Duration::from_secs(30),
        "a stale snapshot sends reads to stats",
        || {
            let (c, brief, gita) = (&c, &brief, &gita);
            async move {
                let before = stats_reads(brief).await;
                let d = figures(dashboard(c, brief, gita).await);
                assert_eq!(&d, jaipur, "{d}");
                stats_reads(brief).await > before
            }
        },
    )
    .await;
    assert!(answers(&brief, "stats").await > asked);
}

#[tokio::test]
async fn a_cut_stream_sends_reads_to_stats_and_with_stats_down_they_fail_not_answer_old_figures() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.dashboard_snapshot_max_age_ms = 60_000;
    })
    .await;
    let c = Client::new();
    let admin = http_token(&c, &gw, "admin", ADMIN_PASSWORD).await;
    scan(
        &c,
        &gw,
        &admin,
        "/api/v1/scans/parent",
        json!({"qr": "SB86001", "area": "hisar"}),
    )
    .await;
    eventually(Duration::from_secs(30), "a read from memory", || {
        let (c, gw, admin) = (&c, &gw, &admin);
        async move {
            let before = answers(gw, "memory").await;
            let d = dashboard(c, gw, admin).await;
            d["parents"] == 1 && answers(gw, "memory").await > before
        }
    })
    .await;

    // stats stops: its stream ends, the snapshot is forgotten, reads fail as documented.
    stats.stop().await.unwrap();
    eventually(Duration::from_secs(30), "reads answer unavailable", || {
        let (c, gw, admin) = (&c, &gw, &admin);
        async move {
            let r = c
                .get(gw.url("/api/v1/stats/dashboard"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            r.status() == StatusCode::SERVICE_UNAVAILABLE
        }
    })
    .await;
    let remembered = answers(&gw, "memory").await;
    for _ in 0..3 {
        let r = c
            .get(gw.url("/api/v1/stats/dashboard"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        problem(r, 503, "unavailable").await;
    }
    assert_eq!(answers(&gw, "memory").await, remembered, "no old figures");
}
