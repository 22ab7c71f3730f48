//! The scanning hot path through real gRPC: scan → bag-registry (two replicas) → auth, real
//! Postgres and Redis. Races run against two registry replicas so no in-process lock can pass
//! for a database guarantee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

#[tokio::test]
async fn sixty_four_children_race_into_a_thirty_child_parent() {
    let stack = Stack::start(2).await;
    let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
    let p = stack.scan_parent(&ravi, "SB10001", "").await.unwrap();
    assert!(p.created);
    assert_eq!(p.parent.as_ref().unwrap().capacity, 30);
    assert_eq!(p.parent.as_ref().unwrap().area, "lucknow");

    let results = join_all((0..64).map(|i| {
        let stack = &stack;
        let ravi = ravi.clone();
        async move {
            stack
                .scan_child(&ravi, "SB10001", &format!("C{i:05}"))
                .await
        }
    }))
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == ErrorCode::ParentFull))
        .count();
    assert_eq!(
        (ok, full),
        (30, 34),
        "{:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect::<Vec<_>>()
    );

    let parent = stack.bag(&ravi, "SB10001").await.unwrap();
    assert_eq!(
        (parent.status.as_str(), parent.child_count, parent.weight_kg),
        ("full", 30, 30.0)
    );
    let pool = &stack.registries[0].pool;
    let links = db_i64(
        pool,
        "SELECT count(*) FROM registry.bags WHERE parent_qr = 'SB10001'",
    )
    .await;
    assert_eq!(links, 30);
    // Refused children were never registered: a failed scan leaves nothing behind.
    let children = db_i64(
        pool,
        "SELECT count(*) FROM registry.bags WHERE kind = 'child'",
    )
    .await;
    assert_eq!(children, 30);

    // The database alone refuses a 31st link, whatever the code does.
    for sql in [
        "INSERT INTO registry.bags (qr, kind, area, parent_qr, linked_at) VALUES ('RAW31', 'child', 'lucknow', 'SB10001', now())",
        "UPDATE registry.bags SET child_count = 31 WHERE qr = 'SB10001'",
    ] {
        let err = sqlx::query(sql).execute(pool).await.unwrap_err();
        assert_eq!(
            tracetrack_common::db::check_violation(&err),
            Some("bags_child_count_within_capacity"),
            "{sql}"
        );
    }
    // And counts follow links even for raw SQL: unlinking one by hand frees a place.
    sqlx::query("UPDATE registry.bags SET parent_qr = NULL, linked_at = NULL WHERE qr = (SELECT min(qr) FROM registry.bags WHERE parent_qr = 'SB10001')")
        .execute(pool)
        .await
        .unwrap();
    let parent = stack.bag(&ravi, "SB10001").await.unwrap();
    assert_eq!((parent.status.as_str(), parent.child_count), ("open", 29));
}

#[tokio::test]
async fn one_child_raced_into_thirty_two_parents_has_one_winner() {
    let stack = Stack::start(2).await;
    let (_, admin) = (0, stack.admin.clone());
    for i in 0..32 {
        stack
            .scan_parent(&admin, &format!("SB2{i:04}"), "indore")
            .await
            .unwrap();
    }
    let results = join_all((0..32).map(|i| {
        let stack = &stack;
        let admin = admin.clone();
        async move {
            (
                format!("SB2{i:04}"),
                stack
                    .scan_child(&admin, &format!("SB2{i:04}"), "LABEL NO.:7700001 LOT NO.:X")
                    .await,
            )
        }
    }))
    .await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(p, _)| p)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, r) in results.iter().filter(|(_, r)| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code, ErrorCode::ChildLinkedElsewhere);
        assert_eq!(e.detail("other_parent_qr"), Some(winners[0].as_str()));
    }
    let child = stack.bag(&admin, "7700001").await.unwrap();
    assert_eq!(&child.parent_qr, winners[0]);
    assert_eq!(child.area, "indore");
}

