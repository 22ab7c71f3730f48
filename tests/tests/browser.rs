//! The web client in a real browser: starts the whole stack and the gateway, then runs the
//! Playwright tests in tests/browser (Debian's Chromium, playwright-core from the lockfile; both
//! installed by scripts/browser-deps.sh, which `make test` runs). Screenshots land in
//! tests/browser/screenshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

#[tokio::test]
async fn the_web_client_in_chromium() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let billing = stack.billings[0].url();
    let gw = Gateway::start(&stack, |s| {
        s.stats_url = stats.url();
        s.billing_url = billing.clone();
    })
    .await;
    stack.user("dina", Role::Dispatcher, "lucknow").await;
    let root = repo_root();
    let out = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-concurrency=1")
        .arg(root.join("tests/browser/scan-station.test.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("TT_BASE_URL", format!("http://{}", gw.addr))
        .env("TT_SCREENSHOTS", root.join("tests/browser/screenshots"))
        .env("TT_DISPATCHER", "dina")
        .env("TT_PASSWORD", USER_PASSWORD)
        .env("TT_ADMIN_PASSWORD", ADMIN_PASSWORD)
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
}
