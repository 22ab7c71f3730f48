//! Bills through real gRPC: billing (two replicas where it races) → bag-registry → auth, with
//! scan for child scans, on real Postgres and Redis. The races run against two billing
//! replicas so no in-process lock can pass for a database guarantee; crashes between the
//! saga's steps are simulated by writing what a dead process leaves behind, with SQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;
use proptest::prelude::*;
use tracetrack_bag_registry::config::ProductLineSettings;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::model::run_sequences;
use tracetrack_tests::*;

fn with_key<T>(mut req: tonic::Request<T>, key: &str) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("idempotency-key", key.parse().unwrap());
    req
}

async fn create(
    mut c: BillingClient,
    token: &str,
    id: &str,
    capacity: i32,
) -> Result<pb::Bill, AppError> {
    let bill_id = id.into();
    let req = pb::CreateBillRequest {
        bill_id,
        capacity,
        ..Default::default()
    };
    res(c.create_bill(authed(req, token)).await).map(|r| r.bill.unwrap())
}

/// Calls of one bill (`bill_id` only) as `token`, each mapped to what the tests look at.
macro_rules! bill_calls {
    ($($name:ident: $rpc:ident($req:ident) -> $out:ty = $map:expr;)*) => {$(
        async fn $name(mut c: BillingClient, token: &str, bill: &str) -> Result<$out, AppError> {
            let bill_id = bill.into();
            res(c.$rpc(authed(pb::$req { bill_id }, token)).await).map($map)
        }
    )*};
}

bill_calls! {
    complete: complete_bill(CompleteBillRequest) -> pb::Bill = |r| r.bill.unwrap();
    reopen: reopen_bill(ReopenBillRequest) -> pb::Bill = |r| r.bill.unwrap();
    delete: delete_bill(DeleteBillRequest) -> () = drop;
    get: get_bill(GetBillRequest) -> pb::GetBillResponse = |r| r;
}

async fn attach(
    mut c: BillingClient,
    token: &str,
    bill: &str,
    parent: &str,
) -> Result<pb::AttachParentResponse, AppError> {
    let (bill_id, parent_qr) = (bill.into(), parent.into());
    let req = pb::AttachParentRequest { bill_id, parent_qr };
    res(c.attach_parent(authed(req, token)).await)
}

async fn detach(
    mut c: BillingClient,
    token: &str,
    bill: &str,
    parent: &str,
) -> Result<pb::Bill, AppError> {
    let (bill_id, parent_qr) = (bill.into(), parent.into());
    let req = pb::DetachParentRequest { bill_id, parent_qr };
    res(c.detach_parent(authed(req, token)).await).map(|r| r.bill.unwrap())
}

async fn update(
    mut c: BillingClient,
    token: &str,
    req: pb::UpdateBillRequest,
) -> Result<pb::Bill, AppError> {
    res(c.update_bill(authed(req, token)).await).map(|r| r.bill.unwrap())
}

/// UpdateBill of the capacity alone.
async fn set_capacity(
    c: BillingClient,
    token: &str,
    bill: &str,
    capacity: i32,
) -> Result<pb::Bill, AppError> {
    let (bill_id, capacity) = (bill.into(), Some(capacity));
    let req = pb::UpdateBillRequest {
        bill_id,
        capacity,
        ..Default::default()
    };
    update(c, token, req).await
}

async fn list(
    mut c: BillingClient,
    token: &str,
    req: pb::ListBillsRequest,
) -> Result<pb::ListBillsResponse, AppError> {
    res(c.list_bills(authed(req, token)).await)
}

/// Registers a parent bag through bag-registry (as the admin).
async fn register(stack: &Stack, qr: &str, area: &str) {
    let parent = reg::BagType::Parent;
    stack
        .register(&stack.admin, qr, parent, area)
        .await
        .unwrap();
}

async fn delete_bag(stack: &Stack, qr: &str) -> Result<(), AppError> {
    res(stack
        .registry_client()
        .delete_bag(authed(
            reg::DeleteBagRequest { qr: qr.into() },
            &stack.admin,
        ))
        .await)
    .map(drop)
}

