//! stats: read models fed by events converge to the owning services' data, survive Redis
//! restarting empty and a consumer crash without losing or double-counting anything, rebuild from
//! the stored events, and hold the audit trail and each bag's history.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::transport::Channel;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as bill;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::stats::v1 as pb;
use tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient;
use tracetrack_tests::redis_server::RedisServer;
use tracetrack_tests::*;

fn client(stats: &Running) -> StatsServiceClient<Channel> {
    StatsServiceClient::new(Channel::from_shared(stats.url()).unwrap().connect_lazy())
}

async fn dashboard(stats: &Running, token: &str) -> pb::Dashboard {
    client(stats)
        .get_dashboard(authed(pb::GetDashboardRequest {}, token))
        .await
        .unwrap()
        .into_inner()
}

/// Waits (generous bound, not a timing assertion) until the dashboard equals the truth.
async fn converge(stack: &Stack, stats: &Running) -> pb::Dashboard {
    let pool = &stack.registries[0].pool;
    let start = std::time::Instant::now();
    loop {
        let want = truth(pool).await;
        let d = dashboard(stats, &stack.admin).await;
        if dashboard_figures(&d) == want {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "dashboard did not converge:\n got {:?}\nwant {:?}",
            dashboard_figures(&d),
            want
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A little of everything: parents in two areas, children, a double fire, a refusal, an undo,
/// a move, a registered loose child and a deletion.
async fn workload(stack: &Stack, tag: &str) {
    let admin = &stack.admin;
    stack
        .scan_parent(admin, &format!("SB{tag}01"), "lucknow")
        .await
        .unwrap();
    stack
        .scan_parent(admin, &format!("SB{tag}02"), "indore")
        .await
        .unwrap();
    for i in 0..5 {
        stack
            .scan_child(admin, &format!("SB{tag}01"), &format!("L{tag}{i:03}"))
            .await
            .unwrap();
    }
    for i in 0..3 {
        stack
            .scan_child(admin, &format!("SB{tag}02"), &format!("I{tag}{i:03}"))
            .await
            .unwrap();
    }
    stack
        .scan_child(admin, &format!("SB{tag}02"), &format!("I{tag}000"))
        .await
        .unwrap(); // double fire
    stack
        .scan_child(admin, &format!("SB{tag}02"), &format!("L{tag}000"))
        .await
        .unwrap_err(); // elsewhere
    stack.undo(admin, &format!("SB{tag}02")).await.unwrap();
    let mut r = stack.registry_client();
    r.move_child(authed(
        reg::MoveChildRequest {
            child_qr: format!("L{tag}004"),
            parent_qr: format!("SB{tag}02"),
        },
        admin,
    ))
    .await
    .unwrap();
    for (qr, kind) in [
        (format!("LOOSE{tag}"), reg::BagType::Child),
        (format!("SB{tag}03"), reg::BagType::Parent),
    ] {
        stack.register(admin, &qr, kind, "hisar").await.unwrap();
    }
    r.delete_bag(authed(
        reg::DeleteBagRequest {
            qr: format!("SB{tag}03"),
        },
        admin,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn dashboard_converges_and_rebuilds_to_the_same_figures() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    workload(&stack, "100").await;
    let before = converge(&stack, &stats).await;
    assert!(before.scans_today >= 8, "{before:?}");
    let lucknow = before.areas.iter().find(|a| a.area == "lucknow").unwrap();
    // Five linked in lucknow, one of them moved to indore.
    assert_eq!((lucknow.parents, lucknow.children), (1, 4));

    // Rebuild from the stored events: the same figures.
    let (handler, _) = tracetrack_stats::startup::handler(&tracetrack_stats::Settings::default());
    let n = tracetrack_stats::startup::rebuild(&stats.pool, &handler)
        .await
        .unwrap();
    assert!(n > 20);
    let after = dashboard(&stats, &stack.admin).await;
    assert_eq!(dashboard_figures(&after), dashboard_figures(&before));
    assert_eq!(after.scans_last_hour, before.scans_last_hour);

    // A dispatcher sees their own area only.
    let (_, dev) = stack.user("dev", Role::Dispatcher, "indore").await;
    let mine = dashboard(&stats, &dev).await;
    assert!(mine.areas.iter().all(|a| a.area == "indore"), "{mine:?}");
}

#[tokio::test]
async fn redis_killed_and_restarted_empty_loses_nothing_and_counts_nothing_twice() {
    let mut redis = RedisServer::start();
    let stack = Stack::start_on(1, &redis.url()).await;
    let stats = stack.start_stats(&redis.url()).await;
    workload(&stack, "200").await;
    converge(&stack, &stats).await;

    // kill -9 Redis mid-stream; scanning goes on meanwhile (events wait in the outboxes).
    redis.kill();
    let admin = stack.admin.clone();
    stack
        .scan_parent(&admin, "SB20099", "jaipur")
        .await
        .unwrap();
    for i in 0..10 {
        stack
            .scan_child(&admin, "SB20099", &format!("J200{i:03}"))
            .await
            .unwrap();
    }
    redis.restart();
    workload(&stack, "201").await;
    let d = converge(&stack, &stats).await;
    let jaipur = d.areas.iter().find(|a| a.area == "jaipur").unwrap();
    assert_eq!(jaipur.children, 10);
}

#[tokio::test]
async fn a_crashed_consumer_loses_nothing_and_applies_nothing_twice() {
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    workload(&stack, "300").await;
    converge(&stack, &stats).await;
    // Crash stats while events keep coming; a new process claims what was left pending.
    let db = stack.db.clone();
    let admin = stack.admin.clone();
    let burst = async {
        stack
            .scan_parent(&admin, "SB30099", "ranchi")
            .await
            .unwrap();
        for i in 0..25 {
            stack
                .scan_child(&admin, "SB30099", &format!("R300{i:03}"))
                .await
                .unwrap();
        }
    };
    let crash = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stats.crash();
    };
    tokio::join!(burst, crash);
    let restarted = start_stats(stats_settings(
        &db,
        &redis_url(),
        &stack.prefix,
        &stack.auth,
    ))
    .await;
    let d = converge(&stack, &restarted).await;
    assert_eq!(
        d.areas
            .iter()
            .find(|a| a.area == "ranchi")
            .unwrap()
            .children,
        25
    );
    // The audit trail is also the consumer's record of what it applied: each link kept once.
    let stored = db_i64(
        &restarted.pool,
        "SELECT count(*) FROM stats.audit_events \
         WHERE event_type = 'registry.child_linked' AND payload->>'parent_qr' = 'SB30099'",
    )
    .await;
    assert_eq!(stored, 25, "each event applied and kept exactly once");
}

#[tokio::test]
async fn audit_trail_and_bag_history() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let admin = stack.admin.clone();
    let (user, token) = stack.user("ravi", Role::Dispatcher, "akola").await;
    for _ in 0..5 {
        stack.auth.login("ravi", "wrong").await.unwrap_err();
    }
    // The lockout does not end sessions already open: ravi's token still scans.
    stack.scan_parent(&token, "SB40001", "").await.unwrap();
    stack.scan_parent(&admin, "SB40001", "akola").await.unwrap();
    stack
        .scan_child(&admin, "SB40001", "HIST0001")
        .await
        .unwrap();
    stack.undo(&admin, "SB40001").await.unwrap();
    stack
        .scan_child(&admin, "SB40001", "HIST0001")
        .await
        .unwrap();
    // Bill changes: created, edited, the parent attached, detached and attached again.
    let req = bill::CreateBillRequest {
        bill_id: "BL-HIST-1".into(),
        capacity: 2,
        ..Default::default()
    };
    stack.open_bill(&admin, req, &[]).await;
    let mut billing = stack.billing();
    billing
        .update_bill(authed(
            bill::UpdateBillRequest {
                bill_id: "BL-HIST-1".into(),
                vehicle_number: Some("MH30AB1234".into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let attach = || bill::AttachParentRequest {
        bill_id: "BL-HIST-1".into(),
        parent_qr: "SB40001".into(),
    };
    billing
        .attach_parent(authed(attach(), &admin))
        .await
        .unwrap();
    billing
        .detach_parent(authed(
            bill::DetachParentRequest {
                bill_id: "BL-HIST-1".into(),
                parent_qr: "SB40001".into(),
            },
            &admin,
        ))
        .await
        .unwrap();
    billing
        .attach_parent(authed(attach(), &admin))
        .await
        .unwrap();

    let mut c = client(&stats);
    let want = [
        "auth.login_succeeded",
        "auth.login_failed",
        "auth.login_locked",
        "auth.user_created",
        "scan.recorded",
        "registry.child_linked",
        "billing.bill_created",
        "billing.bill_updated",
        "billing.parent_attached",
        "billing.parent_detached",
    ];
    let start = std::time::Instant::now();
    loop {
        let page = c
            .list_audit_events(authed(
                pb::ListAuditEventsRequest {
                    page_size: 200,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let actions: Vec<&str> = page.events.iter().map(|e| e.action.as_str()).collect();
        if want.iter().all(|w| actions.contains(w)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "audit trail incomplete: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Filters: by user, by action prefix; newest first with keyset pages.
    let mine = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                user_id: user.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.events.iter().all(|e| e.actor_user_id == user.id));
    let auth_only = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                action: "auth.".into(),
                page_size: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth_only.events.len(), 2);
    assert!(auth_only
        .events
        .iter()
        .all(|e| e.action.starts_with("auth.")));
    assert!(!auth_only.next_page_token.is_empty());
    let e = code_of(
        c.list_audit_events(authed(pb::ListAuditEventsRequest::default(), &token))
            .await,
    );
    assert!(
        matches!(e, ErrorCode::PermissionDenied | ErrorCode::Unauthenticated),
        "{e:?}"
    );

    // The child's history, in order: linked, unlinked by the undo, linked again.
    let start = std::time::Instant::now();
    loop {
        let h = c
            .get_bag_history(authed(
                pb::GetBagHistoryRequest {
                    qr: "hist0001".into(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let actions: Vec<&str> = h.events.iter().map(|e| e.action.as_str()).collect();
        if actions
            == [
                "registry.child_linked",
                "registry.child_unlinked",
                "registry.child_linked",
            ]
        {
            assert!(
                h.events[1].details_json.contains(r#""undo":true"#),
                "{:?}",
                h.events[1]
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "history: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The parent's history, once its last bill event has arrived.
    let mut parent = pb::GetBagHistoryResponse::default();
    let start = std::time::Instant::now();
    while parent
        .events
        .iter()
        .filter(|e| e.action.starts_with("billing."))
        .count()
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "parent history: {:?}",
            parent.events
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        parent = c
            .get_bag_history(authed(
                pb::GetBagHistoryRequest {
                    qr: "SB40001".into(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
    }
    assert_eq!(
        parent.events.first().unwrap().action,
        "registry.bag_registered"
    );
    // The parent's history ends with its bill: attached, detached, attached again, in order.
    let bill_steps: Vec<&str> = parent
        .events
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("billing."))
        .collect();
    assert_eq!(
        bill_steps,
        [
            "billing.parent_attached",
            "billing.parent_detached",
            "billing.parent_attached"
        ],
        "{:?}",
        parent.events
    );
    assert!(parent
        .events
        .iter()
        .filter(|e| e.action.starts_with("billing."))
        .all(|e| e.details_json.contains("BL-HIST-1")));
    // The bill's edit is in the audit trail with what changed.
    let edits = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                action: "billing.bill_updated".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edits.events.len(), 1, "{:?}", edits.events);
    assert!(
        edits.events[0].details_json.contains("MH30AB1234"),
        "{:?}",
        edits.events[0]
    );

    // Per-user activity.
    let act = c
        .get_user_activity(authed(
            pb::GetUserActivityRequest {
                user_id: user.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(act.scans_per_day.len(), 14);
    assert!(act.last_login_at.is_some());
}

/// A malformed event among good ones (the batch path): parked with its reason, the others
/// applied, and the figures still exact.
#[tokio::test]
async fn a_poison_event_in_a_batch_is_parked_and_the_rest_applied() {
    use prost::Message;
    let stack = Stack::start(1).await;
    let stats = stack.start_stats(&redis_url()).await;
    workload(&stack, "300").await;
    converge(&stack, &stats).await;
    // A child_linked event without its child, as a buggy producer might write it.
    let bad = tracetrack_proto::events::v1::EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: "registry.child_linked".into(),
        source: "bag-registry".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        payload_json: r#"{"parent_qr": "SB30001", "area": "lucknow", "created": true}"#.into(),
        ..Default::default()
    };
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Written beside the last published event (entry ids are publish sequences: `<seq>-0`; a
    // foreign entry goes in as `<seq>-1`, so the relay's next `<seq + 1>-0` still follows it).
    let last = db_i64(&stats.pool, "SELECT last_seq FROM registry.outbox_sequence").await;
    let _: String = redis::cmd("XADD")
        .arg(tracetrack_common::outbox::stream_key(
            &stack.prefix,
            "bag-registry",
        ))
        .arg(format!("{last}-1"))
        .arg("envelope")
        .arg(bad.encode_to_vec())
        .query_async(&mut redis)
        .await
        .unwrap();
    workload(&stack, "301").await;
    converge(&stack, &stats).await;
    let parked = tracetrack_common::consumer::list_parked(&stats.pool, "stats")
        .await
        .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0.to_string(), bad.event_id);
    assert!(parked[0].2.contains("missing child_qr"), "{parked:?}");
    // Not in the audit trail either: it had no effect at all.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stats.audit_events WHERE event_id = $1")
            .bind(bad.event_id.parse::<uuid::Uuid>().unwrap())
            .fetch_one(&stats.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
}

/// Each bag's history is read from the audit rows (migration 0003): every kind of event that
/// names a bag appears in that bag's history, and in the history of each bag it names.
#[tokio::test]
async fn bag_history_shows_every_kind_of_event_for_each_bag_it_names() {
    let stack = BillingStack::start(1, 1).await;
    let stats = stack.start_stats(&redis_url()).await;
    let admin = stack.admin.clone();
    stack.scan_parent(&admin, "SB41001", "akola").await.unwrap();
    stack.scan_parent(&admin, "SB41002", "akola").await.unwrap();
    stack.scan_child(&admin, "SB41001", "KID41").await.unwrap();
    let mut r = stack.registry_client();
    r.move_child(authed(
        reg::MoveChildRequest {
            child_qr: "KID41".into(),
            parent_qr: "SB41002".into(),
        },
        &admin,
    ))
    .await
    .unwrap();
    r.unlink_child(authed(
        reg::UnlinkChildRequest {
            parent_qr: "SB41002".into(),
            child_qr: "KID41".into(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let req = bill::CreateBillRequest {
        bill_id: "BL-HIST-2".into(),
        capacity: 1,
        ..Default::default()
    };
    stack.open_bill(&admin, req, &["SB41002".into()]).await;

    let mut c = client(&stats);
    // `want` must appear in this order in the bag's history (other events may come between).
    let wait_for = |qr: &'static str, want: &'static [&'static str]| {
        let mut c = c.clone();
        let admin = admin.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let h = c
                    .get_bag_history(authed(pb::GetBagHistoryRequest { qr: qr.into() }, &admin))
                    .await
                    .unwrap()
                    .into_inner();
                let actions: Vec<String> = h.events.iter().map(|e| e.action.clone()).collect();
                let mut rest = actions.iter();
                if want.iter().all(|w| rest.any(|a| a == w)) {
                    return actions;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "{qr} history {actions:?}, want in order {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let child = wait_for(
        "KID41",
        &[
            "registry.child_linked",
            "registry.child_moved",
            "registry.child_unlinked",
        ],
    )
    .await;
    assert_eq!(
        child,
        [
            "registry.child_linked",
            "registry.child_moved",
            "registry.child_unlinked"
        ],
        "the child's history is exactly its link, move and unlink"
    );
    let from = wait_for(
        "SB41001",
        &[
            "registry.bag_registered",
            "registry.child_linked",
            "registry.child_moved",
        ],
    )
    .await;
    assert!(!from.iter().any(|a| a.starts_with("billing.")), "{from:?}");
    wait_for(
        "SB41002",
        &[
            "registry.bag_registered",
            "registry.child_moved",
            "registry.child_unlinked",
            "billing.parent_attached",
        ],
    )
    .await;
    // Another bag's events stay out of it.
    let none = c
        .get_bag_history(authed(
            pb::GetBagHistoryRequest { qr: "KID42".into() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none.events.is_empty(), "{:?}", none.events);
}
