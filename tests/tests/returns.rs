//! Returns (SPEC §1 "Returns (IPT)", issue 16 §1) through real gRPC: billing → bag-registry →
//! auth, with scan for the parents and children, on real Postgres and Redis. A return ticket
//! takes parents off completed bills; every refusal has its own code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_tests::*;

fn res<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, AppError> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| AppError::from_status(&s))
}

fn code<T: std::fmt::Debug>(r: Result<T, AppError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code,
    }
}

async fn create_bill(mut c: BillingClient, token: &str, id: &str, capacity: i32) {
    res(c
        .create_bill(authed(
            pb::CreateBillRequest {
                bill_id: id.into(),
                capacity,
                ..Default::default()
            },
            token,
        ))
        .await)
    .unwrap();
}

async fn attach(
    mut c: BillingClient,
    token: &str,
    bill: &str,
    parent: &str,
) -> Result<(), AppError> {
    res(c
        .attach_parent(authed(
            pb::AttachParentRequest {
                bill_id: bill.into(),
                parent_qr: parent.into(),
            },
            token,
        ))
        .await)
    .map(drop)
}

async fn complete(mut c: BillingClient, token: &str, bill: &str) {
    res(c
        .complete_bill(authed(
            pb::CompleteBillRequest {
                bill_id: bill.into(),
            },
            token,
        ))
        .await)
    .unwrap();
}

async fn get_bill(mut c: BillingClient, token: &str, bill: &str) -> pb::GetBillResponse {
    res(c
        .get_bill(authed(
            pb::GetBillRequest {
                bill_id: bill.into(),
            },
            token,
        ))
        .await)
    .unwrap()
}

async fn ticket(
    mut c: BillingClient,
    token: &str,
    area: &str,
) -> Result<pb::ReturnTicket, AppError> {
    res(c
        .create_return_ticket(authed(
            pb::CreateReturnTicketRequest {
                area: area.into(),
                notes: "dealer returns".into(),
            },
            token,
        ))
        .await)
    .map(|r| r.ticket.unwrap())
}

async fn give_back(
    mut c: BillingClient,
    token: &str,
    ticket: &str,
    parent: &str,
) -> Result<pb::ReturnParentResponse, AppError> {
    res(c
        .return_parent(authed(
            pb::ReturnParentRequest {
                ticket_id: ticket.into(),
                parent_qr: parent.into(),
            },
            token,
        ))
        .await)
}

async fn commit(
    mut c: BillingClient,
    token: &str,
    ticket: &str,
) -> Result<pb::ReturnTicket, AppError> {
    res(c
        .commit_return_ticket(authed(
            pb::CommitReturnTicketRequest {
                ticket_id: ticket.into(),
            },
            token,
        ))
        .await)
    .map(|r| r.ticket.unwrap())
}

async fn cancel(
    mut c: BillingClient,
    token: &str,
    ticket: &str,
) -> Result<pb::ReturnTicket, AppError> {
    res(c
        .cancel_return_ticket(authed(
            pb::CancelReturnTicketRequest {
                ticket_id: ticket.into(),
            },
            token,
        ))
        .await)
    .map(|r| r.ticket.unwrap())
}