/// bag-registry's bill of a bag ("" when free) and whether it is frozen.
async fn registry_bill(stack: &Stack, qr: &str) -> (String, bool) {
    let bag = stack.bag(&stack.admin, qr).await.unwrap();
    (bag.bill_id, bag.frozen)
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The bill's figures as a user sees them.
fn figures(b: &pb::Bill) -> (i32, i64, f64, f64) {
    (
        b.parent_count,
        b.child_count,
        b.actual_weight_kg,
        b.expected_weight_kg,
    )
}

/// Event types billing wrote for one bill, oldest first.
async fn events(pool: &sqlx::PgPool, bill: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM billing.outbox WHERE aggregate_id = $1 ORDER BY id")
        .bind(bill)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The database's own invariants, whatever happened: counts equal the rows, never past
/// capacity, and billing's attachments equal bag-registry's claims.
async fn assert_consistent(stack: &BillingStack) {
    let pool = stack.billing_pool();
    let drift = scalar(
        pool,
        "SELECT count(*) FROM billing.bills b WHERE b.parent_count > b.capacity OR b.parent_count <> \
           (SELECT count(*) FROM billing.attachments a WHERE a.bill_id = b.bill_id) OR b.unsettled_count <> \
           (SELECT count(*) FROM billing.attachments a WHERE a.bill_id = b.bill_id AND a.state <> 'confirmed')",
    )
    .await;
    assert_eq!(drift, 0, "bill counters drifted from the attachment rows");
    let mismatched = scalar(
        pool,
        "SELECT count(*) FROM ((SELECT qr, bill_id FROM registry.bags WHERE bill_id IS NOT NULL \
                                EXCEPT SELECT parent_qr, bill_id FROM billing.attachments) \
                               UNION ALL (SELECT parent_qr, bill_id FROM billing.attachments \
                                EXCEPT SELECT qr, bill_id FROM registry.bags WHERE bill_id IS NOT NULL)) x",
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "billing and bag-registry disagree on attachments"
    );
    let frozen_wrong = scalar(
        pool,
        "SELECT count(*) FROM registry.bags g LEFT JOIN billing.bills b ON b.bill_id = g.bill_id \
          WHERE g.kind = 'parent' AND g.frozen <> coalesce(b.status = 'completed', false)",
    )
    .await;
    assert_eq!(
        frozen_wrong, 0,
        "frozen parents are exactly those of completed bills"
    );
}

async fn settled(stack: &BillingStack) {
    let pool = stack.billing_pool().clone();
    eventually(Duration::from_secs(20), "every attachment settled", || {
        let pool = pool.clone();
        async move {
            scalar(
                &pool,
                "SELECT count(*) FROM billing.attachments WHERE state <> 'confirmed'",
            )
            .await
                == 0
                && scalar(
                    &pool,
                    "SELECT count(*) FROM billing.bills WHERE status IN ('completing', 'reopening', 'deleting')",
                )
                .await
                    == 0
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------- races

#[tokio::test]
async fn fifty_attaches_race_into_a_ten_parent_bill_across_two_replicas() {
    let s = BillingStack::start(2, 2).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    create(s.billing(), &bina, "TRUCK-50", 10).await.unwrap();
    for i in 0..50 {
        register(&s, &format!("SB4{i:04}"), "indore").await;
    }
    let results = join_all((0..50).map(|i| {
        let c = s.billing_at(i);
        let bina = bina.clone();
        // Named in another case: ids compare case-insensitively.
        async move { attach(c, &bina, "truck-50", &format!("SB4{i:04}")).await }
    }))
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == ErrorCode::BillFull))
        .count();
    assert_eq!(
        (ok, full),
        (10, 40),
        "{:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|e| e.code != ErrorCode::BillFull)
            .collect::<Vec<_>>()
    );
    assert!(results
        .iter()
        .flatten()
        .all(|r| !r.already_attached && r.bill.as_ref().unwrap().bill_id == "TRUCK-50"));

    let pool = s.billing_pool();
    let (count, unsettled): (i32, i32) = sqlx::query_as(
        "SELECT parent_count, unsettled_count FROM billing.bills WHERE bill_id = 'TRUCK-50'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((count, unsettled), (10, 0));
    assert_eq!(
        scalar(
            pool,
            "SELECT count(*) FROM billing.attachments WHERE bill_id = 'TRUCK-50' AND state = 'confirmed'"
        )
        .await,
        10
    );
    assert_eq!(
        scalar(
            s.registry_pool(),
            "SELECT count(*) FROM registry.bags WHERE bill_id = 'TRUCK-50'"
        )
        .await,
        10
    );
    let bill = get(s.billing_at(1), &bina, "TRUCK-50").await.unwrap();
    let b = bill.bill.unwrap();
    assert_eq!(figures(&b), (10, 0, 0.0, 300.0));
    assert_eq!(b.status, pb::BillStatus::Processing as i32);
    assert_eq!(bill.parents.len(), 10);
    assert_consistent(&s).await;

    // The database alone refuses an 11th parent, whatever the code does.
    let err = sqlx::query(
        "INSERT INTO billing.attachments (parent_qr, bill_id, state) VALUES ('SB49999', 'TRUCK-50', 'pending')",
    )
    .execute(pool)
    .await
    .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("TB001")
    );
    let err = sqlx::query("UPDATE billing.bills SET parent_count = 11 WHERE bill_id = 'TRUCK-50'")
        .execute(pool)
        .await
        .unwrap_err();
    assert_eq!(
        tracetrack_common::db::check_violation(&err),
        Some("bills_parent_count_within_capacity")
    );
    // And a parent is on at most one bill, in the database too.
    create(s.billing(), &bina, "OTHER-1", 5).await.unwrap();
    let winner: String =
        sqlx::query_scalar("SELECT parent_qr FROM billing.attachments ORDER BY parent_qr LIMIT 1")
            .fetch_one(pool)
            .await
            .unwrap();
    let err = sqlx::query(
        "INSERT INTO billing.attachments (parent_qr, bill_id, state) VALUES ($1, 'OTHER-1', 'pending')",
    )
    .bind(&winner)
    .execute(pool)
    .await
    .unwrap_err();
    assert_eq!(
        tracetrack_common::db::unique_violation(&err),
        Some("attachments_parent_on_one_bill")
    );
}

#[tokio::test]
async fn one_parent_raced_onto_eight_bills_has_one_winner() {
    let s = BillingStack::start(2, 2).await;
    let admin = s.admin.clone();
    for b in 0..8 {
        create(s.billing(), &admin, &format!("RACE-{b}"), 2)
            .await
            .unwrap();
    }
    register(&s, "SB41000", "jaipur").await;
    let results = join_all((0..8).map(|b| {
        let c = s.billing_at(b);
        let admin = admin.clone();
        async move {
            (
                format!("RACE-{b}"),
                attach(c, &admin, &format!("RACE-{b}"), "sb41000").await,
            )
        }
    }))
    .await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(b, _)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, r) in results.iter().filter(|(_, r)| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code, ErrorCode::OnOtherBill, "{e:?}");
        assert_eq!(e.detail("other_bill_id"), Some(winners[0].as_str()));
    }
    assert_eq!(registry_bill(&s, "SB41000").await.0, *winners[0]);
    for b in 0..8 {
        let bill = get(s.billing(), &admin, &format!("RACE-{b}"))
            .await
            .unwrap()
            .bill
            .unwrap();
        let want = i32::from(format!("RACE-{b}") == *winners[0]);
        assert_eq!(bill.parent_count, want);
    }
    assert_consistent(&s).await;
}

#[tokio::test]
async fn completing_a_bill_racing_twenty_child_scans_counts_each_scan_or_refuses_it() {
    let s = BillingStack::start(2, 2).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    create(s.billing(), &bina, "LOAD-20", 2).await.unwrap();
    for p in ["SB50001", "SB50002"] {
        s.scan_parent(&ravi, p, "").await.unwrap();
    }
    for i in 0..3 {
        s.scan_child(&ravi, "SB50001", &format!("PRE{i:04}"))
            .await
            .unwrap();
    }
    attach(s.billing(), &bina, "LOAD-20", "SB50001")
        .await
        .unwrap();
    attach(s.billing_at(1), &bina, "LOAD-20", "SB50002")
        .await
        .unwrap();

    let scans = join_all((0..20).map(|i| {
        let s = &s;
        let ravi = ravi.clone();
        let parent = if i % 2 == 0 { "SB50001" } else { "SB50002" };
        // Spread over ~200 ms, so the completion lands among them.
        async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            s.scan_child(&ravi, parent, &format!("RACE{i:04}")).await
        }
    }));
    let completion = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let done = complete(s.billing_at(1), &bina, "LOAD-20").await.unwrap();
        // Taken right after the completion answered.
        let right_after = get(s.billing(), &bina, "LOAD-20").await.unwrap();
        (done, right_after)
    };
    let (scans, (done, right_after)) = tokio::join!(scans, completion);

    let mut counted = 0;
    for r in &scans {
        match r {
            Ok(_) => counted += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::ParentFrozen, "{e:?}"),
        }
    }
    eprintln!("{counted} of 20 racing scans were counted, the rest refused");
    let after = right_after.bill.unwrap();
    assert_eq!(after.status, pb::BillStatus::Completed as i32);
    assert_eq!(
        figures(&after),
        (2, 3 + counted, (3 + counted) as f64, 60.0),
        "the completed bill counts exactly the scans that succeeded"
    );
    assert_eq!(figures(&done), figures(&after));
    let per_parent: i64 = right_after
        .parents
        .iter()
        .map(|p| i64::from(p.child_count))
        .sum();
    assert_eq!(per_parent, after.child_count);

    // Nothing changes a completed bill's figures afterwards.
    for i in 0..4 {
        let e = s
            .scan_child(&ravi, "SB50002", &format!("LATE{i:04}"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ParentFrozen);
    }
    assert_eq!(
        s.undo(&ravi, "SB50001").await.unwrap_err().code,
        ErrorCode::ParentFrozen
    );
    let later = get(s.billing_at(1), &bina, "LOAD-20")
        .await
        .unwrap()
        .bill
        .unwrap();
    assert_eq!(figures(&later), figures(&after));
    let linked = scalar(
        s.registry_pool(),
        "SELECT count(*) FROM registry.bags WHERE parent_qr IN ('SB50001', 'SB50002')",
    )
    .await;
    assert_eq!(linked, 3 + counted);
    assert_consistent(&s).await;
}

