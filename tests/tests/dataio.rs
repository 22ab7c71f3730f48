//! Data in: the label-workbook import (a generated 10,000-row workbook with planted bad rows,
//! parsed and imported through a real bag-registry, twice) and the migration off the old system
//! (a fixture database shaped like the old schema with the planted problems of LEGACY.md:
//! dry-run report, real run through auth, bag-registry and billing, second run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rust_xlsxwriter::Workbook;
use sqlx::Connection;
use tracetrack_dataio::import::{self, RegistryClient};
use tracetrack_dataio::labels::{self, Problem};
use tracetrack_dataio::legacy::{self, MigrationReport, PlanOptions, Targets};
use tracetrack_domain::qr::ProductLine;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as auth;
use tracetrack_proto::billing::v1 as billing;
use tracetrack_tests::*;

// ------------------------------------------------------------------------- label workbook

const ROWS: u32 = 10_000;
const SHEETS: usize = 4;

fn label_text(n: u32) -> String {
    format!("LABEL NO.:{n:07} LOT NO.:STAR44GG24611, D.O.T.:30/09/2025")
}

/// Columns A (None: empty) and B of one row.
type Row = (Option<String>, String);

#[derive(Default)]
struct Generated {
    /// (sheet, rows): column A and B of each row; None = empty cell.
    sheets: Vec<(String, Vec<Row>)>,
    /// (sheet, row, code) of every planted bad row.
    planted: BTreeSet<(String, u32, String)>,
    parents: u64,
    children: u64,
    /// A few (child, parent) pairs to look up afterwards.
    samples: Vec<(String, String)>,
    /// Parents and how many children they should hold.
    fills: Vec<(String, i32)>,
    /// Labels that must not be registered.
    absent: Vec<String>,
}

/// Four sheets, 10,000 rows in all: a header per sheet, then 30-label mustard groups and
/// 15-label moong groups in turn, each closed by its parent's row (alternately with "Parent
/// Code" in column A and with column A empty), with five bad rows planted: an invalid label
/// text, a parent QR where a label should be, a label seen earlier in the file, a mustard group
/// of 31 labels, and label rows at the end of the last sheet with no parent row after them.
fn generate() -> Generated {
    let mut g = Generated::default();
    let mut total: u32 = 0;
    let mut next_label = 1u32;
    let (mut mustard, mut moong) = (0u32, 0u32);
    let mut group_no = 0usize;
    let mut dup_source: Option<String> = None;
    let (mut planted_long, mut planted_misplaced, mut planted_dup) = (false, false, false);
    for s in 0..SHEETS {
        let name = format!("Day {}", s + 1);
        let mut rows: Vec<Row> = vec![(Some("Sr. No.".into()), "QR Code".into())];
        total += 1;
        let mut serial = 0u32;
        let last = s == SHEETS - 1;
        let sheet_end = ROWS * (s as u32 + 1) / SHEETS as u32;
        loop {
            let is_mustard = group_no.is_multiple_of(2);
            let capacity: u32 = if is_mustard { 30 } else { 15 };
            let long = s == 1 && is_mustard && !planted_long;
            let misplaced = s == 1 && !is_mustard && !planted_misplaced;
            let dup = s == 2 && !planted_dup;
            let labels = capacity + u32::from(long);
            let need = labels + 1;
            // The last sheet keeps at least one row for its parentless labels.
            if total + need + u32::from(last) > sheet_end {
                break;
            }
            planted_long |= long;
            planted_misplaced |= misplaced;
            planted_dup |= dup;
            let parent = if is_mustard {
                mustard += 1;
                format!("SB{mustard:05}")
            } else {
                moong += 1;
                format!("M444-{moong:05}")
            };
            let mut linked = 0;
            for i in 0..labels {
                serial += 1;
                let row = rows.len() as u32 + 1;
                let mut text = label_text(next_label);
                let planted = if s == 0 && group_no == 2 && i == 7 {
                    text = "LABEL NO.:<missing> LOT NO.:STAR44GG24611".into();
                    Some("invalid_qr")
                } else if misplaced && i == 4 {
                    text = "SB09999".into();
                    Some("qr_is_parent")
                } else if dup && i == 9 {
                    text = dup_source.clone().unwrap();
                    Some("invalid_argument")
                } else if long && i == labels - 1 {
                    g.absent.push(format!("{next_label:07}"));
                    Some("parent_full")
                } else {
                    None
                };
                match planted {
                    Some(code) => {
                        g.planted.insert((name.clone(), row, code.to_owned()));
                    }
                    None => {
                        if s == 0 && group_no == 0 && i == 3 {
                            dup_source = Some(text.clone());
                        }
                        if i == 0 {
                            g.samples.push((format!("{next_label:07}"), parent.clone()));
                        }
                        linked += 1;
                        g.children += 1;
                    }
                }
                next_label += 1;
                rows.push((Some(serial.to_string()), text));
            }
            let a = (group_no % 4 < 2).then(|| "Parent Code".to_owned());
            rows.push((a, parent.to_lowercase()));
            g.parents += 1;
            g.fills.push((parent, linked));
            total += need;
            group_no += 1;
        }
        if last {
            // The rest: label rows with no parent row after them.
            g.planted.insert((
                name.clone(),
                rows.len() as u32 + 1,
                "invalid_argument".into(),
            ));
            while total < ROWS {
                serial += 1;
                g.absent.push(format!("{next_label:07}"));
                rows.push((Some(serial.to_string()), label_text(next_label)));
                next_label += 1;
                total += 1;
            }
        }
        g.sheets.push((name, rows));
    }
    g
}

