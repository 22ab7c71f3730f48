//! Returns in Chromium (tests/browser/returns.test.mjs; node + playwright-core + Chromium from
//! scripts/browser-deps.sh), issue 16's "done when": a biller at 360 px in Hindi takes 3 sacks
//! back from a completed bill on a return ticket, commits it and bills one again; the bill's page
//! and document, the dashboard, the sack's history and the audit trail show the return; the EPCIS
//! export the admin downloads in the browser validates against GS1's JSON schema (checked here,
//! with tests/python/validate_epcis.py in the project venv). The stack is real: auth, registry,
//! scan, billing, stats and the gateway on Postgres and Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::browser::NodeTests;
use tracetrack_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_biller_returns_sacks_and_rebills_one_in_chromium() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let billing = stack.billings[0].url();
    let gw = Gateway::start(&stack, |g| {
        g.stats_url = stats.url();
        g.billing_url = billing.clone();
        g.rate_limits.enabled = false;
    })
    .await;
    stack.user("bina", Role::Biller, "").await;

    let dir = tempfile::tempdir().unwrap();
    let epcis = dir.path().join("after-returns.jsonld");
    NodeTests::new(&["returns.test.mjs"], gw.addr)
        .screenshots("screenshots/returns")
        .env("TT_BILLER", "bina")
        .env("TT_EPCIS_OUT", &epcis)
        .run()
        .await;

    // The export the browser downloaded after the return validates against GS1's schema.
    let (code, out) = validate_epcis(&[&epcis]);
    assert_eq!(code, 0, "{out}");

    // What the pages did is what billing holds: three returns of B-RTN-76 on one committed
    // ticket, and SB76002 on B-RTN-77.
    let pool = stack.billing_pool();
    let (returns, tickets): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT ticket_id) FROM billing.returns WHERE bill_id = 'B-RTN-76' AND state = 'returned'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((returns, tickets), (3, 1));
    let status: String = sqlx::query_scalar(
        "SELECT t.status FROM billing.return_tickets t JOIN billing.returns r USING (ticket_id) LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(status, "committed");
}