#[tokio::test]
async fn attach_racing_delete_bag_never_leaves_a_deleted_bag_on_a_bill() {
    let s = BillingStack::start(2, 2).await;
    let admin = s.admin.clone();
    create(s.billing(), &admin, "DEL-RACE", 20).await.unwrap();
    for i in 0..20 {
        register(&s, &format!("SB6{i:04}"), "raipur").await;
    }
    let results = join_all((0..20).map(|i| {
        let s = &s;
        let c = s.billing_at(i);
        let admin = admin.clone();
        let qr = format!("SB6{i:04}");
        async move {
            let (a, d) = tokio::join!(attach(c, &admin, "DEL-RACE", &qr), delete_bag(s, &qr));
            (qr, a, d)
        }
    }))
    .await;
    let mut attached = BTreeSet::new();
    for (qr, a, d) in &results {
        match (a, d) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.code, ErrorCode::BagOnBill, "{qr}: {e:?}");
                attached.insert(qr.clone());
            }
            (Err(e), Ok(())) => assert_eq!(e.code, ErrorCode::BagNotFound, "{qr}: {e:?}"),
            other => panic!("{qr}: exactly one of attach and delete wins, got {other:?}"),
        }
    }
    settled(&s).await;
    let on_bill: BTreeSet<String> =
        sqlx::query_scalar("SELECT parent_qr FROM billing.attachments WHERE bill_id = 'DEL-RACE'")
            .fetch_all(s.billing_pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(on_bill, attached);
    for qr in &on_bill {
        assert_eq!(registry_bill(&s, qr).await.0, "DEL-RACE", "{qr} must exist");
    }
    let bill = get(s.billing(), &admin, "DEL-RACE").await.unwrap();
    assert_eq!(bill.bill.unwrap().parent_count as usize, attached.len());
    assert_eq!(bill.parents.len(), attached.len());
    assert_consistent(&s).await;
}

// ---------------------------------------------------------------------------------- crashes

#[tokio::test]
async fn the_sweeper_settles_reservations_a_crash_left_pending() {
    // Two replicas, both sweeping: each reservation is settled exactly once. They settle what
    // has waited 3 s, so the checks before that see the crash's leftovers as they are.
    let s = BillingStack::start_with(1, 2, |_| {}, |b| b.sweeper_settle_after_ms = 3000).await;
    let admin = s.admin.clone();
    create(s.billing(), &admin, "CRASH-1", 4).await.unwrap();
    create(s.billing(), &admin, "CRASH-2", 4).await.unwrap();
    for qr in ["SB70001", "SB70002", "SB70003"] {
        register(&s, qr, "hisar").await;
    }
    let pool = s.billing_pool();
    let reserve = |qr: &'static str| {
        sqlx::query(
            "INSERT INTO billing.attachments (parent_qr, bill_id, state) VALUES ($1, 'CRASH-1', 'pending')",
        )
        .bind(qr)
        .execute(pool)
    };
    // A process died after reserving and after bag-registry's claim.
    reserve("SB70001").await.unwrap();
    s.registry_client()
        .claim_parent(s.as_service(
            reg::ClaimParentRequest {
                parent_qr: "SB70001".into(),
                bill_id: "CRASH-1".into(),
            },
            Some(&admin),
            "billing",
        ))
        .await
        .unwrap();
    // One died after reserving, before claiming.
    reserve("SB70002").await.unwrap();
    // Reservations hold places, but nobody sees an unconfirmed parent.
    let (count,): (i32,) =
        sqlx::query_as("SELECT parent_count FROM billing.bills WHERE bill_id = 'CRASH-1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(count, 2);
    let bill = get(s.billing(), &admin, "CRASH-1").await.unwrap();
    assert_eq!(bill.bill.unwrap().parent_count, 0);
    assert!(bill.parents.is_empty());
    // A reserved parent is not free for another bill.
    let e = attach(s.billing(), &admin, "CRASH-2", "SB70002")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OnOtherBill);
    assert_eq!(e.detail("other_bill_id"), Some("CRASH-1"));
    // A retry of the interrupted attach settles its reservation once the dead request's lease
    // ran out (a live one is never taken over); the sweeper may have confirmed SB70001 by then.
    reserve("SB70003").await.unwrap();
    let retried = attach(s.billing_at(1), &admin, "CRASH-1", "SB70003")
        .await
        .unwrap();
    assert!(!retried.already_attached);
    assert!([1, 2].contains(&retried.bill.unwrap().parent_count));

    settled(&s).await;
    let rows: Vec<(String, String, Option<f64>)> = sqlx::query_as(
        "SELECT parent_qr, state, expected_weight_kg FROM billing.attachments ORDER BY parent_qr",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("SB70001".into(), "confirmed".into(), Some(30.0)),
            ("SB70003".into(), "confirmed".into(), Some(30.0)),
        ]
    );
    assert_eq!(registry_bill(&s, "SB70001").await.0, "CRASH-1");
    assert_eq!(registry_bill(&s, "SB70002").await.0, "");
    let bill = get(s.billing(), &admin, "CRASH-1")
        .await
        .unwrap()
        .bill
        .unwrap();
    assert_eq!(figures(&bill), (2, 0, 0.0, 60.0));
    let attached_events = scalar(
        pool,
        "SELECT count(*) FROM billing.outbox WHERE event_type = 'billing.parent_attached' AND aggregate_id = 'CRASH-1'",
    )
    .await;
    assert_eq!(attached_events, 2, "each attachment announced exactly once");
    // The place the unclaimed reservation held is free again, and so is its parent.
    attach(s.billing(), &admin, "CRASH-2", "SB70002")
        .await
        .unwrap();
    assert_consistent(&s).await;
}

#[tokio::test]
async fn the_sweeper_finishes_interrupted_completions_reopenings_detaches_and_deletes() {
    let s = BillingStack::start(1, 2).await;
    let admin = s.admin.clone();
    create(s.billing(), &admin, "HALF-DONE", 1).await.unwrap();
    register(&s, "SB71001", "akola").await;
    register(&s, "SB71002", "akola").await;
    attach(s.billing(), &admin, "HALF-DONE", "SB71001")
        .await
        .unwrap();
    let pool = s.billing_pool();
    let set_status = |status: &'static str| {
        sqlx::query("UPDATE billing.bills SET status = $1, status_changed_at = now() WHERE bill_id = 'HALF-DONE'")
            .bind(status)
            .execute(pool)
    };
    let status = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM billing.bills WHERE bill_id = 'HALF-DONE'",
        )
        .fetch_optional(pool)
        .await
        .unwrap()
    };

    // A completion whose process died after its intent, before freezing.
    set_status("completing").await.unwrap();
    let bill = get(s.billing(), &admin, "HALF-DONE")
        .await
        .unwrap()
        .bill
        .unwrap();
    assert_eq!(bill.status, pb::BillStatus::Completing as i32);
    assert_eq!(
        code(detach(s.billing(), &admin, "HALF-DONE", "SB71001").await),
        ErrorCode::BillCompleted
    );
    eventually(Duration::from_secs(20), "completion finished", || async {
        status().await.as_deref() == Some("completed")
    })
    .await;
    assert_eq!(
        registry_bill(&s, "SB71001").await,
        ("HALF-DONE".into(), true)
    );

    // A reopening interrupted the same way.
    set_status("reopening").await.unwrap();
    eventually(Duration::from_secs(20), "reopening finished", || async {
        status().await.as_deref() == Some("processing")
    })
    .await;
    assert_eq!(
        registry_bill(&s, "SB71001").await,
        ("HALF-DONE".into(), false)
    );

    // A detach interrupted after its intent, before bag-registry released the parent.
    sqlx::query("UPDATE billing.attachments SET state = 'detaching' WHERE parent_qr = 'SB71001'")
        .execute(pool)
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "detach finished", || async {
        scalar(pool, "SELECT count(*) FROM billing.attachments").await == 0
    })
    .await;
    assert_eq!(registry_bill(&s, "SB71001").await, (String::new(), false));
    assert_eq!(status().await.as_deref(), Some("new"));

    // A deletion interrupted before its parents were released: hidden at once, then gone.
    attach(s.billing(), &admin, "HALF-DONE", "SB71002")
        .await
        .unwrap();
    set_status("deleting").await.unwrap();
    assert_eq!(
        code(get(s.billing(), &admin, "HALF-DONE").await),
        ErrorCode::BillNotFound
    );
    eventually(Duration::from_secs(20), "deletion finished", || async {
        status().await.is_none()
    })
    .await;
    assert_eq!(registry_bill(&s, "SB71002").await, (String::new(), false));
    let kinds = events(pool, "HALF-DONE").await;
    for (kind, n) in [
        ("billing.bill_completed", 1),
        ("billing.bill_reopened", 1),
        ("billing.parent_detached", 1),
        ("billing.bill_deleted", 1),
    ] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            n,
            "{kind} in {kinds:?}"
        );
    }
    assert_consistent(&s).await;
}