/// A completed bill of `parents` (each with its number of children, scanned in lucknow).
async fn completed_bill(
    s: &BillingStack,
    biller: &str,
    dispatcher: &str,
    bill: &str,
    parents: &[(&str, usize)],
) {
    create_bill(s.billing(), biller, bill, parents.len() as i32).await;
    for (p, children) in parents {
        s.scan_parent(dispatcher, p, "").await.unwrap();
        for i in 0..*children {
            s.scan_child(dispatcher, p, &format!("{p}C{i:02}"))
                .await
                .unwrap();
        }
        attach(s.billing(), biller, bill, p).await.unwrap();
    }
    complete(s.billing(), biller, bill).await;
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn returns_take_parents_off_completed_bills_with_every_rule_and_refusal() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    completed_bill(
        &s,
        &bina,
        &ravi,
        "RB-1",
        &[("SB81001", 2), ("SB81002", 1), ("SB81003", 0)],
    )
    .await;
    let before = get_bill(s.billing(), &bina, "RB-1").await.bill.unwrap();
    assert_eq!((before.parent_count, before.child_count), (3, 3));

    // Tickets: admin and biller only; at a configured area.
    assert_eq!(
        code(ticket(s.billing(), &ravi, "indore").await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(ticket(s.billing(), &bina, "atlantis").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(ticket(s.billing(), &bina, "").await),
        ErrorCode::AreaRequired
    );
    let t1 = ticket(s.billing(), &bina, "Indore").await.unwrap();
    assert!(t1.ticket_id.starts_with("RTN-"), "{}", t1.ticket_id);
    assert_eq!(
        (t1.area.as_str(), t1.status.as_str(), t1.return_count),
        ("indore", "open", 0)
    );

    // A return: the parent leaves the bill with its snapshot, free and unfrozen in the
    // registry, it and its children in the ticket's area.
    let r = give_back(s.billing(), &bina, &t1.ticket_id, "sb81001")
        .await
        .unwrap();
    assert!(!r.already_returned);
    let back = r.returned.unwrap();
    assert_eq!(
        (back.bill_id.as_str(), back.state.as_str(), back.child_count),
        ("RB-1", "returned", 2)
    );
    assert_eq!(r.ticket.unwrap().return_count, 1);
    let bag = s.bag(&bina, "SB81001").await.unwrap();
    assert_eq!(
        (bag.bill_id.as_str(), bag.frozen, bag.area.as_str()),
        ("", false, "indore")
    );
    let child = s.bag(&bina, "SB81001C00").await.unwrap();
    assert_eq!(child.area, "indore");
    // A double-fired scan: a success that says so.
    let again = give_back(s.billing(), &bina, &t1.ticket_id, "SB81001")
        .await
        .unwrap();
    assert!(again.already_returned);

    // The bill keeps its history: dispatched 3 = 2 attached + 1 returned; net is live.
    let after = get_bill(s.billing(), &bina, "RB-1").await;
    let bill = after.bill.unwrap();
    assert_eq!(bill.status, pb::BillStatus::Completed as i32);
    assert_eq!((bill.parent_count, bill.returned_count), (2, 1));
    assert_eq!(bill.parent_count + bill.returned_count, bill.capacity);
    assert_eq!((bill.child_count, bill.returned_child_count), (1, 2));
    assert!(bill.returned_actual_weight_kg > 0.0);
    assert_eq!(after.returns.len(), 1);
    assert_eq!(after.returns[0].ticket_id, t1.ticket_id);
    assert_eq!(after.parents.len(), 2);

    // Refusals, each with its own code.
    s.scan_parent(&ravi, "SB81009", "").await.unwrap();
    assert_eq!(
        code(give_back(s.billing(), &bina, &t1.ticket_id, "SB81009").await),
        ErrorCode::ParentNotBilled
    );
    create_bill(s.billing(), &bina, "RB-2", 2).await;
    s.scan_parent(&ravi, "SB81010", "").await.unwrap();
    attach(s.billing(), &bina, "RB-2", "SB81010").await.unwrap();
    assert_eq!(
        code(give_back(s.billing(), &bina, &t1.ticket_id, "SB81010").await),
        ErrorCode::BillNotCompleted
    );
    assert_eq!(
        code(give_back(s.billing(), &bina, "RTN-NOPE", "SB81002").await),
        ErrorCode::TicketNotFound
    );
    assert_eq!(
        code(give_back(s.billing(), &ravi, &t1.ticket_id, "SB81002").await),
        ErrorCode::PermissionDenied
    );
    let t2 = ticket(s.billing(), &bina, "indore").await.unwrap();
    let e = give_back(s.billing(), &bina, &t2.ticket_id, "SB81001")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OnOtherTicket);
    assert_eq!(e.detail("other_ticket_id"), Some(t1.ticket_id.as_str()));
    // A bill with returns can be neither reopened nor deleted.
    let e = res(s
        .billing()
        .reopen_bill(authed(
            pb::ReopenBillRequest {
                bill_id: "RB-1".into(),
            },
            &bina,
        ))
        .await)
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BillHasReturns);
    let e = res(s
        .billing()
        .delete_bill(authed(
            pb::DeleteBillRequest {
                bill_id: "RB-1".into(),
            },
            &s.admin,
        ))
        .await)
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BillHasReturns);

    // Commit needs a parent; a closed ticket takes none.
    assert_eq!(
        code(commit(s.billing(), &bina, &t2.ticket_id).await),
        ErrorCode::TicketEmpty
    );
    let done = commit(s.billing(), &bina, &t1.ticket_id).await.unwrap();
    assert_eq!(done.status, "committed");
    assert_eq!(
        commit(s.billing(), &bina, &t1.ticket_id)
            .await
            .unwrap()
            .status,
        "committed"
    );
    assert_eq!(
        code(give_back(s.billing(), &bina, &t1.ticket_id, "SB81002").await),
        ErrorCode::TicketNotOpen
    );
    assert_eq!(
        code(cancel(s.billing(), &bina, &t1.ticket_id).await),
        ErrorCode::TicketNotOpen
    );

    // Cancelling leaves the parents already taken back free.
    give_back(s.billing(), &bina, &t2.ticket_id, "SB81002")
        .await
        .unwrap();
    assert_eq!(
        cancel(s.billing(), &bina, &t2.ticket_id)
            .await
            .unwrap()
            .status,
        "cancelled"
    );
    assert_eq!(s.bag(&bina, "SB81002").await.unwrap().bill_id, "");
    let bill = get_bill(s.billing(), &bina, "RB-1").await.bill.unwrap();
    assert_eq!((bill.parent_count, bill.returned_count), (1, 2));

    // A returned parent is billed again.
    create_bill(s.billing(), &bina, "RB-3", 1).await;
    attach(s.billing(), &bina, "RB-3", "SB81001").await.unwrap();
    assert_eq!(s.bag(&bina, "SB81001").await.unwrap().bill_id, "RB-3");
    // On a bill still processing it is detached, not returned.
    let t3 = ticket(s.billing(), &bina, "indore").await.unwrap();
    assert_eq!(
        code(give_back(s.billing(), &bina, &t3.ticket_id, "SB81001").await),
        ErrorCode::BillNotCompleted
    );

    // Listing and reading tickets.
    let list = res(s
        .billing()
        .list_return_tickets(authed(pb::ListReturnTicketsRequest::default(), &bina))
        .await)
    .unwrap();
    assert_eq!(list.tickets.len(), 3);
    let got = res(s
        .billing()
        .get_return_ticket(authed(
            pb::GetReturnTicketRequest {
                ticket_id: t1.ticket_id.clone(),
            },
            &bina,
        ))
        .await)
    .unwrap();
    assert_eq!(got.returns.len(), 1);
    assert_eq!(got.returns[0].parent_qr, "SB81001");
    assert_eq!(got.ticket.unwrap().child_count, 2);
}

