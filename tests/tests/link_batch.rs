//! Group commit (issue 18, direction 2): bag-registry's concurrent LinkChild calls share one
//! transaction and one commit, and so do scan's records; each answers exactly as it would
//! alone, in arrival order. The services here close a batch by count (`fill`, three jobs),
//! never by a timer, so each group of three concurrent calls below is one batch; rows committed
//! in one transaction share their `xmin`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use tracetrack_bag_registry::config::ProductLineSettings;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

async fn batched_stack() -> Stack {
    Stack::start_with(1, &redis_url(), |s| {
        s.link_batch.max = 3;
        s.link_batch.workers = 1;
        s.link_batch.fill = true;
        s.product_lines.push(ProductLineSettings {
            name: "tiny".into(),
            parent_pattern: r"^T9\d{3}$".into(),
            capacity: 2,
            parent_weight_kg: 2.0,
            child_weight_kg: 1.0,
        });
    })
    .await
}

type Link<'a> = (&'a str, &'a str, &'a str);

/// Three LinkChild calls at once (parent, child, idempotency key), as scan makes them for `user`.
async fn three(
    stack: &Stack,
    user: &str,
    links: [Link<'_>; 3],
) -> Vec<Result<reg::LinkChildResponse, AppError>> {
    join_all(links.map(|(parent, child, key)| {
        let req = reg::LinkChildRequest {
            parent_qr: parent.into(),
            child_qr: child.into(),
        };
        let mut req = stack.as_service(req, Some(user), "scan");
        req.metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        let mut client = stack.registry_client();
        async move { answer(client.link_child(req)).await }
    }))
    .await
}

/// How many transactions wrote these bags' rows.
async fn transactions(stack: &Stack, qrs: &[&str]) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM registry.bags WHERE qr = ANY($1)")
        .bind(qrs)
        .fetch_one(&stack.registries[0].pool)
        .await
        .unwrap()
}

fn counts(answers: &[Result<reg::LinkChildResponse, AppError>]) -> Vec<i32> {
    let mut c: Vec<i32> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|a| a.parent.as_ref().unwrap().child_count)
        .collect();
    c.sort();
    c
}

#[tokio::test]
async fn a_batch_answers_each_link_as_serial_execution_would() {
    let stack = batched_stack().await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "lucknow").await;
    for p in ["SB72001", "SB72002", "SB72003", "SB72004"] {
        stack.scan_parent(&dev, p, "").await.unwrap();
    }

    // One batch, one transaction: each answer's count is the count after its own link.
    let a = three(
        &stack,
        &dev,
        [
            ("SB72001", "KB0001", "b-1"),
            ("SB72001", "KB0002", "b-2"),
            ("SB72002", "KB0003", "b-3"),
        ],
    )
    .await;
    assert!(a
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| !r.already_linked)));
    let into_first: Vec<i32> = a[..2]
        .iter()
        .map(|r| r.as_ref().unwrap().parent.as_ref().unwrap().child_count)
        .collect();
    let mut sorted = into_first.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2], "{into_first:?}");
    assert_eq!(
        a[2].as_ref().unwrap().parent.as_ref().unwrap().child_count,
        1
    );
    assert_eq!(
        transactions(&stack, &["KB0001", "KB0002", "KB0003"]).await,
        1
    );

    // The same child twice in one batch (two keys): the second sees the first committed.
    let b = three(
        &stack,
        &dev,
        [
            ("SB72003", "KB0004", "b-4"),
            ("SB72003", "KB0004", "b-5"),
            ("SB72003", "KB0005", "b-6"),
        ],
    )
    .await;
    let already: Vec<bool> = b[..2]
        .iter()
        .map(|r| r.as_ref().unwrap().already_linked)
        .collect();
    assert_eq!(already.iter().filter(|x| **x).count(), 1, "{already:?}");
    assert_eq!(stack.bag(&dev, "SB72003").await.unwrap().child_count, 2);

    // The same key twice in one batch (a retry): one link, the same answer for both.
    let c = three(
        &stack,
        &dev,
        [
            ("SB72004", "KB0006", "b-7"),
            ("SB72004", "KB0006", "b-7"),
            ("SB72004", "KB0007", "b-8"),
        ],
    )
    .await;
    assert_eq!(c[0].as_ref().unwrap(), c[1].as_ref().unwrap());
    assert!(!c[0].as_ref().unwrap().already_linked);

    let events = db_i64(
        &stack.registries[0].pool,
        "SELECT count(*) FROM registry.outbox WHERE event_type = 'registry.child_linked' \
         AND aggregate_id LIKE 'KB%'",
    )
    .await;
    assert_eq!(events, 7, "one event per link, none for the repeats");
}

