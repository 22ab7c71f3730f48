//! The web client's pages in a real browser (tests/browser/pages.test.mjs, Debian's Chromium
//! through playwright-core): every page for each role with no console error, the role matrix
//! (a dispatcher sees no admin controls), the scan station at 360 px with a wedge scanner (the
//! capacity hand-off, a parent scan queued offline, a reload without network through the service
//! worker), lists' empty/loading/error states in both languages, and screenshots of every page at
//! 360 px and 1280 px in tests/browser/screenshots/pages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

#[tokio::test]
async fn every_page_in_chromium() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let billing = stack.billings[0].url();
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.billing_url = billing.clone();
    })
    .await;
    stack.user("dora", Role::Dispatcher, "lucknow").await;
    stack.user("bina", Role::Biller, "").await;

    let root = repo_root();
    let out = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-concurrency=1")
        .arg(root.join("tests/browser/pages.test.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("TT_BASE_URL", format!("http://{}", gw.addr))
        .env(
            "TT_SCREENSHOTS",
            root.join("tests/browser/screenshots/pages"),
        )
        .env("TT_DISPATCHER", "dora")
        .env("TT_BILLER", "bina")
        .env("TT_PASSWORD", USER_PASSWORD)
        .env("TT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (scripts/browser-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");

    // Whatever the pages went through (offline parent scans, reloads without network, a refusal
    // sent again after the packet was taken out of its first sack, an undo and the scan again),
    // each child was scanned into each parent once beyond its undos, and every link has its scan.
    let pool = stack.registry_pool();
    let twice: Vec<(String, String, i64)> = sqlx::query_as(
        r#"SELECT child_qr, parent_qr, count(*) FROM scan.scan_events
           WHERE kind IN ('child', 'undo') AND outcome = 'ok' AND child_qr IS NOT NULL
           GROUP BY 1, 2
           HAVING count(*) FILTER (WHERE kind = 'child') - count(*) FILTER (WHERE kind = 'undo') > 1"#,
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
}