#[tokio::test]
async fn one_parent_returned_onto_two_tickets_at_once_has_one_winner() {
    let s = BillingStack::start(1, 2).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    completed_bill(&s, &bina, &ravi, "RB-9", &[("SB82001", 1)]).await;
    let a = ticket(s.billing(), &bina, "indore").await.unwrap();
    let b = ticket(s.billing(), &bina, "lucknow").await.unwrap();
    let (ra, rb) = tokio::join!(
        give_back(s.billing_at(0), &bina, &a.ticket_id, "SB82001"),
        give_back(s.billing_at(1), &bina, &b.ticket_id, "SB82001"),
    );
    let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{ra:?} {rb:?}");
    let lost = if ra.is_ok() { rb } else { ra };
    assert_eq!(lost.unwrap_err().code, ErrorCode::OnOtherTicket);
    assert_eq!(
        scalar(
            s.billing_pool(),
            "SELECT count(*) FROM billing.returns WHERE parent_qr = 'SB82001'"
        )
        .await,
        1
    );
    let bill = get_bill(s.billing(), &bina, "RB-9").await.bill.unwrap();
    assert_eq!((bill.parent_count, bill.returned_count), (0, 1));
}

#[tokio::test]
async fn a_return_interrupted_after_its_intent_is_finished_by_the_sweeper() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    completed_bill(&s, &bina, &ravi, "RB-5", &[("SB83001", 2), ("SB83002", 0)]).await;
    let t = ticket(s.billing(), &bina, "indore").await.unwrap();
    // What a billing process that died right after committing the intent leaves behind.
    let pool = s.billing_pool();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE billing.attachments SET state = 'returning' WHERE parent_qr = 'SB83001'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE billing.return_tickets SET return_count = return_count + 1 WHERE ticket_id = $1",
    )
    .bind(&t.ticket_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO billing.returns (parent_qr, bill_id, ticket_id, state, state_changed_at) \
         VALUES ('SB83001', 'RB-5', $1, 'returning', now() - interval '1 hour')",
    )
    .bind(&t.ticket_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // In flight, the parent is neither on the bill nor returnable elsewhere.
    let other = ticket(s.billing(), &bina, "indore").await.unwrap();
    assert_eq!(
        code(give_back(s.billing(), &bina, &other.ticket_id, "SB83001").await),
        ErrorCode::OnOtherTicket
    );

    eventually(
        Duration::from_secs(20),
        "the sweeper finished the return",
        || async {
            scalar(
                pool,
                "SELECT count(*) FROM billing.returns WHERE state = 'returned'",
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(
        scalar(
            pool,
            "SELECT count(*) FROM billing.attachments WHERE parent_qr = 'SB83001'"
        )
        .await,
        0
    );
    let bag = s.bag(&bina, "SB83001").await.unwrap();
    assert_eq!((bag.bill_id.as_str(), bag.frozen), ("", false));
    let bill = get_bill(s.billing(), &bina, "RB-5").await.bill.unwrap();
    assert_eq!(
        (
            bill.parent_count,
            bill.returned_count,
            bill.returned_child_count
        ),
        (1, 1, 2)
    );
    // The scan that died is answered when sent again.
    let again = give_back(s.billing(), &bina, &t.ticket_id, "SB83001")
        .await
        .unwrap();
    assert!(again.already_returned);
    commit(s.billing(), &bina, &t.ticket_id).await.unwrap();
}

#[tokio::test]
async fn the_http_api_serves_tickets_returns_and_a_bills_figures() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    completed_bill(&s, &bina, &ravi, "RB-H", &[("SB84001", 3), ("SB84002", 1)]).await;
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| g.billing_url = billing.clone()).await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: &str, key: &str, body: serde_json::Value| {
        http.post(gw.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };

    let r = post(
        "/api/v1/returns",
        &bina,
        "k1",
        serde_json::json!({"area": "indore", "notes": "Sharma"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let t: serde_json::Value = r.json().await.unwrap();
    let id = t["ticket_id"].as_str().unwrap().to_owned();
    assert_eq!(t["status"], "open");
    let r = post(
        "/api/v1/returns",
        &ravi,
        "k2",
        serde_json::json!({"area": "indore"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    // The scan, its replay under the same key, and a double-fired scan under a new key.
    let scan = |key: &'static str, qr: &'static str| {
        post(
            &format!("/api/v1/returns/{id}/parents"),
            &bina,
            key,
            serde_json::json!({"parent_qr": qr}),
        )
    };
    let first: serde_json::Value = scan("s1", "SB84001").await.unwrap().json().await.unwrap();
    assert_eq!(first["already_returned"], false);
    assert_eq!(first["returned"]["child_count"], 3);
    let replay: serde_json::Value = scan("s1", "SB84001").await.unwrap().json().await.unwrap();
    assert_eq!(replay, first);
    let double: serde_json::Value = scan("s2", "SB84001").await.unwrap().json().await.unwrap();
    assert_eq!(double["already_returned"], true);
    s.scan_parent(&ravi, "SB84003", "").await.unwrap();
    let r = scan("s4", "SB84003").await.unwrap();
    assert_eq!(r.status(), 409);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "parent_not_billed");

    // The bill's figures: dispatched 2 = 1 net + 1 returned.
    let figures: serde_json::Value =
        get_json(&http, gw.url("/api/v1/bills/RB-H/returns"), &bina).await;
    assert_eq!(figures["dispatched_parents"], 2);
    assert_eq!(figures["returned_parents"], 1);
    assert_eq!(figures["returned_child_count"], 3);
    assert_eq!(figures["net_parents"], 1);
    assert_eq!(figures["net_child_count"], 1);
    assert_eq!(figures["returns"][0]["ticket_id"], id.as_str());

    let r = post(
        &format!("/api/v1/returns/{id}/commit"),
        &bina,
        "c1",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value =
        get_json(&http, gw.url("/api/v1/returns?status=committed"), &bina).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let detail: serde_json::Value =
        get_json(&http, gw.url(&format!("/api/v1/returns/{id}")), &bina).await;
    assert_eq!(detail["returns"][0]["parent_qr"], "SB84001");
    let doc = gw.openapi().await;
    for path in [
        "/api/v1/returns",
        "/api/v1/returns/{ticket_id}/parents",
        "/api/v1/bills/{bill_id}/returns",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}

/// The EPCIS export (as admin) once it holds an event with `biz_step`.
async fn epcis_with(c: &reqwest::Client, gw: &Gateway, token: &str, biz_step: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let body = c
            .get(gw.url("/api/v1/exports/epcis"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let found = doc["epcisBody"]["eventList"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["bizStep"] == biz_step);
        if found {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "stats did not receive the return: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_return_reaches_the_audit_trail_bag_history_and_a_valid_epcis_export() {
    let s = BillingStack::start(1, 1).await;
    let stats = s.start_stats(&redis_url()).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    completed_bill(&s, &bina, &ravi, "RB E 1", &[("SB85001", 2)]).await;
    let t = ticket(s.billing(), &bina, "indore").await.unwrap();
    give_back(s.billing(), &bina, &t.ticket_id, "SB85001")
        .await
        .unwrap();
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| {
        g.billing_url = billing.clone();
        g.stats_url = stats.url();
    })
    .await;
    let c = reqwest::Client::new();

    // EPCIS: a TransactionEvent DELETE, receiving, returned, bol = the bill, rma = the ticket, at
    // the ticket's area; the document validates against GS1's schema.
    let body = epcis_with(&c, &gw, &s.admin, "receiving").await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ev = doc["epcisBody"]["eventList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["bizStep"] == "receiving")
        .unwrap()
        .clone();
    assert_eq!(ev["type"], "TransactionEvent");
    assert_eq!(ev["action"], "DELETE");
    assert_eq!(ev["disposition"], "returned");
    assert_eq!(ev["epcList"][0], "urn:tracetrack:bag:SB85001");
    assert_eq!(ev["bizLocation"]["id"], "urn:tracetrack:area:indore");
    let txs = ev["bizTransactionList"].as_array().unwrap();
    assert!(txs
        .iter()
        .any(|t| t["type"] == "bol" && t["bizTransaction"] == "urn:tracetrack:bill:RB%20E%201"));
    let rma = format!("urn:tracetrack:ticket:{}", t.ticket_id);
    assert!(txs
        .iter()
        .any(|x| x["type"] == "rma" && x["bizTransaction"] == rma.as_str()));
    let (code, out) = validate_epcis_text("returns.jsonld", &body);
    assert_eq!(code, 0, "{out}");

    // The bag's history and the audit trail hold the return.
    let history: serde_json::Value =
        get_json(&c, gw.url("/api/v1/bags/SB85001/history"), &bina).await;
    let text = history.to_string();
    assert!(text.contains("billing.parent_returned"), "{text}");
    assert!(text.contains("registry.parent_returned"), "{text}");
    let audit: serde_json::Value = get_json(
        &c,
        gw.url("/api/v1/audit?action=billing.parent_returned"),
        &s.admin,
    )
    .await;
    assert!(audit.to_string().contains(&t.ticket_id), "{audit}");
    // The dashboard counts it among today's returns (the event has been applied by now; the
    // gateway may answer from its stream's snapshot, which follows within a moment).
    eventually(
        Duration::from_secs(10),
        "the return on the dashboard",
        || async {
            let dash = get_json(&c, gw.url("/api/v1/stats/dashboard"), &bina).await;
            assert!(dash["returns_today"].as_i64() <= Some(1), "{dash}");
            dash["returns_today"] == 1
        },
    )
    .await;
}

#[tokio::test]
async fn the_ticket_list_filters_by_creation_time() {
    let s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    // Three tickets: one opened two days ago, one yesterday, one now.
    let old = ticket(s.billing(), &bina, "indore").await.unwrap();
    let mid = ticket(s.billing(), &bina, "indore").await.unwrap();
    let new = ticket(s.billing(), &bina, "jaipur").await.unwrap();
    for (t, days) in [(&old, 2), (&mid, 1)] {
        sqlx::query(
            "UPDATE billing.return_tickets SET created_at = now() - make_interval(days => $2) \
              WHERE ticket_id = $1",
        )
        .bind(&t.ticket_id)
        .bind(days)
        .execute(s.billing_pool())
        .await
        .unwrap();
    }
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| g.billing_url = billing.clone()).await;
    let http = reqwest::Client::new();
    let at = |hours: i64| (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339();
    let list = |q: Vec<(&'static str, String)>| {
        let req = http
            .get(gw.url("/api/v1/returns"))
            .query(&q)
            .bearer_auth(&bina);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["ticket_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // from: at or after; to: before; both: the window; newest first; with the status filter too.
    let (st, v) = list(vec![("from", at(36))]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), vec![new.ticket_id.clone(), mid.ticket_id.clone()]);
    let (_, v) = list(vec![("to", at(12))]).await;
    assert_eq!(ids(&v), vec![mid.ticket_id.clone(), old.ticket_id.clone()]);
    let (_, v) = list(vec![("from", at(36)), ("to", at(12))]).await;
    assert_eq!(ids(&v), vec![mid.ticket_id.clone()]);
    let (_, v) = list(vec![("status", "open".into()), ("from", at(1))]).await;
    assert_eq!(ids(&v), vec![new.ticket_id.clone()]);
    let (_, v) = list(vec![("status", "committed".into()), ("from", at(36))]).await;
    assert_eq!(ids(&v), Vec::<String>::new());
    // Paged inside the window: the cursor keeps the filter.
    let (_, v) = list(vec![("page_size", "1".into()), ("to", at(12))]).await;
    assert_eq!(ids(&v), vec![mid.ticket_id.clone()]);
    let token = v["next_page_token"].as_str().unwrap().to_owned();
    let (_, v) = list(vec![
        ("page_size", "1".into()),
        ("to", at(12)),
        ("page_token", token),
    ])
    .await;
    assert_eq!(ids(&v), vec![old.ticket_id.clone()]);
    // A time that is not RFC 3339 is refused with the stable code.
    let (st, v) = list(vec![("from", "yesterday".into())]).await;
    assert_eq!(st, 400);
    assert_eq!(v["code"], "invalid_argument");
}