fn write_book(g: &Generated) -> Vec<u8> {
    let mut wb = Workbook::new();
    for (name, rows) in &g.sheets {
        let ws = wb.add_worksheet();
        ws.set_name(name).unwrap();
        for (i, (a, b)) in rows.iter().enumerate() {
            match a.as_deref() {
                Some(n) if n.parse::<f64>().is_ok() => {
                    ws.write_number(i as u32, 0, n.parse::<f64>().unwrap())
                        .unwrap();
                }
                Some(t) => {
                    ws.write_string(i as u32, 0, t).unwrap();
                }
                None => {}
            }
            ws.write_string(i as u32, 1, b).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

fn keys(problems: &[Problem]) -> BTreeSet<(String, u32, String)> {
    problems
        .iter()
        .map(|p| (p.sheet.clone(), p.row, p.code.clone()))
        .collect()
}

#[tokio::test]
async fn a_label_workbook_of_ten_thousand_rows_imports_once() {
    let g = generate();
    let rows: usize = g.sheets.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(
        rows, ROWS as usize,
        "the generator makes exactly 10,000 rows"
    );
    assert_eq!(g.sheets.len(), SHEETS);
    let kinds: BTreeSet<&str> = g.planted.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(g.planted.len(), 5, "{:?}", g.planted);
    assert_eq!(
        kinds,
        [
            "invalid_argument",
            "invalid_qr",
            "parent_full",
            "qr_is_parent"
        ]
        .into_iter()
        .collect()
    );

    let bytes = write_book(&g);
    let parsed = labels::parse_workbook(&bytes, &ProductLine::defaults()).unwrap();
    assert_eq!(
        keys(&parsed.problems),
        g.planted,
        "exactly the planted rows are reported: {:#?}",
        parsed.problems
    );
    assert_eq!(parsed.rows, u64::from(ROWS));
    assert_eq!(parsed.parents() as u64, g.parents);
    assert_eq!(parsed.children() as u64, g.children);
    assert_eq!(parsed.sheets.len(), SHEETS);

    let stack = Stack::start(1).await;
    let mut registry: RegistryClient = stack.registry_client();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let first = import::import_labels(
        &mut registry,
        &stack.admin,
        &parsed,
        "lucknow",
        1000,
        move |p| {
            assert!(p.sent <= p.total);
            seen.fetch_add(1, Ordering::Relaxed);
        },
    )
    .await
    .unwrap();
    let batches = parsed.bags.len().div_ceil(1000);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        batches,
        "one progress call per batch"
    );
    assert_eq!(keys(&first.problems), g.planted, "{:#?}", first.problems);
    assert_eq!(first.counts.parents_created, g.parents);
    assert_eq!(first.counts.children_created, g.children);
    assert_eq!(first.counts.links_created, g.children);
    assert_eq!(first.counts.unchanged, 0);
    assert!(first.render().contains("rows with problems: 5"));

    for (child, parent) in g.samples.iter().step_by(25) {
        let bag = stack.bag(&stack.admin, child).await.unwrap();
        assert_eq!(&bag.parent_qr, parent);
        assert_eq!(bag.area, "lucknow");
    }
    for (parent, linked) in &g.fills {
        let bag = stack.bag(&stack.admin, parent).await.unwrap();
        assert_eq!(bag.child_count, *linked, "{parent}");
    }
    for qr in &g.absent {
        assert_eq!(
            stack.bag(&stack.admin, qr).await.unwrap_err().code,
            ErrorCode::BagNotFound,
            "{qr} was reported, not imported"
        );
    }

    // Again: nothing new, the same problems.
    let second = import::import_labels(
        &mut registry,
        &stack.admin,
        &parsed,
        "lucknow",
        1000,
        |_| {},
    )
    .await
    .unwrap();
    assert!(second.nothing_new(), "{:?}", second.counts);
    assert_eq!(second.counts.unchanged, g.parents + g.children);
    assert_eq!(keys(&second.problems), g.planted);
    assert!(second.render().contains("nothing new"));
}

// ------------------------------------------------------------------------ legacy migration

const LEGACY_SCHEMA: &str = r#"
CREATE TABLE "user" (
    id serial PRIMARY KEY, username varchar(64) UNIQUE NOT NULL, email varchar(120) UNIQUE,
    password_hash varchar(256), role varchar(20) NOT NULL, dispatch_area varchar(50),
    verified boolean DEFAULT true, created_at timestamp DEFAULT now(),
    failed_login_attempts int DEFAULT 0, locked_until timestamp);
CREATE TABLE bag (
    id serial PRIMARY KEY, qr_id varchar(255) UNIQUE NOT NULL, type varchar(10) NOT NULL,
    name varchar(100), child_count int DEFAULT 0, parent_id int, user_id int REFERENCES "user"(id),
    dispatch_area varchar(50), status varchar(20) DEFAULT 'pending', weight_kg double precision DEFAULT 0,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now());
CREATE TABLE link (
    id serial PRIMARY KEY, parent_bag_id int REFERENCES bag(id), child_bag_id int REFERENCES bag(id),
    created_at timestamp DEFAULT now());
CREATE TABLE bill (
    id serial PRIMARY KEY, bill_id varchar(50) NOT NULL, description text, parent_bag_count int DEFAULT 1,
    linked_parent_count int DEFAULT 0, total_weight_kg double precision DEFAULT 0,
    expected_weight_kg double precision DEFAULT 0, total_child_bags int DEFAULT 0,
    status varchar(20) DEFAULT 'new', created_by_id int, created_at timestamp DEFAULT now(),
    updated_at timestamp, destination varchar(100), vehicle_number varchar(50));
CREATE TABLE bill_bag (
    id serial PRIMARY KEY, bill_id int REFERENCES bill(id), bag_id int REFERENCES bag(id),
    created_at timestamp DEFAULT now());
CREATE TABLE scan (
    id serial PRIMARY KEY, timestamp timestamp DEFAULT now(), parent_bag_id int, child_bag_id int, user_id int);
CREATE TABLE audit_log (
    id serial PRIMARY KEY, timestamp timestamp, user_id int, action varchar(50), entity_type varchar(50),
    entity_id int, details text, before_state text, after_state text, ip_address varchar(50),
    request_id varchar(50));
"#;

/// The old database with every problem LEGACY.md lists, planted once (ids are fixed so the
/// report can be checked row by row).
async fn legacy_fixture() -> String {
    let url = fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(LEGACY_SCHEMA)
        .execute(&mut conn)
        .await
        .unwrap();
    let mut sql = String::new();
    sql.push_str(
        r#"INSERT INTO "user" (id, username, email, role, dispatch_area) VALUES
            (1, 'admin', 'admin@old.example.in', 'admin', NULL),
            (2, 'ravi', 'ravi@old.example.in', 'dispatcher', 'Lucknow'),
            (3, 'meena', 'meena@old.example.in', 'biller', NULL),
            (4, 'suresh', NULL, 'dispatcher', NULL),
            (5, 'kiran', 'kiran@old.example.in', 'dispatcher', 'Default'),
            (6, 'Ravi', 'ravi2@old.example.in', 'dispatcher', 'jaipur');
        "#,
    );
    // Parents.
    sql.push_str(
        r#"INSERT INTO bag (id, qr_id, type, dispatch_area, user_id) VALUES
            (1, 'SB00001', 'parent', 'lucknow', 2),
            (2, 'sb00002 ', 'parent', 'Jaipur', 3),
            (3, 'M444-00001', 'parent', 'lucknow', 2),
            (4, 'SB00001_DUP_4', 'parent', 'lucknow', 2),
            (5, 'Sb00003', 'parent', 'indore', 3),
            (6, 'SB00003', 'parent', 'indore', 3),
            (7, 'SB00004', 'parent', NULL, 2),
            (8, 'SB00005', 'parent', 'Default', 3);
        "#,
    );
    // Children: C0001-C0031 (10-40), D0001-D0020 (50-69), odd ones at 80-82.
    let mut children = Vec::new();
    for i in 1..=31 {
        children.push(format!("({}, 'C{i:04}', 'child', 'lucknow', 2)", 9 + i));
    }
    for i in 1..=20 {
        children.push(format!("({}, 'D{i:04}', 'child', 'lucknow', 2)", 49 + i));
    }
    children.push("(80, 'c 0099', 'child', 'lucknow', 2)".into());
    children.push("(81, 'lbl0001', 'child', 'lucknow', 2)".into());
    children.push("(82, 'C0040', 'child', 'lucknow', 3)".into());
    sql.push_str(&format!(
        "INSERT INTO bag (id, qr_id, type, dispatch_area, user_id) VALUES {};\n",
        children.join(",\n")
    ));
    // Links, in time order: C0001-C0030 into SB00001; C0031 into sb00002 and then into
    // SB00001; D0001-D0020 into the moong parent (the old app allowed 30); C0040 into SB00005.
    let mut links = Vec::new();
    let mut t = 0;
    let mut at = |parent: i64, child: i64, id: i64| {
        t += 1;
        format!(
            "({id}, {parent}, {child}, timestamp '2025-06-01 00:00:00' + interval '{t} minutes')"
        )
    };
    for i in 1..=30 {
        links.push(at(1, 9 + i, 100 + i));
    }
    links.push(at(2, 40, 200));
    links.push(at(1, 40, 201));
    for i in 1..=20 {
        links.push(at(3, 49 + i, 300 + i));
    }
    links.push(at(8, 82, 400));
    sql.push_str(&format!(
        "INSERT INTO link (id, parent_bag_id, child_bag_id, created_at) VALUES {};\n",
        links.join(",\n")
    ));
    sql.push_str(
        r#"INSERT INTO bill (id, bill_id, parent_bag_count, linked_parent_count, total_child_bags, status, description, destination, vehicle_number) VALUES
            (1, 'BILL-001', 2, 2, 32, 'completed', 'to Indore depot', 'Indore', 'MP09 AB 1234'),
            (2, 'bill-001', 1, 0, 0, 'new', NULL, NULL, NULL),
            (3, 'BILL-003', 1, 5, 99, 'in_progress', NULL, 'Jaipur', NULL);
        INSERT INTO bill_bag (id, bill_id, bag_id, created_at) VALUES
            (1, 1, 1, '2025-06-02 10:00'),
            (2, 1, 2, '2025-06-02 10:01'),
            (3, 3, 1, '2025-06-02 10:02'),
            (4, 3, 3, '2025-06-02 10:03'),
            (5, 3, 7, '2025-06-02 10:04');
        INSERT INTO scan (parent_bag_id, child_bag_id, user_id) VALUES (1, NULL, 2), (NULL, 10, 2);
        "#,
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(&*sql))
        .execute(&mut conn)
        .await
        .unwrap();
    url
}

fn has(report: &MigrationReport, table: &str, id: i64, kind: &str) {
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.table == table && f.legacy_id == id && f.kind == kind),
        "the report lacks {table} {id} {kind}:\n{}",
        report.render(100)
    );
}