/// Asserts that each ScanParent (as token, qr, area) is refused with its code.
async fn refused_parents(stack: &Stack, cases: &[(&str, &str, &str, ErrorCode)]) {
    for &(token, qr, area, want) in cases {
        let got = code(stack.scan_parent(token, qr, area).await);
        assert_eq!(got, want, "ScanParent {qr:?} in {area:?}");
    }
}

#[tokio::test]
async fn scan_error_codes() {
    let stack = Stack::start(1).await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "jaipur").await;
    let (_, bina) = stack.user("bina", Role::Biller, "").await;

    // ScanParent: (who, qr, area) and the refusal, before and after SB30001 exists (in hisar:
    // dispatchers stay in their area).
    let long = "X".repeat(300);
    refused_parents(
        &stack,
        &[
            (&dev, "SB<1>", "", ErrorCode::InvalidQr),
            (&dev, &long, "", ErrorCode::InvalidQr),
            (&bina, "SB30001", "", ErrorCode::AreaRequired),
            (&bina, "SB30001", "atlantis", ErrorCode::InvalidArgument),
        ],
    )
    .await;
    stack.scan_parent(&bina, "SB30001", "hisar").await.unwrap();
    let label = "LABEL NO.:0016586 LOT NO.:STAR44GG24611";
    refused_parents(
        &stack,
        &[
            (&dev, "SB30001", "", ErrorCode::WrongArea),
            (&dev, label, "", ErrorCode::QrIsChild),
        ],
    )
    .await;
    let again = stack.scan_parent(&bina, "sb30001", "").await.unwrap();
    assert!(!again.created, "re-selecting an existing parent");

    // ScanChild
    let p = stack.scan_parent(&dev, "SB30002", "").await.unwrap();
    assert_eq!(
        p.parent.unwrap().area,
        "jaipur",
        "a dispatcher's parent is in their area"
    );
    let c = stack
        .scan_child(
            &dev,
            "SB30002",
            "LABEL NO.:0016586 LOT NO.:STAR44GG24611, D.O.T.:30/09/2025",
        )
        .await
        .unwrap();
    assert_eq!(
        c.child.as_ref().unwrap().qr,
        "0016586",
        "label text reduced to its number"
    );
    assert_eq!(c.parent.as_ref().unwrap().child_count, 1);
    assert!(!c.already_linked);
    let twice = stack.scan_child(&dev, "SB30002", "0016586").await.unwrap();
    assert!(twice.already_linked, "a double-fired scan is a success");
    assert_eq!(twice.parent.unwrap().child_count, 1);
    // ScanChild refusals for the dispatcher: (parent, child) and the code.
    for (parent, child, want) in [
        ("SB39999", "AB12", ErrorCode::ParentNotFound),
        ("SB30002", "SB30001", ErrorCode::QrIsParent),
        ("SB30002", "SB30002", ErrorCode::SameAsParent),
        ("SB30002", "A&B1", ErrorCode::InvalidQr),
        ("SB30001", "AB12", ErrorCode::WrongArea),
    ] {
        let got = code(stack.scan_child(&dev, parent, child).await);
        assert_eq!(got, want, "ScanChild {child:?} into {parent:?}");
    }
    stack.scan_child(&bina, "SB30001", "AB12").await.unwrap();
    let e = stack.scan_child(&dev, "SB30002", "ab12").await.unwrap_err();
    assert_eq!(
        (e.code, e.detail("other_parent_qr")),
        (ErrorCode::ChildLinkedElsewhere, Some("SB30001"))
    );

    // A frozen parent (its bill completed) refuses any change to its children.
    stack.claim_for_bill("SB30002", "B-1").await.unwrap();
    stack.freeze_for_bill("B-1").await.unwrap();
    assert_eq!(
        code(stack.scan_child(&dev, "SB30002", "CD34").await),
        ErrorCode::ParentFrozen
    );
    assert_eq!(
        code(stack.undo(&dev, "SB30002").await),
        ErrorCode::ParentFrozen
    );
    stack.unfreeze_for_bill("B-1").await.unwrap();
    stack.scan_child(&dev, "SB30002", "CD34").await.unwrap();

    // Full.
    stack
        .scan_parent(&bina, "M444-00001", "jaipur")
        .await
        .unwrap();
    for i in 0..15 {
        stack
            .scan_child(&dev, "M444-00001", &format!("MG{i:04}"))
            .await
            .unwrap();
    }
    let moong = stack.bag(&dev, "M444-00001").await.unwrap();
    assert_eq!(
        (
            moong.capacity,
            moong.child_count,
            moong.status.as_str(),
            moong.expected_weight_kg
        ),
        (15, 15, "full", 15.0)
    );
    assert_eq!(
        code(stack.scan_child(&dev, "M444-00001", "MG9999").await),
        ErrorCode::ParentFull
    );

    // Undo with nothing of one's own.
    stack.scan_parent(&dev, "SB30003", "").await.unwrap();
    assert_eq!(
        code(stack.undo(&dev, "SB30003").await),
        ErrorCode::NothingToUndo
    );
}

