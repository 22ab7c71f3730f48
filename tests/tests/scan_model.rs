//! A property test: random sequences of scan, undo, unlink, move, delete and parent scans over a
//! few small parents and children, run through the real services, with every outcome compared to
//! a small reference model (not only the invariants: a system refusing everything keeps every
//! invariant), and the invariants checked in the database after each sequence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tracetrack_bag_registry::config::ProductLineSettings;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::model::run_sequences;
use tracetrack_tests::*;

const PARENTS: usize = 3;
const CHILDREN: usize = 6;
const CAPACITY: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    ScanParent(usize),
    Scan(usize, usize),
    Undo(usize),
    Unlink(usize, usize),
    Move(usize, usize),
    DeleteParent(usize),
    DeleteChild(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..PARENTS).prop_map(Op::ScanParent),
        12 => (0..PARENTS, 0..CHILDREN).prop_map(|(p, c)| Op::Scan(p, c)),
        3 => (0..PARENTS).prop_map(Op::Undo),
        2 => (0..PARENTS, 0..CHILDREN).prop_map(|(p, c)| Op::Unlink(p, c)),
        2 => (0..CHILDREN, 0..PARENTS).prop_map(|(c, p)| Op::Move(c, p)),
        1 => (0..PARENTS).prop_map(Op::DeleteParent),
        1 => (0..CHILDREN).prop_map(Op::DeleteChild),
    ]
}

/// The reference model: which bags exist, where each child is, and link order for undo.
#[derive(Default)]
struct Model {
    parents: BTreeSet<usize>,
    /// child → (parent, link sequence number) or None when unlinked.
    children: BTreeMap<usize, Option<(usize, u64)>>,
    seq: u64,
}

type Outcome = Result<(), ErrorCode>;

impl Model {
    fn count(&self, p: usize) -> usize {
        self.children
            .values()
            .filter(|l| matches!(l, Some((q, _)) if *q == p))
            .count()
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::ScanParent(p) => {
                self.parents.insert(p);
                Ok(())
            }
            Op::Scan(p, c) => {
                if !self.parents.contains(&p) {
                    return Err(ErrorCode::ParentNotFound);
                }
                match self.children.get(&c) {
                    Some(Some((q, _))) if *q == p => Ok(()),
                    Some(Some(_)) => Err(ErrorCode::ChildLinkedElsewhere),
                    _ if self.count(p) >= CAPACITY => Err(ErrorCode::ParentFull),
                    _ => {
                        self.seq += 1;
                        self.children.insert(c, Some((p, self.seq)));
                        Ok(())
                    }
                }
            }
            Op::Undo(p) => {
                if !self.parents.contains(&p) {
                    return Err(ErrorCode::ParentNotFound);
                }
                let newest = self
                    .children
                    .iter()
                    .filter_map(|(c, l)| match l {
                        Some((q, s)) if *q == p => Some((*s, *c)),
                        _ => None,
                    })
                    .max();
                match newest {
                    Some((_, c)) => {
                        self.children.insert(c, None);
                        Ok(())
                    }
                    None => Err(ErrorCode::NothingToUndo),
                }
            }
            Op::Unlink(p, c) => match self.children.get(&c) {
                Some(Some((q, _))) if *q == p => {
                    self.children.insert(c, None);
                    Ok(())
                }
                _ => Err(ErrorCode::BagNotFound),
            },
            Op::Move(c, p) => {
                if !self.parents.contains(&p) {
                    return Err(ErrorCode::ParentNotFound);
                }
                match self.children.get(&c) {
                    None => Err(ErrorCode::BagNotFound),
                    Some(Some((q, _))) if *q == p => Ok(()),
                    Some(_) if self.count(p) >= CAPACITY => Err(ErrorCode::ParentFull),
                    Some(_) => {
                        self.seq += 1;
                        self.children.insert(c, Some((p, self.seq)));
                        Ok(())
                    }
                }
            }
            Op::DeleteParent(p) => {
                if !self.parents.contains(&p) {
                    Err(ErrorCode::BagNotFound)
                } else if self.count(p) > 0 {
                    Err(ErrorCode::BagHasChildren)
                } else {
                    self.parents.remove(&p);
                    Ok(())
                }
            }
            Op::DeleteChild(c) => match self.children.get(&c) {
                None => Err(ErrorCode::BagNotFound),
                Some(Some(_)) => Err(ErrorCode::BagLinked),
                Some(None) => {
                    self.children.remove(&c);
                    Ok(())
                }
            },
        }
    }
}