#[tokio::test]
async fn an_unanswered_claim_leaves_a_reservation_that_a_retry_or_the_sweeper_settles() {
    let s = BillingStack::start(1, 1).await;
    let admin = s.admin.clone();
    // A second billing replica reaching bag-registry through a proxy the test cuts.
    let proxy = tracetrack_tests::proxy::Proxy::start(s.registries[0].addr).await;
    let cut_off = start_billing(billing_settings(
        &s.db,
        &redis_url(),
        &s.prefix,
        &s.auth,
        &format!("http://{}", proxy.addr),
    ))
    .await;
    let via_cut = BillingClient::new(
        tonic::transport::Channel::from_shared(cut_off.url())
            .unwrap()
            .connect_lazy(),
    );
    create(s.billing(), &admin, "CUT-1", 3).await.unwrap();
    register(&s, "SB72001", "indore").await;
    register(&s, "SB72002", "indore").await;
    proxy.cut();
    let pending = || async {
        scalar(
            s.billing_pool(),
            "SELECT count(*) FROM billing.attachments WHERE state = 'pending'",
        )
        .await
    };

    // No answer from bag-registry: the claim may or may not have happened, so the reservation
    // stays; a retry (through a healthy replica) settles it once the failed request's lease
    // ran out.
    let e = attach(via_cut.clone(), &admin, "CUT-1", "SB72001")
        .await
        .unwrap_err();
    let no_answer = [ErrorCode::Unavailable, ErrorCode::DeadlineExceeded];
    assert!(no_answer.contains(&e.code), "{e:?}");
    assert_eq!(pending().await, 1);
    let retried = attach(s.billing(), &admin, "CUT-1", "SB72001")
        .await
        .unwrap();
    assert_eq!(retried.bill.unwrap().parent_count, 1);
    assert_eq!(pending().await, 0);

    // The same, then the replica goes away: the other replica's sweeper settles it (the claim
    // never reached bag-registry, so the reservation is undone).
    let e = attach(via_cut, &admin, "CUT-1", "SB72002")
        .await
        .unwrap_err();
    assert!(no_answer.contains(&e.code), "{e:?}");
    assert_eq!(pending().await, 1);
    cut_off.stop().await.unwrap();
    settled(&s).await;
    assert_eq!(registry_bill(&s, "SB72002").await.0, "");
    let bill = get(s.billing(), &admin, "CUT-1").await.unwrap();
    assert_eq!(bill.bill.unwrap().parent_count, 1);
    attach(s.billing(), &admin, "CUT-1", "SB72002")
        .await
        .unwrap();
    assert_consistent(&s).await;
}

// ---------------------------------------------------------------------------------- API

