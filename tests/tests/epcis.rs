//! The EPCIS 2.0 export (`GET /api/v1/exports/epcis`): a known scenario (register a parent, link 30
//! children, undo one, attach the parent to a bill, detach it) exports as an `EPCISDocument` that
//! validates against GS1's JSON Schema with URI and date-time format checking on, holds the
//! expected events in order with the same event ids every time, filters by time, pages the same
//! at any page size, shows a later move as unpacking then packing, and is admin-only.
//!
//! The schema is validated by `tests/python/validate_epcis.py` in the project venv (jsonschema
//! with its format extras), against the copy in `tests/fixtures/epcis/`; the validator is first
//! shown to accept GS1's official examples and to reject broken documents, so the check cannot
//! pass vacuously.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::stats::v1 as pb;
use tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient;
use tracetrack_tests::*;

const PARENT: &str = "SB70001";
const BILL: &str = "TRUCK 70 A";
const CHILDREN: usize = 30;
/// 1 parent commissioning + 30 × (child commissioning + packing) + 1 unpacking + attach + detach.
const EXPECTED: usize = 1 + 2 * CHILDREN + 1 + 2;

fn child(i: usize) -> String {
    format!("EP{:05}", 70_000 + i)
}

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/epcis")
}

async fn post(c: &Client, gw: &Gateway, token: &str, path: &str, body: Value) -> Value {
    let r = send_json(c, reqwest::Method::POST, gw.url(path), token, &body).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

/// The export as (status, content type, body).
async fn export(
    c: &Client,
    gw: &Gateway,
    token: &str,
    query: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let r = c
        .get(gw.url("/api/v1/exports/epcis"))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if status == StatusCode::OK {
        assert!(
            r.content_length().is_none(),
            "the document is streamed (chunked), not buffered"
        );
    }
    (status, ct, r.text().await.unwrap())
}

/// Polls the export until it holds `n` events (stats applies events asynchronously); the document.
async fn wait_for_doc(c: &Client, gw: &Gateway, token: &str, n: usize) -> String {
    let start = std::time::Instant::now();
    loop {
        let (status, ct, body) = export(c, gw, token, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ct, "application/ld+json");
        let got = events(&body).len();
        assert!(got <= n, "more events than the scenario made: {body}");
        if got == n {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "stats did not receive every event: {got} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(c: &Client, gw: &Gateway, token: &str, n: usize) -> Vec<Value> {
    events(&wait_for_doc(c, gw, token, n).await)
}

fn events(doc: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(doc).unwrap_or_else(|e| panic!("not JSON ({e}): {doc}"));
    v["epcisBody"]["eventList"].as_array().unwrap().clone()
}

fn bag(qr: &str) -> String {
    format!("urn:tracetrack:bag:{qr}")
}

/// (type, action, bizStep, parentID or the first EPC)
fn shape(e: &Value) -> (String, String, String, String) {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let who = e["parentID"]
        .as_str()
        .or_else(|| e["epcList"][0].as_str())
        .unwrap_or_default()
        .to_owned();
    (s("type"), s("action"), s("bizStep"), who)
}

#[tokio::test]
async fn the_validator_accepts_the_official_examples_and_rejects_broken_documents() {
    // The fixture copies are GS1's files, unchanged (when the shared copy is at hand).
    let shared = repo_root().join("../shared/epcis");
    if shared.is_dir() {
        for f in [
            "EPCIS-JSON-Schema.json",
            "examples/Example_9.6.1-ObjectEvent.jsonld",
            "examples/Example_9.6.3-AggregationEvent.jsonld",
            "examples/transaction_event_all_possible_fields.jsonld",
        ] {
            assert_eq!(
                std::fs::read(fixtures().join(f)).unwrap(),
                std::fs::read(shared.join(f)).unwrap(),
                "{f} differs from ../shared/epcis"
            );
        }
    }
    let examples: Vec<PathBuf> = std::fs::read_dir(fixtures().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(examples.len(), 3);
    let refs: Vec<&Path> = examples.iter().map(PathBuf::as_path).collect();
    let (code, out) = validate_epcis(&refs);
    assert_eq!(code, 0, "official examples must validate:\n{out}");

    // Each of these is invalid only with format checking on, or only by one field.
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("examples/Example_9.6.3-AggregationEvent.jsonld"))
            .unwrap(),
    )
    .unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut d = example.clone();
        edit(&mut d);
        d.to_string()
    };
    let dir = std::env::temp_dir().join(format!("tt-epcis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        // Not in the CBV list and not a URI: passes without a `uri` format checker.
        (
            "bizstep.json",
            broken(&|d| d["epcisBody"]["eventList"][0]["bizStep"] = json!("bagging")),
        ),
        // An unencoded space: a URI only to validators that do not check the format.
        (
            "child.json",
            broken(&|d| {
                d["epcisBody"]["eventList"][0]["childEPCs"][0] = json!("urn:tracetrack:bag:A B")
            }),
        ),
        (
            "time.json",
            broken(&|d| d["epcisBody"]["eventList"][0]["eventTime"] = json!("yesterday")),
        ),
        (
            "action.json",
            broken(&|d| d["epcisBody"]["eventList"][0]["action"] = json!("PACK")),
        ),
        (
            "no-offset.json",
            broken(&|d| {
                d["epcisBody"]["eventList"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("eventTimeZoneOffset");
            }),
        ),
    ];
    let paths: Vec<PathBuf> = cases
        .iter()
        .map(|(name, doc)| {
            let path = dir.join(name);
            std::fs::write(&path, doc).unwrap();
            path
        })
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let (code, out) = validate_epcis(&refs);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        code, 1,
        "broken documents must be rejected (1 = invalid):\n{out}"
    );
    for (name, _) in &cases {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("/{name}: INVALID"))),
            "{name} must be rejected:\n{out}"
        );
    }
}