fn parent_qr(case: usize, p: usize) -> String {
    format!("T{case:03}{p}")
}

fn child_qr(case: usize, c: usize) -> String {
    format!("K{case:03}{c}")
}

async fn run(stack: &Stack, case: usize, op: &Op) -> Outcome {
    let admin = &stack.admin;
    let mut r = stack.registry_client();
    let result: Result<(), AppError> = match *op {
        Op::ScanParent(p) => stack
            .scan_parent(admin, &parent_qr(case, p), "lucknow")
            .await
            .map(drop),
        Op::Scan(p, c) => stack
            .scan_child(admin, &parent_qr(case, p), &child_qr(case, c))
            .await
            .map(drop),
        Op::Undo(p) => stack.undo(admin, &parent_qr(case, p)).await.map(drop),
        Op::Unlink(p, c) => r
            .unlink_child(authed(
                reg::UnlinkChildRequest {
                    parent_qr: parent_qr(case, p),
                    child_qr: child_qr(case, c),
                },
                admin,
            ))
            .await
            .map(drop)
            .map_err(|s| AppError::from_status(&s)),
        Op::Move(c, p) => r
            .move_child(authed(
                reg::MoveChildRequest {
                    child_qr: child_qr(case, c),
                    parent_qr: parent_qr(case, p),
                },
                admin,
            ))
            .await
            .map(drop)
            .map_err(|s| AppError::from_status(&s)),
        Op::DeleteParent(p) => r
            .delete_bag(authed(
                reg::DeleteBagRequest {
                    qr: parent_qr(case, p),
                },
                admin,
            ))
            .await
            .map(drop)
            .map_err(|s| AppError::from_status(&s)),
        Op::DeleteChild(c) => r
            .delete_bag(authed(
                reg::DeleteBagRequest {
                    qr: child_qr(case, c),
                },
                admin,
            ))
            .await
            .map(drop)
            .map_err(|s| AppError::from_status(&s)),
    };
    result.map_err(|e| e.code)
}

#[test]
fn random_operation_sequences_match_the_reference_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stack = rt.block_on(async {
        let db = fresh_database().await;
        let prefix = unique_prefix();
        let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
        let mut rs = registry_settings(&db, &redis_url(), &prefix, &auth);
        rs.product_lines.push(ProductLineSettings {
            name: "tiny".into(),
            parent_pattern: r"^T\d{4}$".into(),
            capacity: CAPACITY as i32,
            parent_weight_kg: 3.0,
            child_weight_kg: 1.0,
        });
        let registry = start_registry(rs).await;
        let scan = start_scan(scan_settings(
            &db,
            &redis_url(),
            &prefix,
            &auth,
            &registry.url(),
        ))
        .await;
        let admin = auth.admin_token().await;
        Stack {
            auth,
            registries: vec![registry],
            scan,
            admin,
            db,
            prefix,
        }
    });
    let tally = run_sequences(op(), |case, ops, tally| {
        let mut model = Model::default();
        rt.block_on(async {
            // Every sequence starts with its parents registered (not counted).
            for p in 0..PARENTS {
                model.apply(&Op::ScanParent(p)).unwrap();
                run(&stack, case, &Op::ScanParent(p)).await.unwrap();
            }
            for (i, op) in ops.iter().enumerate() {
                let want = model.apply(op);
                let got = run(&stack, case, op).await;
                prop_assert_eq!(got, want, "case {} step {} {:?} in {:?}", case, i, op, ops);
                tally.count(got.is_ok());
            }
            // Invariants in the database: counts equal links, never above capacity.
            let bad: i64 = sqlx::query_scalar(
                r#"SELECT count(*) FROM registry.bags p
                   WHERE p.kind = 'parent' AND (p.child_count > p.capacity OR p.child_count <>
                         (SELECT count(*) FROM registry.bags c WHERE c.parent_qr = p.qr))"#,
            )
            .fetch_one(&stack.registries[0].pool)
            .await
            .unwrap();
            prop_assert_eq!(bad, 0);
            Ok(())
        })
    });
    // The sequences are random (a fresh seed each run) and about half their operations are
    // refusals by design, so "one in two" failed whenever a run fell just below the mean
    // (313 of 628 in CI); one in three still proves they do more than collect refusals.
    tally.assert_one_in(3);
}