#[tokio::test]
async fn bill_error_codes() {
    let s = BillingStack::start(1, 1).await;
    let admin = s.admin.clone();
    let c = || s.billing();

    // invalid_argument
    for bad in [
        "ab",
        "  a\u{200B}b ",
        "a/bc",
        "ab?c",
        "#abc",
        "10%x",
        "a\\bc",
    ] {
        assert_eq!(
            code(create(c(), &admin, bad, 1).await),
            ErrorCode::InvalidArgument,
            "{bad:?}"
        );
    }
    assert_eq!(
        code(create(c(), &admin, &"x".repeat(51), 1).await),
        ErrorCode::InvalidArgument
    );
    for capacity in [-1, 501] {
        assert_eq!(
            code(create(c(), &admin, "CAP-X", capacity).await),
            ErrorCode::InvalidArgument
        );
    }
    // Sanitised ids: whitespace collapsed, invisible characters removed; default capacity 1.
    let b = create(c(), &admin, "  Bill \t 1\u{200B} ", 0)
        .await
        .unwrap();
    assert_eq!((b.bill_id.as_str(), b.capacity), ("Bill 1", 1));
    assert_eq!(b.status, pb::BillStatus::New as i32);

    // bill_exists, case-insensitively
    assert_eq!(
        code(create(c(), &admin, "BILL 1", 3).await),
        ErrorCode::BillExists
    );

    // bill_not_found
    assert_eq!(
        code(get(c(), &admin, "NOPE-1").await),
        ErrorCode::BillNotFound
    );
    assert_eq!(code(get(c(), &admin, "x").await), ErrorCode::BillNotFound);
    assert_eq!(
        code(attach(c(), &admin, "NOPE-1", "SB90001").await),
        ErrorCode::BillNotFound
    );
    assert_eq!(
        code(complete(c(), &admin, "NOPE-1").await),
        ErrorCode::BillNotFound
    );
    assert_eq!(
        code(delete(c(), &admin, "NOPE-1").await),
        ErrorCode::BillNotFound
    );

    create(c(), &admin, "FULL-2", 2).await.unwrap();
    for p in ["SB90001", "SB90002", "SB90003"] {
        register(&s, p, "ranchi").await;
    }
    // bag_not_found, not_a_parent, invalid_qr: refused by bag-registry, nothing reserved
    assert_eq!(
        code(attach(c(), &admin, "FULL-2", "SB99999").await),
        ErrorCode::BagNotFound
    );
    s.scan_parent(&admin, "SB90009", "ranchi").await.unwrap();
    s.scan_child(&admin, "SB90009", "0016586").await.unwrap();
    assert_eq!(
        code(attach(c(), &admin, "FULL-2", "LABEL NO.:0016586 LOT NO.:X").await),
        ErrorCode::NotAParent
    );
    assert_eq!(
        code(attach(c(), &admin, "FULL-2", "SB<1>").await),
        ErrorCode::InvalidQr
    );
    assert_eq!(
        scalar(s.billing_pool(), "SELECT count(*) FROM billing.attachments").await,
        0,
        "refused attaches leave no reservation"
    );

    // bill_incomplete
    let one = attach(c(), &admin, "full-2", "SB90001").await.unwrap();
    assert_eq!(one.bill.unwrap().status, pb::BillStatus::Processing as i32);
    assert!(
        attach(c(), &admin, "FULL-2", "sb90001")
            .await
            .unwrap()
            .already_attached
    );
    let e = complete(c(), &admin, "FULL-2").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BillIncomplete);
    assert_eq!(e.detail("parent_count"), Some("1"));
    assert_eq!(e.detail("capacity"), Some("2"));

    // bill_full
    attach(c(), &admin, "FULL-2", "SB90002").await.unwrap();
    assert_eq!(
        code(attach(c(), &admin, "FULL-2", "SB90003").await),
        ErrorCode::BillFull
    );

    // on_other_bill: known to billing, and known only to bag-registry (passed on unchanged)
    create(c(), &admin, "SECOND", 5).await.unwrap();
    let e = attach(c(), &admin, "SECOND", "SB90001").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OnOtherBill);
    assert_eq!(e.detail("other_bill_id"), Some("FULL-2"));
    s.claim_for_bill("SB90003", "GHOST").await.unwrap();
    let e = attach(c(), &admin, "SECOND", "SB90003").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OnOtherBill);
    assert_eq!(e.detail("other_bill_id"), Some("GHOST"));
    s.release_from_bill("SB90003", "GHOST").await.unwrap();
    let second = get(c(), &admin, "SECOND").await.unwrap().bill.unwrap();
    assert_eq!(second.parent_count, 0);

    // capacity_below_attached
    let e = set_capacity(c(), &admin, "FULL-2", 1).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::CapacityBelowAttached);
    assert_eq!(e.detail("attached"), Some("2"));
    assert_eq!(
        code(set_capacity(c(), &admin, "FULL-2", 0).await),
        ErrorCode::InvalidArgument
    );

    // bill_completed
    complete(c(), &admin, "FULL-2").await.unwrap();
    create(c(), &admin, "THIRD", 5).await.unwrap();
    register(&s, "SB90004", "ranchi").await;
    assert_eq!(
        code(attach(c(), &admin, "FULL-2", "SB90004").await),
        ErrorCode::BillCompleted
    );
    assert_eq!(
        code(detach(c(), &admin, "FULL-2", "SB90001").await),
        ErrorCode::BillCompleted
    );
    assert_eq!(
        code(set_capacity(c(), &admin, "FULL-2", 3).await),
        ErrorCode::BillCompleted
    );
    assert_eq!(
        code(delete(c(), &admin, "FULL-2").await),
        ErrorCode::BillCompleted
    );
    // A completed bill's text fields may still change.
    let b = update(
        c(),
        &admin,
        pb::UpdateBillRequest {
            bill_id: "FULL-2".into(),
            vehicle_number: Some("RJ14 GA 1234".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(b.vehicle_number, "RJ14 GA 1234");
    // Detaching a parent that is not on the bill.
    assert_eq!(
        code(detach(c(), &admin, "THIRD", "SB90001").await),
        ErrorCode::BagNotFound
    );
    assert_consistent(&s).await;
}

#[tokio::test]
async fn permission_matrix() {
    let s = BillingStack::start(1, 1).await;
    let admin = s.admin.clone();
    let (_, dev) = s.user("dev", Role::Dispatcher, "lucknow").await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let c = || s.billing();
    register(&s, "SB82001", "lucknow").await;
    register(&s, "SB82002", "indore").await;
    register(&s, "SB82003", "lucknow").await;
    register(&s, "SB82004", "lucknow").await;
    create(c(), &admin, "PM-READ", 1).await.unwrap();

    for (name, token, manager, is_admin, parent) in [
        ("dispatcher", &dev, false, false, "SB82003"),
        ("biller", &bina, true, false, "SB82003"),
        ("admin", &admin, true, true, "SB82004"),
    ] {
        let bill = format!("PM-{name}");
        let denied = |r: Result<(), AppError>, what: &str, allowed: bool| {
            if allowed {
                assert!(r.is_ok(), "{name} {what}: {r:?}");
            } else {
                assert_eq!(
                    r.unwrap_err().code,
                    ErrorCode::PermissionDenied,
                    "{name} {what}"
                );
            }
        };
        // Each role acts on a bill the admin prepared, so a refusal is never a missing bill.
        create(c(), &admin, &bill, 1).await.unwrap();
        denied(
            create(c(), token, &format!("OWN-{name}"), 1)
                .await
                .map(drop),
            "create",
            manager,
        );
        denied(
            update(
                c(),
                token,
                pb::UpdateBillRequest {
                    bill_id: bill.clone(),
                    description: Some("by role".into()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
            "update",
            manager,
        );
        if !manager {
            // The admin fills it so the remaining steps have something to refuse.
            attach(c(), &admin, &bill, parent).await.unwrap();
        }
        denied(
            attach(c(), token, &bill, parent).await.map(drop),
            "attach",
            manager,
        );
        denied(
            complete(c(), token, &bill).await.map(drop),
            "complete",
            manager,
        );
        if !manager {
            complete(c(), &admin, &bill).await.unwrap();
        }
        denied(reopen(c(), token, &bill).await.map(drop), "reopen", manager);
        if !manager {
            reopen(c(), &admin, &bill).await.unwrap();
        }
        denied(
            detach(c(), token, &bill, parent).await.map(drop),
            "detach",
            manager,
        );
        denied(delete(c(), token, &bill).await, "delete", is_admin);
        if !is_admin {
            delete(c(), &admin, &bill).await.unwrap();
        }
        // Reading: every logged-in user.
        assert!(get(c(), token, "PM-READ").await.is_ok(), "{name} get");
        assert!(
            list(c(), token, pb::ListBillsRequest::default())
                .await
                .is_ok(),
            "{name} list"
        );
    }

    // Everyone reads a bill; a dispatcher sees only their own area's parents of it, but the
    // whole bill's figures.
    create(c(), &admin, "AREAS", 2).await.unwrap();
    attach(c(), &admin, "AREAS", "SB82001").await.unwrap();
    attach(c(), &admin, "AREAS", "SB82002").await.unwrap();
    for (token, want) in [
        (&dev, vec!["SB82001"]),
        (&bina, vec!["SB82001", "SB82002"]),
        (&admin, vec!["SB82001", "SB82002"]),
    ] {
        let got = get(c(), token, "AREAS").await.unwrap();
        let qrs: Vec<&str> = got.parents.iter().map(|p| p.qr.as_str()).collect();
        assert_eq!(qrs, want);
        assert_eq!(got.bill.unwrap().parent_count, 2);
    }
    // Without a session, nothing.
    let mut anon = s.billing();
    let e = anon
        .get_bill(pb::GetBillRequest {
            bill_id: "AREAS".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(AppError::from_status(&e).code, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn a_bill_from_creation_to_deletion_with_figures_events_lists_and_replays() {
    let s = BillingStack::start(1, 2).await;
    let (bina_user, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "sangaria").await;
    let admin = s.admin.clone();

    // Create, replayed with its key; the same key with another request is refused.
    let req = pb::CreateBillRequest {
        bill_id: "DISPATCH-0001".into(),
        capacity: 2,
        description: " Mustard  to\tJaipur ".into(),
        destination: "Jaipur".into(),
        vehicle_number: "RJ14 GA 1234".into(),
    };
    let first = res(s
        .billing()
        .create_bill(with_key(authed(req.clone(), &bina), "create-1"))
        .await)
    .unwrap();
    let again = res(s
        .billing_at(1)
        .create_bill(with_key(authed(req.clone(), &bina), "create-1"))
        .await)
    .unwrap();
    assert_eq!(first, again);
    let b = first.bill.unwrap();
    assert_eq!(b.description, "Mustard to Jaipur");
    assert_eq!(b.created_by, bina_user.id);
    assert_eq!(b.created_by_username, "bina");
    let reused = res(s
        .billing()
        .create_bill(with_key(
            authed(
                pb::CreateBillRequest {
                    bill_id: "DISPATCH-0002".into(),
                    ..req.clone()
                },
                &bina,
            ),
            "create-1",
        ))
        .await);
    assert_eq!(code(reused), ErrorCode::IdempotencyKeyReused);

    // Parents with children; figures come from the registry at read time.
    for p in ["SB83001", "SB83002"] {
        s.scan_parent(&ravi, p, "").await.unwrap();
    }
    for i in 0..5 {
        s.scan_child(&ravi, "SB83001", &format!("FIG{i:04}"))
            .await
            .unwrap();
    }
    let attach_req = pb::AttachParentRequest {
        bill_id: "dispatch-0001".into(),
        parent_qr: "SB83001".into(),
    };
    let a1 = res(s
        .billing()
        .attach_parent(with_key(authed(attach_req.clone(), &bina), "attach-1"))
        .await)
    .unwrap();
    let a1_again = res(s
        .billing_at(1)
        .attach_parent(with_key(authed(attach_req.clone(), &bina), "attach-1"))
        .await)
    .unwrap();
    assert_eq!(a1, a1_again, "a replay answers the first answer");
    assert!(!a1.already_attached);
    assert_eq!(figures(a1.bill.as_ref().unwrap()), (1, 5, 5.0, 30.0));
    attach(s.billing(), &bina, "DISPATCH-0001", "SB83002")
        .await
        .unwrap();
    s.scan_child(&ravi, "SB83002", "FIG9999").await.unwrap();
    let got = get(s.billing(), &ravi, "DISPATCH-0001").await.unwrap();
    let b = got.bill.unwrap();
    assert_eq!(figures(&b), (2, 6, 6.0, 60.0));
    let parents: Vec<(String, i32, f64, f64, String)> = got
        .parents
        .iter()
        .map(|p| {
            (
                p.qr.clone(),
                p.child_count,
                p.weight_kg,
                p.expected_weight_kg,
                p.area.clone(),
            )
        })
        .collect();
    assert_eq!(
        parents,
        [
            ("SB83001".into(), 5, 5.0, 30.0, "sangaria".into()),
            ("SB83002".into(), 1, 1.0, 30.0, "sangaria".into()),
        ]
    );
    assert_eq!(got.parents[0].product_line, "mustard");

    // Lists: filters and keyset pages, every page with its figures.
    for i in 0..5 {
        create(s.billing(), &admin, &format!("LIST-{i}"), 3)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            s.billing(),
            &ravi,
            pb::ListBillsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        seen.extend(
            page.bills
                .iter()
                .map(|b| (b.bill_id.clone(), b.child_count)),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            ("LIST-4".to_owned(), 0),
            ("LIST-3".to_owned(), 0),
            ("LIST-2".to_owned(), 0),
            ("LIST-1".to_owned(), 0),
            ("LIST-0".to_owned(), 0),
            ("DISPATCH-0001".to_owned(), 6),
        ]
    );
    let processing = list(
        s.billing(),
        &ravi,
        pb::ListBillsRequest {
            status: pb::BillStatus::Processing as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(processing.bills.len(), 1);
    assert_eq!(figures(&processing.bills[0]), (2, 6, 6.0, 60.0));
    let by_prefix = list(
        s.billing(),
        &ravi,
        pb::ListBillsRequest {
            bill_id_prefix: "list-".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_prefix.bills.len(), 5);
    let by_creator = list(
        s.billing(),
        &ravi,
        pb::ListBillsRequest {
            created_by: bina_user.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = by_creator
        .bills
        .iter()
        .map(|b| b.bill_id.as_str())
        .collect();
    assert_eq!(ids, ["DISPATCH-0001"]);
    let none = list(
        s.billing(),
        &ravi,
        pb::ListBillsRequest {
            bill_id_prefix: "list_".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(none.bills.is_empty(), "'_' is literal in a prefix");

    // Complete, reopen, complete again (idempotent), detach after reopening.
    let done = complete(s.billing(), &bina, "DISPATCH-0001").await.unwrap();
    assert_eq!(done.status, pb::BillStatus::Completed as i32);
    assert!(done.completed_at.is_some());
    assert_eq!(
        complete(s.billing_at(1), &bina, "DISPATCH-0001")
            .await
            .unwrap()
            .status,
        pb::BillStatus::Completed as i32
    );
    assert_eq!(
        s.scan_child(&ravi, "SB83001", "FROZEN01")
            .await
            .unwrap_err()
            .code,
        ErrorCode::ParentFrozen
    );
    let reopened = reopen(s.billing(), &bina, "DISPATCH-0001").await.unwrap();
    assert_eq!(reopened.status, pb::BillStatus::Processing as i32);
    assert!(reopened.completed_at.is_none());
    s.scan_child(&ravi, "SB83001", "THAWED01").await.unwrap();
    assert_eq!(
        reopen(s.billing(), &bina, "DISPATCH-0001")
            .await
            .unwrap()
            .status,
        pb::BillStatus::Processing as i32,
        "reopening an open bill changes nothing"
    );
    let b = detach(s.billing(), &bina, "DISPATCH-0001", "SB83002")
        .await
        .unwrap();
    assert_eq!(figures(&b), (1, 6, 6.0, 30.0));
    assert_eq!(registry_bill(&s, "SB83002").await.0, "");
    let b = update(
        s.billing(),
        &bina,
        pb::UpdateBillRequest {
            bill_id: "DISPATCH-0001".into(),
            capacity: Some(1),
            destination: Some("Jodhpur".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((b.capacity, b.destination.as_str()), (1, "Jodhpur"));

    // Delete: admin only; its parents become free.
    delete(s.billing(), &admin, "dispatch-0001").await.unwrap();
    assert_eq!(
        code(get(s.billing(), &admin, "DISPATCH-0001").await),
        ErrorCode::BillNotFound
    );
    assert_eq!(registry_bill(&s, "SB83001").await, (String::new(), false));
    create(s.billing(), &bina, "OTHER", 1).await.unwrap();
    attach(s.billing(), &bina, "OTHER", "SB83001")
        .await
        .unwrap();

    let kinds = events(s.billing_pool(), "DISPATCH-0001").await;
    assert_eq!(
        kinds,
        [
            "billing.bill_created",
            "billing.parent_attached",
            "billing.parent_attached",
            "billing.bill_completed",
            "billing.bill_reopened",
            "billing.parent_detached",
            "billing.bill_updated",
            "billing.bill_deleted",
        ]
    );
    let updated: String = sqlx::query_scalar(
        "SELECT encode(envelope, 'escape') FROM billing.outbox WHERE event_type = 'billing.bill_updated'",
    )
    .fetch_one(s.billing_pool())
    .await
    .unwrap();
    assert!(updated.contains("Jodhpur") && updated.contains("before"));
    assert_consistent(&s).await;
}

// ---------------------------------------------------------------------------------- model

const BILLS: usize = 2;
const BILL_CAPACITY: [usize; BILLS] = [2, 3];
const PARENTS: usize = 4;
const CHILDREN: usize = 6;
const PARENT_CAPACITY: usize = 3;
const PARENT_WEIGHT: f64 = 3.0;

#[derive(Debug, Clone)]
enum Op {
    Attach(usize, usize),
    Detach(usize, usize),
    Link(usize, usize),
    Unlink(usize, usize),
    Complete(usize),
    Reopen(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..BILLS, 0..PARENTS).prop_map(|(b, p)| Op::Attach(b, p)),
        2 => (0..BILLS, 0..PARENTS).prop_map(|(b, p)| Op::Detach(b, p)),
        6 => (0..PARENTS, 0..CHILDREN).prop_map(|(p, c)| Op::Link(p, c)),
        2 => (0..PARENTS, 0..CHILDREN).prop_map(|(p, c)| Op::Unlink(p, c)),
        2 => (0..BILLS).prop_map(Op::Complete),
        1 => (0..BILLS).prop_map(Op::Reopen),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    New,
    Processing,
    Completed,
}

/// The reference model: each bill's status, which bill each parent is on, which parent each
/// child is in.
struct Model {
    status: [Status; BILLS],
    on_bill: BTreeMap<usize, usize>,
    in_parent: BTreeMap<usize, usize>,
}

type Outcome = Result<(), ErrorCode>;

impl Model {
    fn new() -> Self {
        Self {
            status: [Status::New; BILLS],
            on_bill: BTreeMap::new(),
            in_parent: BTreeMap::new(),
        }
    }

    fn parents_of(&self, b: usize) -> BTreeSet<usize> {
        self.on_bill
            .iter()
            .filter(|(_, q)| **q == b)
            .map(|(p, _)| *p)
            .collect()
    }

    fn children_of(&self, p: usize) -> usize {
        self.in_parent.values().filter(|q| **q == p).count()
    }

    fn frozen(&self, p: usize) -> bool {
        self.on_bill
            .get(&p)
            .is_some_and(|b| self.status[*b] == Status::Completed)
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Attach(b, p) => match self.on_bill.get(&p) {
                Some(q) if *q == b => Ok(()),
                Some(_) => Err(ErrorCode::OnOtherBill),
                None if self.status[b] == Status::Completed => Err(ErrorCode::BillCompleted),
                None if self.parents_of(b).len() >= BILL_CAPACITY[b] => Err(ErrorCode::BillFull),
                None => {
                    self.on_bill.insert(p, b);
                    self.status[b] = Status::Processing;
                    Ok(())
                }
            },
            Op::Detach(b, p) => match self.on_bill.get(&p) {
                Some(q) if *q == b && self.status[b] == Status::Completed => {
                    Err(ErrorCode::BillCompleted)
                }
                Some(q) if *q == b => {
                    self.on_bill.remove(&p);
                    if self.parents_of(b).is_empty() {
                        self.status[b] = Status::New;
                    }
                    Ok(())
                }
                _ => Err(ErrorCode::BagNotFound),
            },
            Op::Link(p, c) => match self.in_parent.get(&c) {
                Some(q) if *q == p => Ok(()),
                Some(_) => Err(ErrorCode::ChildLinkedElsewhere),
                None if self.frozen(p) => Err(ErrorCode::ParentFrozen),
                None if self.children_of(p) >= PARENT_CAPACITY => Err(ErrorCode::ParentFull),
                None => {
                    self.in_parent.insert(c, p);
                    Ok(())
                }
            },
            Op::Unlink(p, c) => match self.in_parent.get(&c) {
                Some(q) if *q == p && self.frozen(p) => Err(ErrorCode::ParentFrozen),
                Some(q) if *q == p => {
                    self.in_parent.remove(&c);
                    Ok(())
                }
                _ => Err(ErrorCode::BagNotFound),
            },
            Op::Complete(b) => {
                if self.status[b] == Status::Completed {
                    Ok(())
                } else if self.parents_of(b).len() == BILL_CAPACITY[b] {
                    self.status[b] = Status::Completed;
                    Ok(())
                } else {
                    Err(ErrorCode::BillIncomplete)
                }
            }
            Op::Reopen(b) => {
                if self.status[b] == Status::Completed {
                    self.status[b] = Status::Processing;
                }
                Ok(())
            }
        }
    }
}

fn bill_id(case: usize, b: usize) -> String {
    format!("Case{case:03}-B{b}")
}

fn parent_qr(case: usize, p: usize) -> String {
    format!("T{case:03}{p}")
}

fn child_qr(case: usize, c: usize) -> String {
    format!("K{case:03}{c}")
}

async fn run(s: &BillingStack, case: usize, step: usize, op: &Op) -> Outcome {
    let admin = &s.admin;
    // Alternate replicas.
    let c = s.billing_at(step);
    let result: Result<(), AppError> = match *op {
        Op::Attach(b, p) => attach(c, admin, &bill_id(case, b), &parent_qr(case, p))
            .await
            .map(drop),
        Op::Detach(b, p) => detach(c, admin, &bill_id(case, b), &parent_qr(case, p))
            .await
            .map(drop),
        Op::Link(p, ch) => s
            .scan_child(admin, &parent_qr(case, p), &child_qr(case, ch))
            .await
            .map(drop),
        Op::Unlink(p, ch) => res(s
            .registry_client()
            .unlink_child(authed(
                reg::UnlinkChildRequest {
                    parent_qr: parent_qr(case, p),
                    child_qr: child_qr(case, ch),
                },
                admin,
            ))
            .await)
        .map(drop),
        Op::Complete(b) => complete(c, admin, &bill_id(case, b)).await.map(drop),
        Op::Reopen(b) => reopen(c, admin, &bill_id(case, b)).await.map(drop),
    };
    result.map_err(|e| e.code)
}

/// Every figure of every bill, as GetBill shows it, against the model.
async fn check_figures(s: &BillingStack, case: usize, model: &Model) -> Result<(), String> {
    for b in 0..BILLS {
        let got = get(s.billing(), &s.admin, &bill_id(case, b))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let bill = got.bill.unwrap();
        let parents = model.parents_of(b);
        let children: usize = parents.iter().map(|p| model.children_of(*p)).sum();
        let status = match model.status[b] {
            Status::New => pb::BillStatus::New,
            Status::Processing => pb::BillStatus::Processing,
            Status::Completed => pb::BillStatus::Completed,
        } as i32;
        let want = (
            status,
            parents.len() as i32,
            children as i64,
            children as f64,
            parents.len() as f64 * PARENT_WEIGHT,
        );
        let have = (
            bill.status,
            bill.parent_count,
            bill.child_count,
            bill.actual_weight_kg,
            bill.expected_weight_kg,
        );
        if want != have {
            return Err(format!("bill {b}: want {want:?}, have {have:?}"));
        }
        let want_parents: Vec<(String, i32)> = parents
            .iter()
            .map(|p| (parent_qr(case, *p), model.children_of(*p) as i32))
            .collect();
        let have_parents: Vec<(String, i32)> = got
            .parents
            .iter()
            .map(|p| (p.qr.clone(), p.child_count))
            .collect();
        if want_parents != have_parents {
            return Err(format!(
                "bill {b} parents: want {want_parents:?}, have {have_parents:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn random_bill_sequences_match_the_reference_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stack = rt.block_on(BillingStack::start_with(
        1,
        2,
        |r| {
            r.product_lines.push(ProductLineSettings {
                name: "tiny".into(),
                parent_pattern: r"^T\d{4}$".into(),
                capacity: PARENT_CAPACITY as i32,
                parent_weight_kg: PARENT_WEIGHT,
                child_weight_kg: 1.0,
            })
        },
        |_| {},
    ));
    let tally = run_sequences(op(), |case, ops, tally| {
        let mut model = Model::new();
        rt.block_on(async {
            for (b, capacity) in BILL_CAPACITY.iter().enumerate() {
                create(
                    stack.billing(),
                    &stack.admin,
                    &bill_id(case, b),
                    *capacity as i32,
                )
                .await
                .unwrap();
            }
            for p in 0..PARENTS {
                stack
                    .scan_parent(&stack.admin, &parent_qr(case, p), "bathinda")
                    .await
                    .unwrap();
            }
            for (i, op) in ops.iter().enumerate() {
                let want = model.apply(op);
                let got = run(&stack, case, i, op).await;
                prop_assert_eq!(got, want, "case {} step {} {:?} in {:?}", case, i, op, ops);
                tally.count(got.is_ok());
                let figures = check_figures(&stack, case, &model).await;
                prop_assert!(
                    figures.is_ok(),
                    "case {} step {} {:?}: {:?} in {:?}",
                    case,
                    i,
                    op,
                    figures,
                    ops
                );
            }
            assert_consistent(&stack).await;
            Ok(())
        })
    });
    tally.assert_one_in(3);
}

// ---------------------------------------------------------------------------------- leases

/// Whether another transaction can lock `sql`'s row at once (`NOWAIT`): no one holds it.
async fn lockable(pool: &sqlx::PgPool, sql: &str, id: &str) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await;
    tx.rollback().await.unwrap();
    match r {
        Ok(_) => true,
        Err(e) => {
            let code = e.as_database_error().and_then(|d| d.code()).unwrap();
            assert_eq!(code, "55P03", "{e:?}");
            false
        }
    }
}

const ATTACHMENT_ROW: &str =
    "SELECT 1 FROM billing.attachments WHERE parent_qr = $1 FOR UPDATE NOWAIT";
const BILL_ROW: &str = "SELECT 1 FROM billing.bills WHERE bill_id = $1 FOR UPDATE NOWAIT";

/// Until `task` ends, asserts (at least once) that each of `rows` (a locking query and its id)
/// can be locked at once: no transaction holds it while the task waits on bag-registry.
async fn unlocked_while<T>(
    task: &tokio::task::JoinHandle<T>,
    pool: &sqlx::PgPool,
    rows: &[(&str, &str)],
    when: &str,
) {
    let mut probes = 0;
    while !task.is_finished() {
        for (sql, id) in rows {
            assert!(lockable(pool, sql, id).await, "{id}'s row is locked {when}");
        }
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(probes > 0);
}

/// Waits (up to 10 s) until the count `sql` selects is 1.
async fn eventually_one(pool: &sqlx::PgPool, what: &str, sql: &str) {
    eventually(Duration::from_secs(10), what, || async {
        scalar(pool, sql).await == 1
    })
    .await;
}

#[tokio::test]
async fn no_row_lock_is_held_while_bag_registry_is_called() {
    // Leases far longer than the test, so no sweeper takes the held-up work over.
    let s = BillingStack::start_with(1, 1, |_| {}, |b| b.sweeper_settle_after_ms = 60_000).await;
    let admin = s.admin.clone();
    // A second billing replica reaching bag-registry through a proxy the test holds up.
    let proxy = tracetrack_tests::proxy::Proxy::start(s.registries[0].addr).await;
    let mut settings = billing_settings(
        &s.db,
        &redis_url(),
        &s.prefix,
        &s.auth,
        &format!("http://{}", proxy.addr),
    );
    settings.sweeper_settle_after_ms = 60_000;
    settings.registry_timeout_ms = 2_000;
    let held_up = start_billing(settings).await;
    let via_proxy = BillingClient::new(
        tonic::transport::Channel::from_shared(held_up.url())
            .unwrap()
            .connect_lazy(),
    );
    create(s.billing(), &admin, "HELD-1", 1).await.unwrap();
    create(s.billing(), &admin, "HELD-2", 1).await.unwrap();
    register(&s, "SB73001", "indore").await;
    register(&s, "SB73002", "indore").await;
    attach(s.billing(), &admin, "HELD-2", "SB73002")
        .await
        .unwrap();
    proxy.hang();

    // An attach whose claim is held up: its reservation is committed, and the attachment row
    // (and the bill's) can be locked by anyone while the claim waits for bag-registry.
    let attaching = tokio::spawn({
        let (c, a) = (via_proxy.clone(), admin.clone());
        async move { attach(c, &a, "HELD-1", "SB73001").await }
    });
    let pool = s.billing_pool();
    let pending = "SELECT count(*) FROM billing.attachments WHERE parent_qr = 'SB73001' AND state = 'pending'";
    eventually_one(pool, "the reservation", pending).await;
    let rows = [(ATTACHMENT_ROW, "SB73001"), (BILL_ROW, "HELD-1")];
    unlocked_while(&attaching, pool, &rows, "while the claim is in flight").await;
    // No answer: the reservation stays for a retry or the sweeper.
    let e = attaching.await.unwrap().unwrap_err();
    assert!(
        [ErrorCode::Unavailable, ErrorCode::DeadlineExceeded].contains(&e.code),
        "{e:?}"
    );

    // A completion whose freeze is held up: the bill row is not locked meanwhile.
    let completing = tokio::spawn({
        let (c, a) = (via_proxy.clone(), admin.clone());
        async move { complete(c, &a, "HELD-2").await }
    });
    let intent =
        "SELECT count(*) FROM billing.bills WHERE bill_id = 'HELD-2' AND status = 'completing'";
    eventually_one(pool, "the completing intent", intent).await;
    let rows = [(BILL_ROW, "HELD-2")];
    unlocked_while(&completing, pool, &rows, "while the freeze is in flight").await;
    completing.await.unwrap().unwrap_err();
    proxy.restore();
    held_up.stop().await.unwrap();
}

/// The dispatch document is what the truck leaves with: every parent of the bill, whoever prints
/// it. A dispatcher's bill page lists their own area's parents only (SPEC: one bill's `parents`),
/// but their printed document lists them all, as its totals count them all.
#[tokio::test]
async fn a_dispatchers_dispatch_document_lists_every_parent_of_the_bill() {
    let s = BillingStack::start(1, 1).await;
    let admin = s.admin.clone();
    let (_, dev) = s.user("dev", Role::Dispatcher, "lucknow").await;
    register(&s, "SB83001", "lucknow").await;
    register(&s, "SB83002", "indore").await;
    create(s.billing(), &admin, "DOC-AREAS", 2).await.unwrap();
    attach(s.billing(), &admin, "DOC-AREAS", "SB83001")
        .await
        .unwrap();
    attach(s.billing(), &admin, "DOC-AREAS", "SB83002")
        .await
        .unwrap();
    complete(s.billing(), &admin, "DOC-AREAS").await.unwrap();
    let billing = s.billings[0].url();
    let gw = Gateway::start(&s, |g| g.billing_url = billing.clone()).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| http.get(gw.url(path)).bearer_auth(&dev).send();
    // The page's view: their own area's parent.
    let page: serde_json::Value = get("/api/v1/bills/DOC-AREAS")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let qrs: Vec<&str> = page["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["qr"].as_str().unwrap())
        .collect();
    assert_eq!(qrs, vec!["SB83001"]);
    // The document: both.
    let r = get("/api/v1/bills/DOC-AREAS/document?lang=en")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = r.text().await.unwrap();
    assert!(
        doc.contains("SB83001") && doc.contains("SB83002"),
        "a dispatcher's document lists every parent: {doc}"
    );
}
