//! Bill workbooks (issue 16 §3): `POST /api/v1/imports/bills` creates each bill that does not
//! exist and attaches its parents through billing's AttachParents (the attach saga in bulk:
//! one ClaimParents call to bag-registry per bill), reporting every refused row with its code.
//! Real stack: auth, bag-registry, scan and billing on Postgres and Redis, and the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use calamine::Reader;
use reqwest::{Client, Method, StatusCode};
use rust_xlsxwriter::Workbook;
use serde_json::{json, Value};
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Parents (and children: `(child, parent)`) straight through bag-registry's ImportBags.
async fn seed(s: &BillingStack, parents: &[String], children: &[(&str, &str)]) {
    let mut bags: Vec<reg::ImportBag> = parents
        .iter()
        .map(|p| reg::ImportBag {
            qr: p.clone(),
            r#type: reg::BagType::Parent as i32,
            area: "lucknow".into(),
            parent_qr: String::new(),
        })
        .collect();
    bags.extend(children.iter().map(|(c, p)| reg::ImportBag {
        qr: (*c).into(),
        r#type: reg::BagType::Child as i32,
        area: "lucknow".into(),
        parent_qr: (*p).into(),
    }));
    let mut registry = s.registry_client();
    let outcome = tracetrack_dataio::import::send_bags(&mut registry, &s.admin, bags, 5000, |_| {})
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
}

