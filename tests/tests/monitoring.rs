//! The Grafana dashboard (deploy/k8s/monitoring/grafana-dashboard.json) and the alert rules
//! (prometheusrule.yaml) against what the processes really export: every PromQL expression parses
//! (promql-parser, after Grafana's variables are given values) and every metric it selects is on
//! the `/metrics` of some process of a stack that has served some traffic — gRPC through every
//! service, HTTP through the gateway, events through the relays to stats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_tests::*;

/// Grafana's variables, given values so the expression is plain PromQL.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
}

/// The metric names an expression selects (from the parsed tree, not a regex over the text).
fn selected(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(a) => {
            selected(&a.expr, out);
            if let Some(p) = &a.param {
                selected(p, out);
            }
        }
        Expr::Unary(u) => selected(&u.expr, out),
        Expr::Binary(b) => {
            selected(&b.lhs, out);
            selected(&b.rhs, out);
        }
        Expr::Paren(p) => selected(&p.expr, out),
        Expr::Subquery(s) => selected(&s.expr, out),
        Expr::VectorSelector(v) => out.extend(v.name.clone()),
        Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selected(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// (where, expression) for every query of the dashboard: panel targets, and the metric of the
/// namespace variable's `label_values(metric, label)`.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/k8s/monitoring/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(d["uid"], "tracetrack");
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        let title = p["title"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target has an expr");
            out.push((
                format!("panel {title:?} target {}", t["refId"]),
                expr.into(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split_once(','))
                .map(|(m, _)| m.trim())
                .expect("variables use label_values(metric, label)");
            out.push((format!("variable {}", v["name"]), inner.to_owned()));
        }
    }
    assert!(
        out.len() > 20,
        "the dashboard has its panels: {}",
        out.len()
    );
    out
}

/// (alert, expression) for every rule of the PrometheusRule.
fn alert_queries() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/k8s/monitoring/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let mut out = Vec::new();
    for g in doc["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((
                format!("alert {name}"),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(out.len() >= 9, "the rules are read: {}", out.len());
    out
}

/// The metric names on a `/metrics` page; a histogram's series as `_bucket`, `_sum`, `_count`.
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Resolves every name to 127.0.0.1.
struct Loopback;

#[async_trait::async_trait]
impl tracetrack_common::client::Resolve for Loopback {
    async fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
    }
}

#[tokio::test]
async fn every_dashboard_and_alert_expression_parses_and_names_an_exported_metric() {
    // Parse first: no stack needed to find a syntax error.
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut used_by: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (what, expr) in dashboard_queries().into_iter().chain(alert_queries()) {
        let parsed = parser::parse(&substitute(&expr))
            .unwrap_or_else(|e| panic!("{what}: {expr:?} does not parse: {e}"));
        let mut names = BTreeSet::new();
        selected(&parsed, &mut names);
        assert!(!names.is_empty(), "{what}: selects no metric: {expr}");
        wanted.extend(names.iter().cloned());
        used_by.push((what, names));
    }
    // The pool metrics and the lag the issue asks the dashboard for are among them.
    for m in [
        "db_pool_connections",
        "db_pool_max_connections",
        "db_pool_acquire_timeouts_total",
        "consumer_lag_events",
        "outbox_group_lag",
        "grpc_server_handled_total",
        "http_requests_total",
        "gateway_rate_limited_total",
        "grpc_server_shed_total",
    ] {
        assert!(wanted.contains(m), "the dashboard shows {m}");
    }

    // A stack with traffic: logins over HTTP, scans, a bill, events to stats.
    let s = BillingStack::start(1, 1).await;
    let stats = s.start_stats(&redis_url()).await;
    // The registry by name, as a headless Service on Kubernetes (the name resolved by the test):
    // the gateway's channel to it is the discovered one (grpc_client_endpoints).
    tracetrack_common::client::set_resolver(std::sync::Arc::new(Loopback));
    let registry_port = s.registries[0].addr.port();
    let gw = Gateway::start(&s, |g| {
        g.registry_url = format!("http://bag-registry.test:{registry_port}");
    })
    .await;
    let client = reqwest::Client::new();
    let token = http_token(&client, &gw, "admin", ADMIN_PASSWORD).await;
    // A live view open while the metrics are read (gateway_sse_clients).
    let live = client
        .get(gw.url("/api/v1/scans/live"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let url = gw.url("/api/v1/scans/parent");
    let body = serde_json::json!({"qr": "SB71002", "area": "indore"});
    send_json(&client, reqwest::Method::POST, url, &token, &body).await;
    let r = http_login(&client, &gw, "admin", "wrong-password").await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    s.scan_parent(&ravi, "SB71001", "").await.unwrap();
    s.scan_child(&ravi, "SB71001", "MON0001").await.unwrap();
    let req = pb::CreateBillRequest {
        bill_id: "MON-1".into(),
        capacity: 2,
        ..Default::default()
    };
    s.open_bill(&bina, req, &["SB71001".into()]).await;

    let admins = [
        s.auth.admin_addr,
        s.registries[0].admin_addr,
        s.scan.admin_addr,
        s.billings[0].admin_addr,
        stats.admin_addr,
        gw.admin_addr,
    ];
    // Gauges are set by loops (pools every second, lag every few): poll until all are there.
    let start = Instant::now();
    let missing = loop {
        let mut have = BTreeSet::new();
        for a in admins {
            have.extend(exported(&http_get(a, "/metrics").await));
        }
        let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let offenders: Vec<String> = used_by
        .iter()
        .filter(|(_, names)| names.iter().any(|n| missing.contains(&n)))
        .map(|(what, names)| format!("{what} uses {names:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics no process exports: {missing:?}\n{}",
        offenders.join("\n")
    );

    // Pool gauges say something true: auth's pool has a connection, within its maximum.
    let page = http_get(s.auth.admin_addr, "/metrics").await;
    let value = |series: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} on /metrics"))
    };
    let max = value("db_pool_max_connections{service=\"auth\"}");
    let idle = value("db_pool_connections{service=\"auth\",state=\"idle\"}");
    let in_use = value("db_pool_connections{service=\"auth\",state=\"in_use\"}");
    assert!(
        max >= 1.0 && idle + in_use >= 1.0 && idle + in_use <= max,
        "{max} {idle} {in_use}"
    );
}
