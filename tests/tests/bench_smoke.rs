//! The benchmark tool works end to end (issue 8's CI smoke): `scripts/bench-smoke.sh` starts the
//! whole stack on its own ports, seeds 50,000 bags through the bulk RPCs and verifies the counts
//! through the API, runs every scenario briefly (closed loop and fixed rate) with `--check`
//! (every request answered, no errors), summarises the runs, and stops the stack. It checks that
//! the tool works, not how fast anything is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_tests::*;

#[tokio::test]
async fn the_benchmark_tool_seeds_runs_every_scenario_and_summarises() {
    let root = repo_root();
    let out = tokio::process::Command::new("bash")
        .arg(root.join("scripts/bench-smoke.sh"))
        .current_dir(&root)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "bench smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    // Every step the script defines passed (their number grows with the script).
    assert!(
        last.starts_with("bench smoke: ") && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}