/// Every planted problem is in the report, with the rows to import.
fn check_planned(report: &MigrationReport) {
    // QR ids with spaces or lower case: repaired; rejected when normalisation fails.
    has(report, "bag", 2, "qr_repaired");
    has(report, "bag", 5, "qr_repaired");
    has(report, "bag", 81, "qr_repaired");
    has(report, "bag", 80, "invalid_qr");
    // `_DUP_` ids, reported with their original.
    has(report, "bag", 4, "dup_id");
    let dup = report.of_kind("dup_id").next().unwrap();
    assert!(
        dup.detail.contains("SB00001") && dup.detail.contains("bag 1"),
        "{dup:?}"
    );
    // Case duplicates: the second rejected.
    has(report, "bag", 6, "case_duplicate");
    // Parents with more children than their line allows: links beyond it, in link order.
    let over: Vec<i64> = report
        .of_kind("over_capacity")
        .map(|f| f.legacy_id)
        .collect();
    assert_eq!(over, vec![316, 317, 318, 319, 320], "moong holds 15");
    // A child linked to two parents: the first link wins.
    has(report, "link", 201, "second_parent");
    // A parent on two bills: the first bill wins.
    has(report, "bill_bag", 3, "two_bills");
    // Counters that disagree with the links.
    has(report, "bill", 3, "counters_disagree");
    assert!(!report
        .of_kind("counters_disagree")
        .any(|f| f.legacy_id == 1));
    // A bill over capacity: the parents beyond it.
    has(report, "bill_bag", 5, "bill_over_capacity");
    // Bill ids equal regardless of case.
    has(report, "bill", 2, "bill_case_duplicate");
    // Dispatchers without an area: skipped.
    has(report, "user", 4, "dispatcher_without_area");
    has(report, "user", 5, "dispatcher_without_area");
    has(report, "user", 6, "username_case_duplicate");
    // Areas: from the creator; none to be had.
    has(report, "bag", 7, "area_repaired");
    has(report, "bag", 8, "no_area");
    has(report, "link", 400, "bag_rejected");
    let w = report.would_import;
    assert_eq!(w.users, 3);
    assert_eq!((w.parents, w.children, w.links), (5, 53, 46));
    assert_eq!((w.bills, w.bill_parents, w.bills_to_complete), (2, 3, 1));
    assert_eq!(report.source.scans, Some(2));
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("every imported user must set a new password")));
}