#[tokio::test]
async fn undo_walks_back_own_links_only_within_the_hour() {
    let stack = Stack::start(1).await;
    let (_, a) = stack.user("asha", Role::Dispatcher, "akola").await;
    let (_, b) = stack.user("bablu", Role::Dispatcher, "akola").await;
    stack.scan_parent(&a, "SB40001", "").await.unwrap();
    stack.scan_child(&a, "SB40001", "A0001").await.unwrap();
    stack.scan_child(&b, "SB40001", "B0001").await.unwrap();
    stack.scan_child(&a, "SB40001", "A0002").await.unwrap();
    stack.scan_child(&b, "SB40001", "B0002").await.unwrap();

    let u = stack.undo(&a, "SB40001").await.unwrap();
    assert_eq!(u.unlinked_child_qr, "A0002");
    assert_eq!(u.parent.unwrap().child_count, 3);
    assert_eq!(
        stack.undo(&a, "SB40001").await.unwrap().unlinked_child_qr,
        "A0001"
    );
    assert_eq!(
        stack.undo(&a, "SB40001").await.unwrap_err().code,
        ErrorCode::NothingToUndo,
        "never another user's link"
    );
    let undone = stack.bag(&a, "A0002").await.unwrap();
    assert_eq!(
        (undone.status.as_str(), undone.parent_qr.as_str()),
        ("unlinked", ""),
        "the child stays registered, unlinked"
    );
    // It can be scanned anywhere again.
    stack.scan_parent(&a, "SB40002", "").await.unwrap();
    stack.scan_child(&a, "SB40002", "A0002").await.unwrap();

    // Links older than an hour are out of reach.
    sqlx::query("UPDATE registry.bags SET linked_at = now() - interval '61 minutes' WHERE parent_qr = 'SB40001'")
        .execute(&stack.registries[0].pool)
        .await
        .unwrap();
    assert_eq!(
        stack.undo(&b, "SB40001").await.unwrap_err().code,
        ErrorCode::NothingToUndo
    );
}