#[tokio::test]
async fn a_parent_filled_or_frozen_in_a_batch_refuses_only_its_own_links() {
    let stack = batched_stack().await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "lucknow").await;
    let admin = stack.admin.clone();
    for p in ["T9001", "T9002"] {
        stack
            .register(&admin, p, reg::BagType::Parent, "lucknow")
            .await
            .unwrap();
    }
    for p in ["SB73001", "SB73002"] {
        stack.scan_parent(&dev, p, "").await.unwrap();
    }

    // Three children into a parent of two, in one batch: two linked, one `parent_full`, none lost.
    let a = three(
        &stack,
        &dev,
        [
            ("T9001", "KF0001", "f-1"),
            ("T9001", "KF0002", "f-2"),
            ("T9001", "KF0003", "f-3"),
        ],
    )
    .await;
    assert_eq!(counts(&a), [1, 2]);
    let refused: Vec<ErrorCode> = a
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.code)
        .collect();
    assert_eq!(refused, [ErrorCode::ParentFull]);
    assert_eq!(stack.bag(&dev, "T9001").await.unwrap().child_count, 2);

    // A parent already full and a frozen one in a batch with a good link: the good link is kept.
    stack.claim_for_bill("SB73001", "BILL-73").await.unwrap();
    stack.freeze_for_bill("BILL-73").await.unwrap();
    let b = three(
        &stack,
        &dev,
        [
            ("T9001", "KF0004", "f-4"),
            ("SB73001", "KF0005", "f-5"),
            ("SB73002", "KF0006", "f-6"),
        ],
    )
    .await;
    assert_eq!(b[0].as_ref().unwrap_err().code, ErrorCode::ParentFull);
    assert_eq!(b[1].as_ref().unwrap_err().code, ErrorCode::ParentFrozen);
    let ok = b[2].as_ref().unwrap();
    assert_eq!(ok.parent.as_ref().unwrap().child_count, 1);
    assert_eq!(ok.child.as_ref().unwrap().parent_qr, "SB73002");
    assert!(stack.bag(&dev, "KF0004").await.is_err());
    assert_eq!(stack.bag(&dev, "SB73001").await.unwrap().child_count, 0);

    // A child linked elsewhere, in a batch with links into a filling parent.
    let c = three(
        &stack,
        &dev,
        [
            ("T9002", "KF0006", "f-7"),
            ("T9002", "KF0007", "f-8"),
            ("T9002", "KF0008", "f-9"),
        ],
    )
    .await;
    assert_eq!(
        c[0].as_ref().unwrap_err().code,
        ErrorCode::ChildLinkedElsewhere
    );
    assert_eq!(counts(&c), [1, 2]);
    assert_eq!(transactions(&stack, &["KF0007", "KF0008"]).await, 1);
}

#[tokio::test]
async fn scans_recorded_in_one_batch_share_a_commit_and_a_key_answers_once() {
    let stack = Stack::start_configured(
        1,
        &redis_url(),
        |_| {},
        |s| {
            s.record_batch.max = 3;
            s.record_batch.workers = 1;
            s.record_batch.fill = true;
        },
    )
    .await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "lucknow").await;
    let scan = |parent: &str, child: &str, key: &str| {
        let req = tracetrack_proto::scan::v1::ScanChildRequest {
            parent_qr: parent.into(),
            child_qr: child.into(),
        };
        let mut req = authed(req, &dev);
        req.metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        let mut client = stack.scan_client();
        async move { answer(client.scan_child(req)).await }
    };
    // Three parents at once: one batch, one statement, one commit.
    let parents =
        join_all(["SB74001", "SB74002", "SB74003"].map(|p| stack.scan_parent(&dev, p, ""))).await;
    assert!(parents.iter().all(Result::is_ok), "{parents:?}");
    let pool = &stack.scan.pool;
    let commits: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM scan.scan_events WHERE parent_qr LIKE 'SB7400%'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(commits, 1);

    // The same request three times under one key (a phone's retries): the key repeats, so the
    // repeats wait for later batches and get the first answer; one scan is recorded.
    let same = join_all((0..3).map(|_| scan("SB74001", "KS0001", "s-1"))).await;
    let first = same[0].as_ref().unwrap();
    assert!(
        same.iter().all(|r| r.as_ref().ok() == Some(first)),
        "{same:?}"
    );
    // A refusal is recorded with the others in one batch and fails none of them.
    let mixed = join_all([
        scan("SB74002", "KS0001", "s-2"),
        scan("SB74002", "KS0002", "s-3"),
        scan("SB74003", "KS0003", "s-4"),
    ])
    .await;
    assert_eq!(
        mixed[0].as_ref().unwrap_err().code,
        ErrorCode::ChildLinkedElsewhere
    );
    assert!(mixed[1].is_ok() && mixed[2].is_ok(), "{mixed:?}");
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT child_qr, outcome FROM scan.scan_events WHERE child_qr LIKE 'KS%' ORDER BY child_qr, outcome",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let recorded: Vec<(&str, &str)> = recorded
        .iter()
        .map(|(c, o)| (c.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("KS0001", "child_linked_elsewhere"),
            ("KS0001", "ok"),
            ("KS0002", "ok"),
            ("KS0003", "ok")
        ]
    );
}
