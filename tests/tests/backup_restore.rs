//! The backup and restore drill of docs/operations.md § 6, on one service: billing's schema is
//! dumped (`pg_dump -n billing -Fc`) while the system runs, more bills are made, billing is
//! stopped and only its schema restored (`pg_restore --clean` into the same database), then
//! started again. Its relay's publish sequence is now behind the Redis stream that consumers have
//! read; new events must still reach them (under ids after the stream's last one). Then the
//! registry and billing disagree about the parents attached after the dump:
//! `tracetrack-billing reconcile` lists that, and `--repair` makes the registry agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_tests::*;

/// The bin directory of the PostgreSQL that scripts/stack.sh installs and runs (its `PGBIN=`).
fn pg_bin(tool: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .arg("install")
        .output()
        .unwrap();
    assert!(out.status.success(), "stack.sh install: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PGBIN="))
        .expect("stack.sh install prints PGBIN=");
    PathBuf::from(dir.trim()).join(tool)
}

/// Runs a tool without blocking the services this test runs in-process.
async fn run(cmd: &mut tokio::process::Command) -> String {
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tracetrack-billing reconcile [--repair]` against the test database: (exit code, stdout).
/// Log lines (on stdout too) are left out: the report's lines have tabs, and the count ends it.
async fn reconcile(s: &BillingStack, repair: bool) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(workspace_bin("tracetrack-billing"));
    cmd.arg("reconcile")
        .arg("--registry-database-url")
        .arg(&s.db)
        .env("TRACETRACK_DATABASE__URL", &s.db)
        .env("TRACETRACK_REGISTRY_URL", s.registry_urls())
        .env("TRACETRACK_AUTH__URL", s.auth.url())
        .env("TRACETRACK_AUTH__SERVICE_TOKEN", service_token("billing"));
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd.output().await.unwrap();
    let stdout: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains('\t') || l.ends_with(" differences"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "reconcile: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

/// The stream entry (its sequence) that carries `event_id`, if the stream has it.
async fn entry_of(stream: &str, event_id: &str) -> Option<i64> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let r: redis::streams::StreamRangeReply = c.xrange_all(stream).await.unwrap();
    r.ids
        .iter()
        .find(|e| e.get::<String>("event_id").as_deref() == Some(event_id))
        .map(|e| e.id.split_once('-').unwrap().0.parse().unwrap())
}

async fn stream_top(stream: &str) -> i64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let r: redis::streams::StreamRangeReply = c.xrevrange_count(stream, "+", "-", 1).await.unwrap();
    r.ids
        .first()
        .map_or(0, |e| e.id.split_once('-').unwrap().0.parse().unwrap())
}

/// Every billing event written so far is published and applied by stats.
async fn all_consumed(db: &sqlx::PgPool) {
    eventually(
        Duration::from_secs(20),
        "billing's events consumed",
        || async {
            db_i64(
                db,
                "SELECT count(*) FROM billing.outbox o WHERE o.published_at IS NULL \
               OR NOT EXISTS (SELECT 1 FROM stats.audit_events a WHERE a.event_id = o.event_id)",
            )
            .await
                == 0
        },
    )
    .await;
}

async fn attach(s: &BillingStack, token: &str, bill: &str, parent: &str) {
    let req = pb::AttachParentRequest {
        bill_id: bill.into(),
        parent_qr: parent.into(),
    };
    s.billing().attach_parent(authed(req, token)).await.unwrap();
}

#[tokio::test]
async fn restoring_billing_alone_keeps_events_flowing_and_reconcile_finds_the_lost_attachments() {
    let mut s = BillingStack::start(1, 1).await;
    let stats = s.start_stats(&redis_url()).await;
    let db = sqlx::PgPool::connect(&s.db).await.unwrap();
    let stream = tracetrack_common::outbox::stream_key(&s.prefix, "billing");
    let (_, bina) = s.user("bina", Role::Biller, "").await;
    let (_, ravi) = s.user("ravi", Role::Dispatcher, "lucknow").await;
    for p in ["SB73001", "SB73002", "SB73003", "SB73004"] {
        s.scan_parent(&ravi, p, "").await.unwrap();
    }
    let bill = |id: &str| pb::CreateBillRequest {
        bill_id: id.into(),
        capacity: 3,
        ..Default::default()
    };
    s.open_bill(&bina, bill("DRILL-1"), &["SB73001".into()])
        .await;
    all_consumed(&db).await;

    // The backup, taken while everything runs.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("billing.dump");
    run(tokio::process::Command::new(pg_bin("pg_dump"))
        .args(["--format=custom", "--schema=billing", "--file"])
        .arg(&dump)
        .arg(&s.db))
    .await;

    // Work after the backup: a parent attached to the old bill, a new bill with one.
    attach(&s, &bina, "DRILL-1", "SB73002").await;
    s.open_bill(&bina, bill("DRILL-2"), &["SB73003".into()])
        .await;
    all_consumed(&db).await;
    let seen = db_i64(&db, "SELECT last_seq FROM billing.outbox_sequence").await;
    assert_eq!(stream_top(&stream).await, seen);

    // Restore billing alone, the service stopped.
    s.billings.pop().unwrap().stop().await.unwrap();
    run(tokio::process::Command::new(pg_bin("pg_restore"))
        .args(["--clean", "--if-exists", "--single-transaction", "--dbname"])
        .arg(&s.db)
        .arg(&dump))
    .await;
    let restored = db_i64(&db, "SELECT last_seq FROM billing.outbox_sequence").await;
    assert!(
        restored < seen,
        "the restored sequence ({restored}) is behind what consumers saw ({seen})"
    );
    assert_eq!(
        db_i64(
            &db,
            "SELECT count(*) FROM billing.bills WHERE bill_id = 'DRILL-2'"
        )
        .await,
        0
    );
    // Rows that were not yet published when the dump was taken come back unpublished (simulated
    // here on DRILL-1's, which were): they are published again under new ids.
    let requeued = sqlx::query(
        "UPDATE billing.outbox SET published_at = NULL, seq = NULL WHERE aggregate_id = 'DRILL-1'",
    )
    .execute(&db)
    .await
    .unwrap()
    .rows_affected();
    assert!(requeued > 0);
    let duplicates_before = metric(stats.admin_addr, "consumer_duplicates_total").await;
    let settings = billing_settings(&s.db, &redis_url(), &s.prefix, &s.auth, &s.registry_urls());
    s.billings.push(start_billing(settings).await);

    // A new event after the restore reaches the stream after its last id, and stats applies it
    // (with its id re-used it would be refused by Redis, or dropped as seen).
    s.open_bill(&bina, bill("DRILL-3"), &[]).await;
    let event_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT event_id FROM billing.outbox WHERE aggregate_id = 'DRILL-3' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let id = event_id.to_string();
    eventually(
        Duration::from_secs(20),
        "DRILL-3's event in the stream",
        || {
            let (stream, id) = (stream.clone(), id.clone());
            async move { entry_of(&stream, &id).await.is_some() }
        },
    )
    .await;
    let seq = entry_of(&stream, &id).await.unwrap();
    assert!(seq > seen, "new event at {seq}, after the stream's {seen}");
    all_consumed(&db).await;
    // The re-published rows: after the stream's top too, and dropped by stats as duplicates.
    assert_eq!(
        db_i64(
            &db,
            "SELECT count(*) FROM billing.outbox WHERE aggregate_id = 'DRILL-1' AND seq IS NULL"
        )
        .await,
        0
    );
    let min_requeued: i64 =
        sqlx::query_scalar("SELECT min(seq) FROM billing.outbox WHERE aggregate_id = 'DRILL-1'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        min_requeued > seen,
        "re-published at {min_requeued}, after {seen}"
    );
    let stats_admin = stats.admin_addr;
    eventually(
        Duration::from_secs(20),
        "stats drops them as duplicates",
        || async move {
            metric(stats_admin, "consumer_duplicates_total").await
                >= duplicates_before + requeued as f64
        },
    )
    .await;

    // The registry still has the two parents attached after the backup; billing does not.
    let (code, out) = reconcile(&s, false).await;
    assert_eq!(code, 2, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "registry_only\tSB73002\tregistry:DRILL-1\tbilling:-\tbilling has the bill without this parent",
            "registry_only\tSB73003\tregistry:DRILL-2\tbilling:-\tbilling has no such bill",
            "2 differences",
        ],
        "{out}"
    );

    // Repair: the registry releases them; a biller can attach SB73002 again.
    let (code, out) = reconcile(&s, true).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("repair\treleased\tregistry_only\tSB73002"),
        "{out}"
    );
    assert!(
        out.contains("repair\treleased\tregistry_only\tSB73003"),
        "{out}"
    );
    assert!(out.ends_with("0 differences\n"), "{out}");
    attach(&s, &bina, "DRILL-1", "SB73002").await;

    // The other way round (the registry restored to before a claim, simulated by clearing it):
    // billing has SB73001 confirmed on DRILL-1, the registry on no bill; repair claims it again.
    sqlx::query("UPDATE registry.bags SET bill_id = NULL WHERE qr = 'SB73001'")
        .execute(&db)
        .await
        .unwrap();
    let (code, out) = reconcile(&s, false).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("billing_only\tSB73001\tregistry:-\tbilling:DRILL-1\tattachment confirmed"),
        "{out}"
    );
    let (code, out) = reconcile(&s, true).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("repair\tclaimed\tbilling_only\tSB73001"),
        "{out}"
    );
    assert_eq!(
        db_i64(
            &db,
            "SELECT count(*) FROM registry.bags WHERE qr = 'SB73001' AND bill_id = 'DRILL-1'"
        )
        .await,
        1
    );
}