#[tokio::test]
async fn bag_management_codes_and_search() {
    let stack = Stack::start(1).await;
    let admin = stack.admin.clone();
    let (_, dev) = stack.user("dev", Role::Dispatcher, "raipur").await;
    let mut r = stack.registry_client();
    let register = |qr: &str, t: reg::BagType, area: &str, token: &str| {
        authed(
            reg::RegisterBagRequest {
                qr: qr.into(),
                r#type: t as i32,
                area: area.into(),
            },
            token,
        )
    };

    // Who may register, and what the registry refuses (None: registered).
    use reg::BagType::{Child, Parent};
    for (qr, kind, token, refused) in [
        ("SB50001", Parent, &dev, Some(ErrorCode::PermissionDenied)),
        ("SB50001", Parent, &admin, None),
        ("sb50001", Parent, &admin, Some(ErrorCode::BagExists)),
        ("LOOSE1", Child, &admin, None),
        ("SB50009", Child, &admin, Some(ErrorCode::QrIsParent)),
    ] {
        let answer = r.register_bag(register(qr, kind, "raipur", token)).await;
        let code = answer.err().map(|s| AppError::from_status(&s).code);
        assert_eq!(code, refused, "registering {qr}");
    }

    stack.scan_child(&dev, "SB50001", "KID1").await.unwrap();
    let del = |qr: &str| authed(reg::DeleteBagRequest { qr: qr.into() }, &admin);
    for (qr, refused) in [
        ("SB50001", ErrorCode::BagHasChildren),
        ("KID1", ErrorCode::BagLinked),
        ("NOPE1", ErrorCode::BagNotFound),
    ] {
        assert_eq!(
            code_of(r.delete_bag(del(qr)).await),
            refused,
            "deleting {qr}"
        );
    }
    r.delete_bag(del("LOOSE1")).await.unwrap();
    assert_eq!(
        stack.bag(&admin, "LOOSE1").await.unwrap_err().code,
        ErrorCode::BagNotFound
    );

    // Move, unlink.
    stack
        .register(&admin, "SB50002", Parent, "raipur")
        .await
        .unwrap();
    let m = r
        .move_child(authed(
            reg::MoveChildRequest {
                child_qr: "kid1".into(),
                parent_qr: "SB50002".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            m.parent.unwrap().child_count,
            m.previous_parent.unwrap().child_count
        ),
        (1, 0)
    );
    let unlink = |token: &str| {
        let (parent_qr, child_qr) = ("SB50002".into(), "KID1".into());
        authed(
            reg::UnlinkChildRequest {
                parent_qr,
                child_qr,
            },
            token,
        )
    };
    let u = r.unlink_child(unlink(&admin)).await.unwrap().into_inner();
    assert_eq!(u.parent.unwrap().child_count, 0);
    assert_eq!(
        code_of(r.unlink_child(unlink(&dev)).await),
        ErrorCode::PermissionDenied
    );

    // On a bill: delete refused.
    stack.claim_for_bill("SB50002", "B-9").await.unwrap();
    assert_eq!(
        code_of(r.delete_bag(del("SB50002")).await),
        ErrorCode::BagOnBill
    );

    // Search: prefix, type, paging; dispatchers only see their area.
    stack
        .register(&admin, "SB50003", Parent, "ranchi")
        .await
        .unwrap();
    let search = |req: reg::SearchBagsRequest, token: &str| {
        let (mut r, req) = (stack.registry_client(), authed(req, token));
        async move { answer(r.search_bags(req)).await.unwrap() }
    };
    let qrs = |found: &reg::SearchBagsResponse| -> Vec<String> {
        found.bags.iter().map(|b| b.qr.clone()).collect()
    };
    let by_prefix = |page_token: String| reg::SearchBagsRequest {
        qr_prefix: "sb500".into(),
        page_size: 2,
        page_token,
        ..Default::default()
    };
    let all = search(by_prefix(String::new()), &admin).await;
    assert_eq!(qrs(&all), ["SB50001", "SB50002"]);
    let rest = search(by_prefix(all.next_page_token), &admin).await;
    assert_eq!(qrs(&rest), ["SB50003"]);
    let parents = reg::SearchBagsRequest {
        r#type: Parent as i32,
        ..Default::default()
    };
    let mine = search(parents, &dev).await;
    assert!(
        mine.bags.iter().all(|b| b.area == "raipur") && mine.bags.len() == 2,
        "{mine:?}"
    );
    let billed = reg::SearchBagsRequest {
        billed: Some(true),
        ..Default::default()
    };
    assert_eq!(qrs(&search(billed, &admin).await), ["SB50002"]);
}

#[tokio::test]
async fn billing_only_and_scan_only_rpcs_refuse_other_callers() {
    let stack = Stack::start(1).await;
    let admin = stack.admin.clone();
    stack
        .scan_parent(&admin, "SB60001", "bathinda")
        .await
        .unwrap();
    let mut r = stack.registry_client();
    let claim = || reg::ClaimParentRequest {
        parent_qr: "SB60001".into(),
        bill_id: "B-1".into(),
    };
    assert_eq!(
        code_of(
            r.claim_parent(stack.as_service(claim(), Some(&admin), "scan"))
                .await
        ),
        ErrorCode::CallerNotAllowed
    );
    assert_eq!(
        code_of(r.claim_parent(authed(claim(), &admin)).await),
        ErrorCode::CallerNotAllowed
    );
    assert_eq!(
        code_of(
            r.freeze_parents(stack.as_service(
                reg::FreezeParentsRequest {
                    bill_id: "B-1".into()
                },
                None,
                "gateway"
            ))
            .await
        ),
        ErrorCode::CallerNotAllowed
    );
    let link = reg::LinkChildRequest {
        parent_qr: "SB60001".into(),
        child_qr: "AB12".into(),
    };
    assert_eq!(
        code_of(r.link_child(authed(link.clone(), &admin)).await),
        ErrorCode::CallerNotAllowed
    );
    assert_eq!(
        code_of(
            r.link_child(stack.as_service(link, Some(&admin), "billing"))
                .await
        ),
        ErrorCode::CallerNotAllowed
    );
    // Billing itself may, and the figures follow the links.
    r.claim_parent(stack.as_service(claim(), None, "billing"))
        .await
        .unwrap();
    stack.scan_child(&admin, "SB60001", "AB12").await.unwrap();
    let f = r
        .get_bill_figures(stack.as_service(
            reg::GetBillFiguresRequest {
                bill_ids: vec!["B-1".into()],
            },
            None,
            "billing",
        ))
        .await
        .unwrap()
        .into_inner();
    let f = &f.figures[0];
    assert_eq!(
        (
            f.parent_count,
            f.child_count,
            f.actual_weight_kg,
            f.expected_weight_kg
        ),
        (1, 1, 1.0, 30.0)
    );
    let e = code(stack.claim_for_bill("SB60001", "B-2").await);
    assert_eq!(e, ErrorCode::OnOtherBill);
    let e = code(stack.claim_for_bill("AB12", "B-2").await);
    assert_eq!(e, ErrorCode::NotAParent);
}

#[tokio::test]
async fn idempotent_scans_replay_even_after_a_restart_and_refuse_reuse() {
    let stack = Stack::start(1).await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "sangaria").await;
    stack.scan_parent(&dev, "SB70001", "").await.unwrap();
    let keyed = |child: &str, key: &str| {
        tracetrack_common::client::request(
            tracetrack_proto::scan::v1::ScanChildRequest {
                parent_qr: "SB70001".into(),
                child_qr: child.into(),
            },
            Some(&dev),
            Some(key),
        )
    };
    let first = stack
        .scan_client()
        .scan_child(keyed("K0001", "scan-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.already_linked);
    // The same request again is the same answer (not already_linked: it is a replay).
    let again = stack
        .scan_client()
        .scan_child(keyed("K0001", "scan-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let e = code_of(
        stack
            .scan_client()
            .scan_child(keyed("K0002", "scan-1"))
            .await,
    );
    assert_eq!(e, ErrorCode::IdempotencyKeyReused);

    // After restarting scan (a new process state), the replay still holds.
    let Stack {
        auth,
        registries,
        scan,
        db,
        prefix,
        ..
    } = stack;
    scan.stop().await.unwrap();
    let urls: Vec<String> = registries.iter().map(Running::url).collect();
    let scan = start_scan(scan_settings(
        &db,
        &redis_url(),
        &prefix,
        &auth,
        &urls.join(","),
    ))
    .await;
    let mut client = tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient::new(
        tonic::transport::Channel::from_shared(scan.url())
            .unwrap()
            .connect_lazy(),
    );
    let after = client
        .scan_child(keyed("K0001", "scan-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, after);
    let links = db_i64(
        &registries[0].pool,
        "SELECT count(*) FROM registry.bags WHERE parent_qr = 'SB70001'",
    )
    .await;
    assert_eq!(links, 1);
}

/// SPEC §3: an undo that names its child removes it only while it is the caller's newest standing
/// link on the parent, so a queued undo replayed later can never remove another link.
#[tokio::test]
async fn an_undo_naming_its_child_never_removes_another_link() {
    let stack = Stack::start(1).await;
    let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
    stack.scan_parent(&ravi, "SB19001", "").await.unwrap();
    stack
        .scan_child(&ravi, "SB19001", "UNDOA001")
        .await
        .unwrap();
    stack
        .scan_child(&ravi, "SB19001", "UNDOB002")
        .await
        .unwrap();
    let undo = |child: &str| {
        let mut client = stack.scan_client();
        let req = authed(
            tracetrack_proto::scan::v1::UndoLastChildRequest {
                parent_qr: "SB19001".into(),
                child_qr: child.into(),
            },
            &ravi,
        );
        async move { client.undo_last_child(req).await }
    };
    // A is not the newest link: refused, nothing removed.
    assert_eq!(code_of(undo("undoa001").await), ErrorCode::NothingToUndo);
    assert_eq!(stack.bag(&ravi, "SB19001").await.unwrap().child_count, 2);
    // B is: removed; then A is the newest.
    let r = undo("UNDOB002").await.unwrap().into_inner();
    assert_eq!(r.unlinked_child_qr, "UNDOB002");
    // The same undo replayed (another key): B is no longer linked, A stays.
    assert_eq!(code_of(undo("UNDOB002").await), ErrorCode::NothingToUndo);
    assert_eq!(stack.bag(&ravi, "SB19001").await.unwrap().child_count, 1);
    assert_eq!(
        stack.bag(&ravi, "UNDOA001").await.unwrap().parent_qr,
        "SB19001"
    );
}

/// bag-registry's LinkChild writes its idempotency key once, with the answer, as its last write
/// (issue 18). Under one key: eight at once make one link and one event and all get the first
/// answer; a different request is refused; a replay after the child has moved on to another
/// parent still gets the first answer.
#[tokio::test]
async fn link_child_answers_once_per_key_even_when_replayed_later() {
    let stack = Stack::start(1).await;
    let (_, dev) = stack.user("dev", Role::Dispatcher, "lucknow").await;
    stack.scan_parent(&dev, "SB71001", "").await.unwrap();
    stack.scan_parent(&dev, "SB71002", "").await.unwrap();
    let link = |parent: &str, child: &str, key: &str| {
        let req = reg::LinkChildRequest {
            parent_qr: parent.into(),
            child_qr: child.into(),
        };
        let mut req = stack.as_service(req, Some(&dev), "scan");
        req.metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        let mut client = stack.registry_client();
        async move { answer(client.link_child(req)).await }
    };

    let all = join_all((0..8).map(|_| link("SB71001", "K7101", "link-1"))).await;
    let first = all[0].as_ref().unwrap().clone();
    assert!(!first.already_linked);
    assert_eq!(first.parent.as_ref().unwrap().child_count, 1);
    for a in &all {
        assert_eq!(a.as_ref().unwrap(), &first);
    }
    let e = code(link("SB71001", "K7102", "link-1").await);
    assert_eq!(e, ErrorCode::IdempotencyKeyReused);

    // The child moves to another parent; the first request, replayed, still gets its answer.
    stack.undo(&dev, "SB71001").await.unwrap();
    let moved = link("SB71002", "K7101", "link-2").await.unwrap();
    assert!(!moved.already_linked);
    assert_eq!(link("SB71001", "K7101", "link-1").await.unwrap(), first);

    let pool = &stack.registries[0].pool;
    let events = db_i64(
        pool,
        "SELECT count(*) FROM registry.outbox \
         WHERE event_type = 'registry.child_linked' AND aggregate_id = 'K7101'",
    )
    .await;
    assert_eq!(events, 2, "one link per key");
    let keys = db_i64(
        pool,
        "SELECT count(*) FROM registry.idempotency_keys WHERE key IN ('link-1', 'link-2')",
    )
    .await;
    assert_eq!(keys, 2);
}