#[tokio::test]
async fn the_export_of_a_known_scenario_validates_and_holds_the_events_in_order() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let billing = stack.billings[0].url();
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.billing_url = billing;
        // 30 child scans by one user back to back can pass the per-user limit (30/s) on a fast
        // machine; the limits have their own tests in gateway.rs.
        s.rate_limits.enabled = false;
    })
    .await;
    let c = Client::new();
    let admin = stack.admin.clone();

    // Register a parent, link 30 children, undo one, attach the parent to a bill, detach it.
    post(
        &c,
        &gw,
        &admin,
        "/api/v1/scans/parent",
        json!({"qr": PARENT, "area": "lucknow"}),
    )
    .await;
    for i in 1..=CHILDREN {
        post(
            &c,
            &gw,
            &admin,
            "/api/v1/scans/child",
            json!({"parent_qr": PARENT, "child_qr": child(i)}),
        )
        .await;
    }
    let undo = post(
        &c,
        &gw,
        &admin,
        "/api/v1/scans/undo",
        json!({"parent_qr": PARENT}),
    )
    .await;
    assert_eq!(undo["unlinked_child_qr"], child(CHILDREN));
    post(
        &c,
        &gw,
        &admin,
        "/api/v1/bills",
        json!({"bill_id": BILL, "capacity": 5}),
    )
    .await;
    let bill_path = "/api/v1/bills/TRUCK%2070%20A/parents";
    post(&c, &gw, &admin, bill_path, json!({"parent_qr": PARENT})).await;
    let r = c
        .delete(gw.url(&format!("{bill_path}/{PARENT}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "detach: {}", r.status());

    // stats applies the events asynchronously: wait until the detach has arrived.
    let doc = wait_for_doc(&c, &gw, &admin, EXPECTED).await;

    // Valid against GS1's schema, with format checking.
    let (code, out) = validate_epcis_text("export.jsonld", &doc);
    assert_eq!(code, 0, "the export must validate:\n{out}\n{doc}");

    let head: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        head["@context"],
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    );
    assert_eq!(head["type"], "EPCISDocument");
    assert_eq!(head["schemaVersion"], "2.0");

    // The expected events, in order.
    let list = events(&doc);
    let mut want = vec![(
        "ObjectEvent".to_owned(),
        "ADD".to_owned(),
        "commissioning".to_owned(),
        bag(PARENT),
    )];
    for i in 1..=CHILDREN {
        want.push((
            "ObjectEvent".into(),
            "ADD".into(),
            "commissioning".into(),
            bag(&child(i)),
        ));
        want.push((
            "AggregationEvent".into(),
            "ADD".into(),
            "packing".into(),
            bag(PARENT),
        ));
    }
    want.push((
        "AggregationEvent".into(),
        "DELETE".into(),
        "unpacking".into(),
        bag(PARENT),
    ));
    want.push((
        "TransactionEvent".into(),
        "ADD".into(),
        "loading".into(),
        bag(PARENT),
    ));
    want.push((
        "TransactionEvent".into(),
        "DELETE".into(),
        "unloading".into(),
        bag(PARENT),
    ));
    let got: Vec<_> = list.iter().map(shape).collect();
    assert_eq!(got, want);
    for i in 1..=CHILDREN {
        assert_eq!(list[2 * i]["childEPCs"], json!([bag(&child(i))]));
        assert_eq!(list[2 * i - 1]["disposition"], "active");
    }
    assert_eq!(
        list[EXPECTED - 3]["childEPCs"],
        json!([bag(&child(CHILDREN))])
    );
    for tx in &list[EXPECTED - 2..] {
        assert_eq!(
            tx["bizTransactionList"],
            json!([{"type": "bol", "bizTransaction": "urn:tracetrack:bill:TRUCK%2070%20A"}])
        );
        assert_eq!(tx["epcList"], json!([bag(PARENT)]));
    }
    for e in &list {
        assert_eq!(e["eventTimeZoneOffset"], "+05:30", "{e}");
        assert!(e["eventID"].as_str().unwrap().starts_with("urn:uuid:"));
    }
    assert_eq!(list[0]["bizLocation"]["id"], "urn:tracetrack:area:lucknow");
    // Ordered by event time; ids unique.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = list
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["eventTime"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let mut ids: Vec<&str> = list
        .iter()
        .map(|e| e["eventID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), EXPECTED);

    // A second export: the same events with the same ids.
    let (_, _, again) = export(&c, &gw, &admin, &[]).await;
    assert_eq!(events(&again), list);

    // Any page size gives the same sequence (keyset pages in stats).
    let mut client =
        StatsServiceClient::new(Channel::from_shared(stats.url()).unwrap().connect_lazy());
    let mut stream = client
        .export_epcis_events(authed(
            pb::ExportEpcisEventsRequest {
                page_size: 7,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut paged = Vec::new();
    let mut messages = 0;
    while let Some(m) = stream.message().await.unwrap() {
        messages += 1;
        paged.extend(
            m.events_json
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).unwrap()),
        );
    }
    assert!(messages > 1, "page_size 7 must take several pages");
    assert_eq!(paged, list);

    // from / to: from is inclusive, to exclusive.
    let attach = list[EXPECTED - 2]["eventTime"].as_str().unwrap().to_owned();
    let (status, _, body) = export(&c, &gw, &admin, &[("from", attach.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&body), list[EXPECTED - 2..].to_vec());
    let (_, _, body) = export(&c, &gw, &admin, &[("to", attach.as_str())]).await;
    assert_eq!(events(&body), list[..EXPECTED - 2].to_vec());
    let first = list[0]["eventTime"].as_str().unwrap().to_owned();
    let (_, _, body) = export(
        &c,
        &gw,
        &admin,
        &[("from", first.as_str()), ("to", attach.as_str())],
    )
    .await;
    assert_eq!(events(&body), list[..EXPECTED - 2].to_vec());
    // An empty window is still a valid document.
    let (_, _, empty) = export(&c, &gw, &admin, &[("to", "1960-01-01T00:00:00Z")]).await;
    assert!(events(&empty).is_empty());
    let (code, out) = validate_epcis_text("empty.jsonld", &empty);
    assert_eq!(code, 0, "{out}");

    // Bad input is a 400 with a stable code, never a 500.
    for q in [[("from", "yesterday")], [("to", "2024-13-01T00:00:00Z")]] {
        let (status, ct, body) = export(&c, &gw, &admin, &q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q:?}: {body}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["code"],
            "invalid_argument"
        );
    }
    let (status, _, body) = export(
        &c,
        &gw,
        &admin,
        &[("from", attach.as_str()), ("to", first.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "invalid_argument"
    );

    // A move is an unpacking from the old parent, then a packing into the new.
    post(
        &c,
        &gw,
        &admin,
        "/api/v1/scans/parent",
        json!({"qr": "SB70002", "area": "lucknow"}),
    )
    .await;
    post(
        &c,
        &gw,
        &admin,
        &format!("/api/v1/bags/{}/move", child(1)),
        json!({"parent_qr": "SB70002"}),
    )
    .await;
    let after = wait_for(&c, &gw, &admin, EXPECTED + 3).await;
    assert_eq!(after[..EXPECTED], list[..]);
    let moved: Vec<_> = after[EXPECTED..].iter().map(shape).collect();
    assert_eq!(
        moved,
        [
            (
                "ObjectEvent".to_owned(),
                "ADD".to_owned(),
                "commissioning".to_owned(),
                bag("SB70002")
            ),
            (
                "AggregationEvent".into(),
                "DELETE".into(),
                "unpacking".into(),
                bag(PARENT)
            ),
            (
                "AggregationEvent".into(),
                "ADD".into(),
                "packing".into(),
                bag("SB70002")
            ),
        ]
    );
    for e in &after[EXPECTED + 1..] {
        assert_eq!(e["childEPCs"], json!([bag(&child(1))]));
    }

    // Admin only.
    let (_, dispatcher) = stack.user("epcis_disp", Role::Dispatcher, "lucknow").await;
    let (status, ct, body) = export(&c, &gw, &dispatcher, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "permission_denied"
    );
    let r = c.get(gw.url("/api/v1/exports/epcis")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