/// One sheet's rows: column A, column B, then columns C.. of a Bill row.
enum Row<'a> {
    Header,
    Parent(&'a str),
    /// Column A as given (a label-less row, e.g. no serial number).
    Raw(&'a str, &'a str),
    Bill(&'a str, &'a [&'a str]),
}

fn book(sheets: &[(&str, Vec<Row>)]) -> Vec<u8> {
    let mut wb = Workbook::new();
    for (name, rows) in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(*name).unwrap();
        let mut serial = 0;
        for (r, row) in rows.iter().enumerate() {
            let r = r as u32;
            match row {
                Row::Header => {
                    ws.write_string(r, 0, "Sr. No.").unwrap();
                    ws.write_string(r, 1, "QR Code").unwrap();
                }
                Row::Parent(qr) => {
                    serial += 1;
                    ws.write_number(r, 0, f64::from(serial)).unwrap();
                    ws.write_string(r, 1, *qr).unwrap();
                }
                Row::Raw(a, b) => {
                    ws.write_string(r, 0, *a).unwrap();
                    ws.write_string(r, 1, *b).unwrap();
                }
                Row::Bill(id, more) => {
                    ws.write_string(r, 0, "Bill").unwrap();
                    ws.write_string(r, 1, *id).unwrap();
                    for (c, v) in more.iter().enumerate() {
                        ws.write_string(r, 2 + c as u16, *v).unwrap();
                    }
                }
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

async fn upload(
    c: &Client,
    gw: &Gateway,
    token: &str,
    query: &str,
    body: &[u8],
) -> reqwest::Response {
    c.post(gw.url(&format!("/api/v1/imports/bills{query}")))
        .bearer_auth(token)
        .header("content-type", XLSX)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn bill(c: &Client, gw: &Gateway, token: &str, id: &str) -> Value {
    get_json(c, gw.url(&format!("/api/v1/bills/{id}")), token).await
}

#[tokio::test]
async fn a_2000_parent_workbook_imports_and_a_rerun_changes_nothing() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| {
        g.billing_url = billing.clone();
        g.rate_limits.enabled = false;
    })
    .await;
    let c = Client::new();
    let parents: Vec<String> = (0..2000).map(|i| format!("SB{:05}", 20000 + i)).collect();
    seed(
        &s,
        &parents,
        &[
            ("BI0001", "SB20000"),
            ("BI0002", "SB20000"),
            ("BI0003", "SB20001"),
        ],
    )
    .await;
    // Four trucks of 500, one per sheet; the first says where it goes.
    let trucks: Vec<String> = (1..=4).map(|t| format!("IMP-TRK-{t}")).collect();
    let names: Vec<String> = (1..=4).map(|t| format!("Truck {t}")).collect();
    let sheets: Vec<(&str, Vec<Row>)> = (0..4)
        .map(|t| {
            let mut rows = vec![Row::Header];
            rows.extend(
                parents[t * 500..(t + 1) * 500]
                    .iter()
                    .map(|p| Row::Parent(p)),
            );
            let more: &[&str] = if t == 0 {
                &["", "Jaipur", "RJ14 GA 1234"]
            } else {
                &[]
            };
            rows.push(Row::Bill(&trucks[t], more));
            (names[t].as_str(), rows)
        })
        .collect();
    let body = book(&sheets);

    let started = Instant::now();
    let r = upload(&c, &gw, &bina, "", &body).await;
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    eprintln!("@@bill_import 2,000 parents on 4 new bills through the API: {took:?}");
    assert_eq!(report["bills_in_file"], 4, "{report:#}");
    assert_eq!(report["parents_in_file"], 2000);
    assert_eq!(report["bills_created"], 4);
    assert_eq!(report["attached"], 2000);
    assert_eq!(report["already_attached"], 0);
    assert_eq!(report["rejected"], 0, "{:#}", report["problems"]);
    assert_eq!(report["nothing_changed"], false);
    for (t, b) in report["bills"].as_array().unwrap().iter().enumerate() {
        assert_eq!(b["bill_id"], trucks[t].as_str());
        assert_eq!(
            (b["created"].as_bool(), b["attached"].as_u64()),
            (Some(true), Some(500))
        );
        assert_eq!(
            (b["sheet"].as_str(), b["row"].as_u64()),
            (Some(names[t].as_str()), Some(502))
        );
    }

    // Every parent is on its bill, in billing and in bag-registry, with the figures right.
    for (t, id) in trucks.iter().enumerate() {
        let b = bill(&c, &gw, &bina, id).await;
        assert_eq!(b["status"], "processing", "{b}");
        assert_eq!(
            (b["capacity"].as_i64(), b["parent_count"].as_i64()),
            (Some(500), Some(500))
        );
        assert_eq!(b["expected_weight_kg"].as_f64(), Some(500.0 * 30.0));
        let children = if t == 0 { 3 } else { 0 };
        assert_eq!(b["child_count"].as_i64(), Some(children), "{id}");
        assert_eq!(b["actual_weight_kg"].as_f64(), Some(children as f64));
        assert_eq!(b["parents"].as_array().unwrap().len(), 500);
    }
    let first = bill(&c, &gw, &bina, "IMP-TRK-1").await;
    assert_eq!(
        (
            first["destination"].as_str(),
            first["vehicle_number"].as_str()
        ),
        (Some("Jaipur"), Some("RJ14 GA 1234"))
    );
    let on = db_i64(
        s.registry_pool(),
        "SELECT count(*) FROM registry.bags WHERE qr LIKE 'SB2%' AND bill_id LIKE 'IMP-TRK-%'",
    )
    .await;
    assert_eq!(on, 2000);
    assert_eq!(s.bag(&bina, "SB21999").await.unwrap().bill_id, "IMP-TRK-4");
    // One attach event per parent, as scans write them (audit, history and dashboard read these).
    let events = db_i64(
        s.billing_pool(),
        "SELECT count(*) FROM billing.outbox WHERE event_type = 'billing.parent_attached' \
           AND aggregate_id LIKE 'IMP-TRK-%'",
    )
    .await;
    assert_eq!(events, 2000);
    let claimed = db_i64(
        s.registry_pool(),
        "SELECT count(*) FROM registry.outbox WHERE event_type = 'registry.parent_claimed'",
    )
    .await;
    assert_eq!(claimed, 2000);

    // Again: nothing changes, and the report says so.
    let started = Instant::now();
    let r = upload(&c, &gw, &bina, "", &body).await;
    eprintln!(
        "@@bill_import the same workbook again: {:?}",
        started.elapsed()
    );
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["nothing_changed"], true, "{again:#}");
    assert_eq!(again["bills_created"], 0);
    assert_eq!(again["bills_existing"], 4);
    assert_eq!(again["attached"], 0);
    assert_eq!(again["already_attached"], 2000);
    assert_eq!(again["rejected"], 0);
    let events_after = db_i64(
        s.billing_pool(),
        "SELECT count(*) FROM billing.outbox WHERE event_type = 'billing.parent_attached' \
           AND aggregate_id LIKE 'IMP-TRK-%'",
    )
    .await;
    assert_eq!(events_after, 2000);

    // The result workbook of a re-run: every row already on its bill.
    let r = upload(&c, &gw, &bina, "?result=xlsx", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], XLSX);
    let mut wb = result_book(r.bytes().await.unwrap().to_vec());
    assert_eq!(wb.sheet_names(), ["Summary", "Done", "Problems"]);
    assert_eq!(result_summary(&mut wb, "Nothing changed"), "yes");
    assert_eq!(
        result_summary(&mut wb, "Already on their bill (unchanged)"),
        "2000"
    );
    let done = result_rows(&mut wb, "Done");
    assert_eq!(done.len(), 2004);
    assert_eq!(
        done.iter()
            .filter(|r| r[3] == "already on this bill")
            .count(),
        2000
    );
    assert_eq!(done.iter().filter(|r| r[3] == "bill (existing)").count(), 4);
    assert!(result_rows(&mut wb, "Problems").is_empty());
}

#[tokio::test]
async fn bad_rows_are_reported_with_their_codes_and_the_good_ones_land() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| {
        g.billing_url = billing.clone();
        g.rate_limits.enabled = false;
    })
    .await;
    let c = Client::new();
    let parents: Vec<String> = (1..=9).map(|i| format!("SB{:05}", 30000 + i)).collect();
    seed(&s, &parents, &[("CH3001", "SB30009")]).await;
    // SB30005 is on another bill already; PRE-1 exists with its own capacity and destination.
    for (id, cap, dest) in [("OTHER-1", 1, "Agra"), ("PRE-1", 5, "Kanpur")] {
        let r = send_json(
            &c,
            Method::POST,
            gw.url("/api/v1/bills"),
            &bina,
            &json!({"bill_id": id, "capacity": cap, "destination": dest}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = send_json(
        &c,
        Method::POST,
        gw.url("/api/v1/bills/OTHER-1/parents"),
        &bina,
        &json!({"parent_qr": "SB30005"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let body = book(&[
        (
            "Load",
            vec![
                Row::Header,
                Row::Parent("SB30001"),
                Row::Parent("SB39999"),  // row 3: unknown
                Row::Parent("CH3001"),   // row 4: a child's QR
                Row::Parent("SB30005"),  // row 5: on OTHER-1
                Row::Parent("SB<torn>"), // row 6: not a QR
                Row::Parent("SB30002"),
                Row::Parent("sb30001"), // row 8: again
                Row::Bill("NEW-1", &[]),
                // A capacity of 2 for three good parents: the third is bill_full.
                Row::Parent("SB30003"),
                Row::Parent("SB30004"),
                Row::Parent("SB30006"), // row 12: no place left
                Row::Bill("NEW-2", &["2", "Delhi"]),
            ],
        ),
        (
            "Existing",
            vec![
                Row::Parent("SB30007"),
                Row::Raw("", "SB30008"),
                Row::Bill("pre-1", &["9", "Pune"]),
                Row::Parent("SB30009"),
                Row::Bill("BAD/ID", &[]), // row 5: not a bill id
            ],
        ),
    ]);

    // A dispatcher may not import bills.
    let r = upload(&c, &gw, &ravi, "", &body).await;
    problem(r, 403, "permission_denied").await;
    // A dry run writes nothing.
    let r = upload(&c, &gw, &bina, "?dry_run=true", &body).await;
    let dry: Value = r.json().await.unwrap();
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["bills_in_file"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(dry["bills_created"], 0);
    problem(
        c.get(gw.url("/api/v1/bills/NEW-1"))
            .bearer_auth(&bina)
            .send()
            .await
            .unwrap(),
        404,
        "bill_not_found",
    )
    .await;

    let r = upload(&c, &gw, &bina, "", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    let got: BTreeSet<(String, u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sheet"].as_str().unwrap().to_owned(),
                p["row"].as_u64().unwrap(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, u64, String)> = [
        ("Load", 3, "bag_not_found"),
        ("Load", 4, "not_a_parent"),
        ("Load", 5, "on_other_bill"),
        ("Load", 6, "invalid_qr"),
        ("Load", 8, "invalid_argument"),
        ("Load", 12, "bill_full"),
        ("Existing", 5, "invalid_argument"),
    ]
    .into_iter()
    .map(|(s, r, c)| (s.to_owned(), r, c.to_owned()))
    .collect();
    assert_eq!(got, want, "{:#}", report["problems"]);
    let other = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "on_other_bill")
        .unwrap();
    assert_eq!(other["other_bill_id"], "OTHER-1");
    assert_eq!(other["value"], "SB30005");
    assert!(other["message"].as_str().unwrap().contains("OTHER-1"));
    assert_eq!(report["bills_created"], 2);
    assert_eq!(report["bills_existing"], 1);
    assert_eq!(report["attached"], 6, "{report:#}");
    assert_eq!(report["rejected"], 7);

    // The good rows landed: NEW-1 holds the two good parents of its rows (its capacity: its five
    // parent rows that are QRs, the refused ones too), NEW-2 two of three, PRE-1 kept its
    // capacity and destination.
    let b = bill(&c, &gw, &bina, "NEW-1").await;
    assert_eq!(
        (b["capacity"].as_i64(), b["parent_count"].as_i64()),
        (Some(5), Some(2)),
        "{b}"
    );
    let qrs: BTreeSet<&str> = b["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["qr"].as_str().unwrap())
        .collect();
    assert_eq!(qrs, BTreeSet::from(["SB30001", "SB30002"]));
    let b = bill(&c, &gw, &bina, "NEW-2").await;
    assert_eq!(
        (
            b["capacity"].as_i64(),
            b["parent_count"].as_i64(),
            b["destination"].as_str()
        ),
        (Some(2), Some(2), Some("Delhi"))
    );
    let b = bill(&c, &gw, &bina, "PRE-1").await;
    assert_eq!(
        (
            b["capacity"].as_i64(),
            b["parent_count"].as_i64(),
            b["destination"].as_str()
        ),
        (Some(5), Some(2), Some("Kanpur")),
        "{b}"
    );
    assert_eq!(s.bag(&bina, "SB30005").await.unwrap().bill_id, "OTHER-1");
    assert_eq!(s.bag(&bina, "SB30009").await.unwrap().bill_id, "");
    assert_eq!(s.bag(&bina, "SB30006").await.unwrap().bill_id, "");

    // Again: the same refusals, nothing new.
    let r = upload(&c, &gw, &bina, "", &body).await;
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["nothing_changed"], true, "{again:#}");
    assert_eq!(again["already_attached"], 6);
    assert_eq!(again["rejected"], 7);
}

fn with_key<T>(mut req: tonic::Request<T>, key: &str) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("idempotency-key", key.parse().unwrap());
    req
}

#[tokio::test]
async fn attach_parents_replays_under_its_key_and_keeps_the_role_rules() {
    use tracetrack_domain::ErrorCode;
    use tracetrack_proto::billing::v1 as pb;

    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    let parents: Vec<String> = (1..=3).map(|i| format!("SB{:05}", 40000 + i)).collect();
    seed(&s, &parents, &[]).await;
    let mut b = s.billing();
    b.create_bill(authed(
        pb::CreateBillRequest {
            bill_id: "GRPC-1".into(),
            capacity: 3,
            ..Default::default()
        },
        &bina,
    ))
    .await
    .unwrap();
    let req = || pb::AttachParentsRequest {
        bill_id: "grpc-1".into(),
        parent_qrs: vec![
            "SB40001".into(),
            "sb40002".into(),
            "SB40001".into(),
            "SB40003".into(),
        ],
    };
    let outcome = |r: &pb::AttachParentsResponse| {
        r.results
            .iter()
            .map(|r| (r.attached, r.already_attached, r.code.clone()))
            .collect::<Vec<_>>()
    };
    let first = b
        .attach_parents(with_key(authed(req(), &bina), "k-1"))
        .await
        .unwrap()
        .into_inner();
    let attached = (true, false, String::new());
    let twice = (false, false, "invalid_argument".to_owned());
    assert_eq!(
        outcome(&first),
        [
            attached.clone(),
            attached.clone(),
            twice.clone(),
            attached.clone()
        ]
    );
    let bill = first.bill.as_ref().unwrap();
    assert_eq!(
        (bill.parent_count, bill.status),
        (3, pb::BillStatus::Processing as i32)
    );
    assert_eq!(bill.expected_weight_kg, 90.0);

    // The same key: the first answer again. A new key: every parent already on it.
    let replay = b
        .attach_parents(with_key(authed(req(), &bina), "k-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&replay), outcome(&first));
    let again = b
        .attach_parents(with_key(authed(req(), &bina), "k-2"))
        .await
        .unwrap()
        .into_inner();
    let already = (false, true, String::new());
    assert_eq!(
        outcome(&again),
        [already.clone(), already.clone(), twice, already]
    );
    let e = b
        .attach_parents(with_key(
            authed(
                pb::AttachParentsRequest {
                    bill_id: "GRPC-1".into(),
                    parent_qrs: vec!["SB40001".into()],
                },
                &bina,
            ),
            "k-1",
        ))
        .await;
    assert_eq!(code_of(e), ErrorCode::IdempotencyKeyReused);

    // Roles: a dispatcher may not; ClaimParents is billing's alone.
    assert_eq!(
        code_of(b.attach_parents(authed(req(), &ravi)).await),
        ErrorCode::PermissionDenied
    );
    let claim = || reg::ClaimParentsRequest {
        items: vec![reg::ClaimParentRequest {
            parent_qr: "SB40001".into(),
            bill_id: "GRPC-1".into(),
        }],
    };
    let mut r = s.registry_client();
    assert_eq!(
        code_of(r.claim_parents(authed(claim(), &bina)).await),
        ErrorCode::CallerNotAllowed
    );
    assert_eq!(
        code_of(
            r.claim_parents(s.as_service(claim(), Some(&bina), "scan"))
                .await
        ),
        ErrorCode::CallerNotAllowed
    );
    // Billing itself: one answer per item, the parent already this bill's.
    let answer = r
        .claim_parents(s.as_service(claim(), None, "billing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results.len(), 1);
    assert!(answer.results[0].already_claimed && answer.results[0].code.is_empty());
}

#[tokio::test]
async fn an_imports_attaches_reach_history_audit_and_dashboard_as_scans_do() {
    let s = BillingStack::start(1, 1).await;
    let stats = s.start_stats(&redis_url()).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| {
        g.billing_url = billing.clone();
        g.stats_url = stats.url();
        g.rate_limits.enabled = false;
    })
    .await;
    let c = Client::new();
    let parents: Vec<String> = (1..=12).map(|i| format!("SB{:05}", 50000 + i)).collect();
    seed(&s, &parents, &[]).await;
    let mut rows: Vec<Row> = parents.iter().map(|p| Row::Parent(p)).collect();
    rows.push(Row::Bill("EV-1", &[]));
    let r = upload(&c, &gw, &bina, "", &book(&[("S", rows)])).await;
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["attached"], 12, "{report:#}");

    // The bag's history, the audit trail and the dashboard, as after twelve attach scans.
    eventually(
        Duration::from_secs(30),
        "the attach in the bag's history",
        || async {
            let h = get_json(&c, gw.url("/api/v1/bags/SB50007/history"), &bina).await;
            let text = h.to_string();
            text.contains("billing.parent_attached") && text.contains("EV-1")
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "twelve attaches in the audit trail",
        || async {
            let a = get_json(
                &c,
                gw.url("/api/v1/audit?action=billing.parent_attached&page_size=200"),
                &s.admin,
            )
            .await;
            a["items"].as_array().map_or(0, Vec::len) == 12
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the bill processing on the dashboard",
        || async {
            let d = get_json(&c, gw.url("/api/v1/stats/dashboard"), &bina).await;
            d["bills_by_status"]["processing"].as_i64() == Some(1)
        },
    )
    .await;
}

#[tokio::test]
async fn two_imports_of_one_bill_at_once_attach_each_parent_once() {
    use tracetrack_proto::billing::v1 as pb;

    let s = BillingStack::start(1, 2).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let parents: Vec<String> = (1..=300).map(|i| format!("SB{:05}", 60000 + i)).collect();
    seed(&s, &parents, &[]).await;
    s.billing()
        .create_bill(authed(
            pb::CreateBillRequest {
                bill_id: "RACE-1".into(),
                capacity: 300,
                ..Default::default()
            },
            &bina,
        ))
        .await
        .unwrap();
    // Two replicas, two keys, the same parents (one list reversed): every parent ends on the
    // bill once, each answered attached by exactly one of them.
    let send = |i: usize, list: Vec<String>| {
        let mut b = s.billing_at(i);
        let token = bina.clone();
        async move {
            b.attach_parents(with_key(
                authed(
                    pb::AttachParentsRequest {
                        bill_id: "RACE-1".into(),
                        parent_qrs: list,
                    },
                    &token,
                ),
                &format!("race-{i}"),
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let mut reversed = parents.clone();
    reversed.reverse();
    let (a, b) = tokio::join!(send(0, parents.clone()), send(1, reversed));
    let mut attached = std::collections::BTreeMap::<String, usize>::new();
    for r in a.results.iter().chain(&b.results) {
        assert!(
            r.code.is_empty(),
            "{}: {} {}",
            r.parent_qr,
            r.code,
            r.message
        );
        assert!(r.attached || r.already_attached);
        if r.attached {
            *attached.entry(r.parent_qr.clone()).or_default() += 1;
        }
    }
    assert_eq!(attached.len(), 300);
    assert!(attached.values().all(|n| *n == 1));
    let (count, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM billing.attachments WHERE bill_id = 'RACE-1' AND state = 'confirmed'), \
                (SELECT count(*) FROM billing.outbox WHERE event_type = 'billing.parent_attached' AND aggregate_id = 'RACE-1')",
    )
    .fetch_one(s.billing_pool())
    .await
    .unwrap();
    assert_eq!((count, events), (300, 300));
}

/// Three imports into one already-open bill at once, over overlapping parents listed in
/// different orders (ascending, descending, interleaved), round after round on a fresh bill.
/// Each call answers every parent attached or already attached, and the bill ends holding the
/// union once. Two reservations of the same parents in opposite orders used to wait for each
/// other's insert and fail the whole call with `conflict` ("deadlock detected").
#[tokio::test]
async fn overlapping_imports_of_one_open_bill_in_any_order_never_deadlock() {
    use tracetrack_proto::billing::v1 as pb;

    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 150;
    let s = BillingStack::start(1, 2).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let all: Vec<String> = (1..=ROUNDS * PER_ROUND)
        .map(|i| format!("SB{:05}", 70000 + i))
        .collect();
    seed(&s, &all, &[]).await;
    // Every replica has met the caller (its Authenticate answer cached), so the calls of a
    // round reach their reservations together.
    for i in 0..2 {
        let req = pb::ListBillsRequest::default();
        s.billing_at(i)
            .list_bills(authed(req, &bina))
            .await
            .unwrap();
    }

    let mut failures = Vec::new();
    for (round, parents) in all.chunks(PER_ROUND).enumerate() {
        let bill = format!("OVERLAP-{round}");
        let req = pb::CreateBillRequest {
            bill_id: bill.clone(),
            capacity: 500,
            ..Default::default()
        };
        // Open, with the first two parents on it already.
        s.open_bill(&bina, req, &parents[..2]).await;
        let ascending = parents[..PER_ROUND * 2 / 3].to_vec();
        let descending: Vec<String> = parents[PER_ROUND / 3..].iter().rev().cloned().collect();
        let interleaved: Vec<String> = parents
            .iter()
            .skip(1)
            .step_by(2)
            .chain(parents.iter().step_by(2))
            .cloned()
            .collect();
        let send = |i: usize, list: Vec<String>| {
            let mut b = s.billing_at(i);
            let (token, bill) = (bina.clone(), bill.clone());
            async move {
                let req = pb::AttachParentsRequest {
                    bill_id: bill,
                    parent_qrs: list,
                };
                b.attach_parents(with_key(
                    authed(req, &token),
                    &format!("overlap-{round}-{i}"),
                ))
                .await
            }
        };
        let answers = tokio::join!(
            send(0, ascending),
            send(1, descending),
            send(2, interleaved)
        );
        let mut attached = std::collections::BTreeMap::<String, usize>::new();
        for answer in [answers.0, answers.1, answers.2] {
            let answer = match answer {
                Ok(a) => a.into_inner(),
                Err(status) => {
                    failures.push(format!(
                        "round {round}: {:?} {}",
                        AppError::from_status(&status).code,
                        status.message()
                    ));
                    continue;
                }
            };
            for r in &answer.results {
                assert!(
                    r.code.is_empty() && (r.attached || r.already_attached),
                    "round {round}: {}: {} {}",
                    r.parent_qr,
                    r.code,
                    r.message
                );
                if r.attached {
                    *attached.entry(r.parent_qr.clone()).or_default() += 1;
                }
            }
        }
        if failures
            .iter()
            .any(|f| f.starts_with(&format!("round {round}:")))
        {
            continue;
        }
        // The two opened with the bill were already attached; each of the others was
        // attached by exactly one of the calls.
        assert_eq!(attached.len(), PER_ROUND - 2, "round {round}");
        assert!(attached.values().all(|n| *n == 1), "round {round}");
        let (confirmed, parent_count, unsettled, events): (i64, i32, i32, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM billing.attachments WHERE bill_id = b.bill_id AND state = 'confirmed'), \
                    b.parent_count, b.unsettled_count, \
                    (SELECT count(*) FROM billing.outbox WHERE event_type = 'billing.parent_attached' AND aggregate_id = b.bill_id) \
               FROM billing.bills b WHERE b.bill_id = $1",
        )
        .bind(&bill)
        .fetch_one(s.billing_pool())
        .await
        .unwrap();
        let n = PER_ROUND as i64;
        assert_eq!(
            (confirmed, i64::from(parent_count), unsettled, events),
            (n, n, 0, n),
            "round {round}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} calls failed in {ROUNDS} rounds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