#[tokio::test]
async fn the_legacy_migration_reports_every_planted_problem_then_imports_the_good_rows() {
    let legacy_url = legacy_fixture().await;
    let opts = PlanOptions::default();

    let dry = legacy::run(&legacy_url, &opts, None, |_| {}).await.unwrap();
    assert!(dry.dry_run && dry.results.is_none());
    check_planned(&dry);
    let json = serde_json::to_value(&dry).unwrap();
    assert!(json["findings"].as_array().unwrap().len() >= 20);
    assert!(dry.render(5).contains("DRY RUN"));

    let stack = BillingStack::start(1, 1).await;
    // The dry run wrote nothing (it had nowhere to write; the stack is fresh).
    assert_eq!(
        stack.bag(&stack.admin, "SB00001").await.unwrap_err().code,
        ErrorCode::BagNotFound
    );
    let targets = Targets {
        auth_url: stack.auth.url(),
        registry_url: stack.registries[0].url(),
        billing_url: Some(stack.billings[0].url()),
        token: stack.admin.clone(),
        batch_size: 10,
    };
    let run = legacy::run(&legacy_url, &opts, Some(&targets), |_| {})
        .await
        .unwrap();
    check_planned(&run);
    let r = run.results.clone().unwrap();
    assert_eq!(
        run.of_kind("registry_rejected").count()
            + run
                .findings
                .iter()
                .filter(|f| f.action == legacy::Action::Failed)
                .count(),
        0,
        "{}",
        run.render(50)
    );
    // `admin` exists in TraceTrack already and is left alone.
    assert_eq!(
        (r.users.created, r.users.already_present, r.users.failed),
        (2, 1, 0)
    );
    assert_eq!(r.bags.counts.parents_created, 5);
    assert_eq!(r.bags.counts.children_created, 53);
    assert_eq!(r.bags.counts.links_created, 46);
    assert_eq!(r.bags.counts.unchanged, 0);
    assert!(r.bills.migrated);
    assert_eq!(
        (r.bills.created, r.bills.parents_attached, r.bills.completed),
        (2, 3, 1)
    );

    // Bags and links in the registry.
    let bag = |qr: &'static str| {
        let stack = &stack;
        async move { stack.bag(&stack.admin, qr).await }
    };
    assert_eq!(bag("SB00001").await.unwrap().child_count, 30);
    assert_eq!(bag("SB00002").await.unwrap().child_count, 1);
    assert_eq!(bag("C0031").await.unwrap().parent_qr, "SB00002");
    assert_eq!(bag("M444-00001").await.unwrap().child_count, 15);
    assert_eq!(bag("D0015").await.unwrap().parent_qr, "M444-00001");
    assert_eq!(
        bag("D0016").await.unwrap().parent_qr,
        "",
        "over capacity: unlinked"
    );
    assert_eq!(bag("SB00003").await.unwrap().area, "indore");
    assert_eq!(
        bag("SB00004").await.unwrap().area,
        "lucknow",
        "its creator's area"
    );
    assert_eq!(bag("LBL0001").await.unwrap().parent_qr, "");
    assert_eq!(bag("C0040").await.unwrap().parent_qr, "");
    for gone in ["SB00005", "SB00001_DUP_4", "C 0099"] {
        assert!(bag(gone).await.is_err(), "{gone} must not be imported");
    }

    // Users in auth: usernames kept, a new password required, the skipped ones absent.
    let users = stack
        .auth
        .users()
        .list_users(authed(
            auth::ListUsersRequest {
                page_size: 200,
                include_inactive: true,
                ..Default::default()
            },
            &stack.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .users;
    let by_name = |n: &str| users.iter().find(|u| u.username == n);
    let ravi = by_name("ravi").unwrap();
    assert!(ravi.must_change_password);
    assert_eq!(ravi.dispatch_area, "lucknow");
    assert_eq!(ravi.role(), auth::Role::Dispatcher);
    assert!(by_name("meena").unwrap().must_change_password);
    assert_eq!(by_name("meena").unwrap().role(), auth::Role::Biller);
    assert!(
        !by_name("admin").unwrap().must_change_password,
        "left alone"
    );
    for absent in ["suresh", "kiran", "Ravi"] {
        assert!(by_name(absent).is_none(), "{absent}");
    }
    assert_eq!(users.len(), 3);
    // Nobody can log in with a password from the report (there is none in it).
    let json = serde_json::to_string(&run).unwrap();
    assert!(!json.to_lowercase().contains("password\":"));

    // Bills in billing.
    let mut bills = stack.billing();
    let b1 = bills
        .get_bill(authed(
            billing::GetBillRequest {
                bill_id: "BILL-001".into(),
            },
            &stack.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        b1.bill.as_ref().unwrap().status(),
        billing::BillStatus::Completed
    );
    assert_eq!(b1.bill.as_ref().unwrap().child_count, 31);
    assert_eq!(b1.bill.as_ref().unwrap().vehicle_number, "MP09 AB 1234");
    let qrs: Vec<&str> = b1.parents.iter().map(|p| p.qr.as_str()).collect();
    assert_eq!(qrs, vec!["SB00001", "SB00002"]);
    let b3 = bills
        .get_bill(authed(
            billing::GetBillRequest {
                bill_id: "BILL-003".into(),
            },
            &stack.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        b3.bill.as_ref().unwrap().status(),
        billing::BillStatus::Processing
    );
    let qrs: Vec<&str> = b3.parents.iter().map(|p| p.qr.as_str()).collect();
    assert_eq!(qrs, vec!["M444-00001"]);

    // A second run changes nothing and says so.
    let again = legacy::run(&legacy_url, &opts, Some(&targets), |_| {})
        .await
        .unwrap();
    let r2 = again.results.clone().unwrap();
    assert!(r2.nothing_new(), "{}", again.render(20));
    assert_eq!(r2.users.already_present, 3);
    assert_eq!(r2.bags.counts.unchanged, 58);
    assert_eq!(
        (r2.bills.already_present, r2.bills.parents_already_attached),
        (2, 3)
    );
    assert!(again.render(5).contains("nothing new"));
}

#[tokio::test]
async fn without_billing_the_bills_are_reported_not_migrated() {
    let legacy_url = legacy_fixture().await;
    let stack = Stack::start(1).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let targets = Targets {
        auth_url: stack.auth.url(),
        registry_url: stack.registries[0].url(),
        billing_url: Some(dead),
        token: stack.admin.clone(),
        batch_size: 1000,
    };
    let run = legacy::run(&legacy_url, &PlanOptions::default(), Some(&targets), |_| {})
        .await
        .unwrap();
    let r = run.results.clone().unwrap();
    assert!(!r.bills.migrated);
    assert_eq!(r.bills.not_migrated, 2);
    assert_eq!(r.bags.counts.parents_created, 5);
    assert_eq!(r.users.created, 2);
    assert!(run.render(5).contains("NOT MIGRATED"));
    has(&run, "bill", 1, "billing_unreachable");
}

// ------------------------------------------------------------------------ the CLIs' login

/// The CLIs log in through the gateway's HTTP API (auth's gRPC Login answers only the gateway)
/// and use that session on gRPC: `tracetrack-import-labels` imports a small workbook through a
/// real gateway and bag-registry; a wrong password stops it with the gateway's code.
#[tokio::test]
async fn the_import_cli_logs_in_through_the_gateway() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;

    let token = tracetrack_dataio::session::login(&gw.url(""), "admin", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        stack.bag(&token, "SB00001").await.unwrap_err().code,
        ErrorCode::BagNotFound,
        "the gateway's session works on gRPC"
    );
    let e = tracetrack_dataio::session::login(&gw.url(""), "admin", "Wrong-Guess-1")
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("invalid_credentials"), "{e:#}");

    let mut rows: Vec<Row> = vec![(Some("Sr. No.".into()), "Scanned".into())];
    rows.extend((1..=30).map(|n| (Some(n.to_string()), label_text(900_000 + n))));
    rows.push((Some("Parent Code".into()), "SB00001".into()));
    let book = write_book(&Generated {
        sheets: vec![("Sheet1".into(), rows)],
        ..Generated::default()
    });
    let dir = std::env::temp_dir().join(format!("tt-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("labels.xlsx");
    std::fs::write(&file, book).unwrap();
    let run = |password: &str| {
        tokio::process::Command::new(workspace_bin("tracetrack-import-labels"))
            .arg(&file)
            .args(["--area", "lucknow", "--gateway-url", &gw.url("")])
            .args(["--registry-url", &stack.registries[0].url()])
            .args(["--password", password])
            .env_remove("TRACETRACK_ADMIN_PASSWORD")
            .kill_on_drop(true)
            .output()
    };
    let out = run(ADMIN_PASSWORD).await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = stack.bag(&stack.admin, "SB00001").await.unwrap();
    assert_eq!(parent.child_count, 30);

    let out = run("Wrong-Guess-2").await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid_credentials"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
