//! Zero-downtime rollout of a migration, expand/contract (docs/operations.md § 5), shown with two
//! versions side by side without a second build: release N is the billing we build, running and
//! serving a steady load of its own calls (create a bill, change its vehicle number, read it);
//! release N+1 is represented by its SQL (tests/fixtures/rollout/: the statements it would run
//! against billing.bills after renaming vehicle_number to vehicle_registration).
//! The expand migration is applied while N serves: none of N's calls fails, and what either
//! release writes, the other reads. The contract step runs once N is stopped; after it, N's own
//! statement fails — which is why it must wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_tests::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/rollout").join(name)).unwrap()
}

/// Release N+1's statements against billing.bills.
const NEW_INSERT: &str = "INSERT INTO billing.bills (bill_id, capacity, vehicle_registration) \
                          VALUES ($1, 2, $2)";
const NEW_READ: &str = "SELECT vehicle_registration FROM billing.bills WHERE bill_id = $1";
const NEW_UPDATE: &str =
    "UPDATE billing.bills SET vehicle_registration = $2, version = version + 1 WHERE bill_id = $1";

async fn vehicle_as_n(c: &mut BillingClient, token: &str, bill: &str) -> String {
    let req = pb::GetBillRequest {
        bill_id: bill.into(),
    };
    let r = c.get_bill(authed(req, token)).await.unwrap();
    r.into_inner().bill.unwrap().vehicle_number
}

async fn vehicle_as_n1(db: &sqlx::PgPool, bill: &str) -> Option<String> {
    sqlx::query_scalar(NEW_READ)
        .bind(bill)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn set_vehicle_as_n(c: &mut BillingClient, token: &str, bill: &str, v: &str) {
    let req = pb::UpdateBillRequest {
        bill_id: bill.into(),
        vehicle_number: Some(v.into()),
        ..Default::default()
    };
    c.update_bill(authed(req, token)).await.unwrap();
}

#[tokio::test]
async fn an_expand_migration_under_load_keeps_release_n_working_beside_n_plus_one() {
    let mut s = BillingStack::start(1, 1).await;
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let mut n = s.billing();
    let req = pb::CreateBillRequest {
        bill_id: "ROLL-OLD".into(),
        capacity: 2,
        vehicle_number: "MH12AB1234".into(),
        ..Default::default()
    };
    n.create_bill(authed(req, &bina)).await.unwrap();

    // Release N under a steady load of its own calls until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (stop, calls, mut c, token) = (stop.clone(), calls.clone(), s.billing(), bina.clone());
        async move {
            let mut failures = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let bill_id = format!("ROLL-{i:05}");
                let vehicle = format!("UP{i:08}");
                let create = pb::CreateBillRequest {
                    bill_id: bill_id.clone(),
                    capacity: 1,
                    vehicle_number: vehicle.clone(),
                    ..Default::default()
                };
                let update = pb::UpdateBillRequest {
                    bill_id: bill_id.clone(),
                    vehicle_number: Some(format!("{vehicle}X")),
                    ..Default::default()
                };
                let get = pb::GetBillRequest { bill_id };
                let r = async {
                    c.create_bill(authed(create, &token)).await?;
                    c.update_bill(authed(update, &token)).await?;
                    c.get_bill(authed(get, &token)).await
                }
                .await;
                match r {
                    Ok(b)
                        if b.get_ref().bill.as_ref().unwrap().vehicle_number
                            == format!("{vehicle}X") => {}
                    Ok(b) => failures.push(format!("{i}: read {:?}", b.into_inner().bill)),
                    Err(e) => failures.push(format!("{i}: {e:?}")),
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }
    });
    let wait_calls = |more: u64| {
        let calls = calls.clone();
        async move {
            let from = calls.load(Ordering::Relaxed);
            eventually(Duration::from_secs(20), "release N serving", || {
                let calls = calls.clone();
                async move { calls.load(Ordering::Relaxed) >= from + more }
            })
            .await;
        }
    };
    wait_calls(5).await;

    // Expand, while N serves. A lock wait fails after 2 s instead of queuing N's writes behind
    // it: a guard, not a measurement.
    let ddl = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET lock_timeout = '2s'").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&s.db)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(fixture("expand.sql")))
        .execute(&ddl)
        .await
        .unwrap();
    wait_calls(5).await;
    let backfill = fixture("backfill.sql");
    while sqlx::query(sqlx::AssertSqlSafe(backfill.clone()))
        .execute(&ddl)
        .await
        .unwrap()
        .rows_affected()
        > 0
    {}
    wait_calls(5).await;

    // N+1 beside N: each reads what the other wrote.
    assert_eq!(
        vehicle_as_n1(&ddl, "ROLL-OLD").await.as_deref(),
        Some("MH12AB1234"),
        "N+1 reads a row N wrote before the expand (backfilled)"
    );
    sqlx::query(NEW_INSERT)
        .bind("ROLL-NEW")
        .bind("KA01XY9999")
        .execute(&ddl)
        .await
        .unwrap();
    assert_eq!(vehicle_as_n(&mut n, &bina, "ROLL-NEW").await, "KA01XY9999");
    set_vehicle_as_n(&mut n, &bina, "ROLL-NEW", "KA01XY0000").await;
    assert_eq!(
        vehicle_as_n1(&ddl, "ROLL-NEW").await.as_deref(),
        Some("KA01XY0000")
    );
    sqlx::query(NEW_UPDATE)
        .bind("ROLL-OLD")
        .bind("DL3CAB0001")
        .execute(&ddl)
        .await
        .unwrap();
    assert_eq!(vehicle_as_n(&mut n, &bina, "ROLL-OLD").await, "DL3CAB0001");
    let drift = db_i64(
        &ddl,
        "SELECT count(*) FROM billing.bills WHERE vehicle_registration IS DISTINCT FROM vehicle_number",
    )
    .await;
    assert_eq!(drift, 0, "the two columns agree on every row");

    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "release N's calls failed: {failures:?}"
    );
    let made = db_i64(
        &ddl,
        "SELECT count(*) FROM billing.bills WHERE bill_id LIKE 'ROLL-0%'",
    )
    .await;
    assert!(made >= 15, "N served through the expand: {made} bills");

    // Contract, once no N pod runs.
    s.billings.pop().unwrap().stop().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(fixture("contract.sql")))
        .execute(&ddl)
        .await
        .unwrap();
    sqlx::query(NEW_INSERT)
        .bind("ROLL-NEW2")
        .bind("GJ05ZZ0002")
        .execute(&ddl)
        .await
        .unwrap();
    assert_eq!(
        vehicle_as_n1(&ddl, "ROLL-OLD").await.as_deref(),
        Some("DL3CAB0001")
    );
    // Release N's own read of a bill (the column list its code uses).
    let old_read = format!(
        "SELECT {} FROM billing.bills b",
        tracetrack_billing::store::BILL_COLUMNS
    );
    let e = sqlx::query(sqlx::AssertSqlSafe(old_read))
        .fetch_all(&ddl)
        .await
        .unwrap_err();
    assert_eq!(
        e.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("42703"),
        "after the contract N's statement names a column that is gone: {e}"
    );
}
