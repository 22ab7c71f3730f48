//! Exports and the label-workbook upload through the gateway, against the real services:
//! a known dataset (parents and children of both lines, links, a loose child, 2,500 imported
//! labels so exports span several chunks, a bill with parents, scans including refused ones)
//! exported as CSV and XLSX, read back (the csv crate, calamine) and compared with what the
//! owning services' tables hold; the lists' filters; admins only; and a small generated
//! workbook uploaded twice (its planted bad rows reported, the second upload changing nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Client, StatusCode};
use rust_xlsxwriter::Workbook;
use serde_json::Value;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as billing;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;
use uuid::Uuid;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
/// What a refused scan sends: a formula, to prove the CSV guard.
const FORMULA_SCAN: &str = "=HYPERLINK(\"http://x\")";
const FORMULA_DESCRIPTION: &str = "+91 depot, \"north\" gate";

/// One expected cell: text (guarded against formulas in CSV) or a number or boolean as text.
#[derive(Debug, Clone, PartialEq)]
enum F {
    T(String),
    N(String),
}

fn t(s: &str) -> F {
    F::T(s.to_owned())
}
fn opt(s: Option<String>) -> F {
    F::T(s.unwrap_or_default())
}
fn n(x: impl ToString) -> F {
    F::N(x.to_string())
}
fn time(t: Option<DateTime<Utc>>) -> F {
    F::T(
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_default(),
    )
}

/// As the CSV holds it: text starting with = + - @ gets a leading apostrophe.
fn as_csv(row: &[F]) -> Vec<String> {
    row.iter()
        .map(|f| match f {
            F::T(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
            F::T(s) | F::N(s) => s.clone(),
        })
        .collect()
}

/// As the workbook holds it: text exactly.
fn as_xlsx(row: &[F]) -> Vec<String> {
    row.iter()
        .map(|f| match f {
            F::T(s) | F::N(s) => s.clone(),
        })
        .collect()
}

// ------------------------------------------------------------------- the owning tables

async fn expected_bags(pool: &sqlx::PgPool) -> Vec<Vec<F>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        Option<String>,
        String,
        i32,
        Option<i32>,
        Option<f64>,
        f64,
        String,
        Option<String>,
        Option<String>,
        bool,
        DateTime<Utc>,
        Option<Uuid>,
        Option<DateTime<Utc>>,
        Option<Uuid>,
    )> = sqlx::query_as(
        "SELECT qr, kind, product_line, status, child_count, capacity, parent_weight_kg, \
         child_weight_kg, area, parent_qr, bill_id, frozen, created_at, created_by, linked_at, \
         linked_by FROM registry.bags ORDER BY qr COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            let parent = r.1 == "parent";
            vec![
                t(&r.0),
                t(&r.1),
                opt(r.2),
                t(&r.3),
                n(r.4),
                if parent { n(r.5.unwrap()) } else { t("") },
                n(if parent { f64::from(r.4) * r.7 } else { r.7 }),
                n(if parent { r.6.unwrap_or(0.0) } else { r.7 }),
                t(&r.8),
                opt(r.9),
                opt(r.10),
                n(r.11),
                time(Some(r.12)),
                opt(r.13.map(|u| u.to_string())),
                time(r.14),
                opt(r.15.map(|u| u.to_string())),
            ]
        })
        .collect()
}

async fn expected_bills(pool: &sqlx::PgPool) -> Vec<Vec<F>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        i32,
        i64,
        i64,
        f64,
        f64,
        String,
        String,
        String,
        Option<Uuid>,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    )> = sqlx::query_as(
        r#"SELECT b.bill_id, b.status, b.capacity,
                  (SELECT count(*) FROM billing.attachments a WHERE a.bill_id = b.bill_id AND a.state = 'confirmed'),
                  (SELECT coalesce(sum(p.child_count), 0)::bigint FROM registry.bags p WHERE p.bill_id = b.bill_id),
                  (SELECT coalesce(sum(p.child_count * p.child_weight_kg), 0)::float8 FROM registry.bags p WHERE p.bill_id = b.bill_id),
                  (SELECT coalesce(sum(a.expected_weight_kg), 0)::float8 FROM billing.attachments a WHERE a.bill_id = b.bill_id AND a.state = 'confirmed'),
                  b.description, b.destination, b.vehicle_number, b.created_by, b.created_by_username,
                  b.created_at, b.updated_at, b.completed_at
           FROM billing.bills b ORDER BY b.created_at DESC, b.bill_id DESC"#,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            vec![
                t(&r.0),
                t(&r.1),
                n(r.2),
                n(r.3),
                n(r.4),
                n(r.5),
                n(r.6),
                t(&r.7),
                t(&r.8),
                t(&r.9),
                opt(r.10.map(|u| u.to_string())),
                t(&r.11),
                time(Some(r.12)),
                time(Some(r.13)),
                time(r.14),
            ]
        })
        .collect()
}

async fn expected_scans(pool: &sqlx::PgPool) -> Vec<Vec<F>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        Uuid,
        DateTime<Utc>,
        Uuid,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Option<i32>,
        Option<i32>,
    )> = sqlx::query_as(
        "SELECT id, occurred_at, user_id, username, kind, area, parent_qr, child_qr, raw_input, \
         outcome, parent_child_count, parent_capacity FROM scan.scan_events \
         ORDER BY occurred_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            vec![
                t(&r.0.to_string()),
                time(Some(r.1)),
                t(&r.2.to_string()),
                t(&r.3),
                t(&r.4),
                t(&r.5),
                t(&r.6),
                opt(r.7),
                t(&r.8),
                t(&r.9),
                n(r.10.unwrap_or(0)),
                n(r.11.unwrap_or(0)),
            ]
        })
        .collect()
}

// ------------------------------------------------------------------------ reading files

struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

async fn get(c: &Client, gw: &Gateway, token: &str, path: &str) -> reqwest::Response {
    c.get(gw.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn csv(c: &Client, gw: &Gateway, token: &str, path: &str) -> Csv {
    let r = get(c, gw, token, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let body = r.bytes().await.unwrap();
    assert!(body.ends_with(b"\r\n"), "RFC 4180 records end with CRLF");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_ref());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    Csv { header, rows }
}

/// Every sheet's rows after the header, as text (numbers as Rust prints an f64).
async fn xlsx(c: &Client, gw: &Gateway, token: &str, path: &str, sheet: &str) -> Csv {
    let r = get(c, gw, token, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_eq!(r.headers()["content-type"], XLSX);
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(body.to_vec())).unwrap();
    assert_eq!(book.sheet_names(), vec![sheet.to_owned()]);
    let range = book.worksheet_range(sheet).unwrap();
    let mut rows = range.rows().map(|row| {
        row.iter()
            .map(|cell| match cell {
                Data::Empty => String::new(),
                Data::String(s) => s.clone(),
                Data::Float(f) => f.to_string(),
                Data::Int(i) => i.to_string(),
                Data::Bool(b) => b.to_string(),
                other => panic!("unexpected cell {other:?}"),
            })
            .collect::<Vec<_>>()
    });
    let header = rows.next().unwrap();
    let width = header.len();
    Csv {
        header,
        // calamine's range is as wide as the widest row: pad short ones (trailing empty cells).
        rows: rows
            .map(|mut r| {
                r.resize(width, String::new());
                r
            })
            .collect(),
    }
}

fn headers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

const BAG_HEADER: &[&str] = &[
    "qr",
    "type",
    "product_line",
    "status",
    "child_count",
    "capacity",
    "weight_kg",
    "expected_weight_kg",
    "area",
    "parent_qr",
    "bill_id",
    "frozen",
    "created_at",
    "created_by",
    "linked_at",
    "linked_by",
];
const BILL_HEADER: &[&str] = &[
    "bill_id",
    "status",
    "capacity",
    "parent_count",
    "child_count",
    "actual_weight_kg",
    "expected_weight_kg",
    "description",
    "destination",
    "vehicle_number",
    "created_by",
    "created_by_username",
    "created_at",
    "updated_at",
    "completed_at",
];
const SCAN_HEADER: &[&str] = &[
    "id",
    "occurred_at",
    "user_id",
    "username",
    "kind",
    "area",
    "parent_qr",
    "child_qr",
    "raw_input",
    "outcome",
    "parent_child_count",
    "parent_capacity",
];

/// Asserts a problem document with `status` and `code`.
async fn problem(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
}

// --------------------------------------------------------------------------- the dataset

struct Dataset {
    stack: BillingStack,
    dispatcher_id: String,
    biller: String,
    loose: String,
}

async fn dataset() -> Dataset {
    let stack = BillingStack::start(1, 1).await;
    let admin = stack.admin.clone();
    let (dispatcher, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
    let (_, biller) = stack.user("bina", Role::Biller, "").await;

    // Parents of both lines, children scanned in, one undone, refused scans.
    stack.scan_parent(&ravi, "SB00001", "").await.unwrap();
    for i in 1..=5 {
        stack
            .scan_child(&ravi, "SB00001", &format!("LBL{i:04}"))
            .await
            .unwrap();
    }
    stack
        .scan_parent(&admin, "M444-00001", "lucknow")
        .await
        .unwrap();
    for i in 11..=13 {
        stack
            .scan_child(&admin, "M444-00001", &format!("LBL{i:04}"))
            .await
            .unwrap();
    }
    stack.undo(&admin, "M444-00001").await.unwrap();
    stack
        .scan_parent(&admin, "SB00002", "indore")
        .await
        .unwrap();
    let refused = stack.scan_child(&ravi, "SB00001", FORMULA_SCAN).await;
    assert!(refused.is_err());
    let refused = stack.scan_child(&ravi, "SB00001", "M444-00001").await;
    assert!(refused.is_err());

    // A loose child, registered and never linked.
    let mut registry = stack.registry_client();
    registry
        .register_bag(authed(
            reg::RegisterBagRequest {
                qr: "LOOSE1".into(),
                r#type: reg::BagType::Child as i32,
                area: "jaipur".into(),
            },
            &admin,
        ))
        .await
        .unwrap();

    // 2,500 imported labels in 84 parents: the exports span several chunks of 1,000.
    let mut bags = Vec::new();
    for p in 0..84 {
        let parent = format!("SB{:05}", 100 + p);
        bags.push(reg::ImportBag {
            qr: parent.clone(),
            r#type: reg::BagType::Parent as i32,
            area: "lucknow".into(),
            parent_qr: String::new(),
        });
        for c in 0..30 {
            let k = p * 30 + c;
            if k >= 2_500 - 84 {
                break;
            }
            bags.push(reg::ImportBag {
                qr: format!("IMP{k:05}"),
                r#type: reg::BagType::Child as i32,
                area: "lucknow".into(),
                parent_qr: parent.clone(),
            });
        }
    }
    let outcome = tracetrack_dataio::import::send_bags(&mut registry, &admin, bags, 1000, |_| {})
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);

    // A bill with two parents, and a new one.
    let mut bills = stack.billing();
    bills
        .create_bill(authed(
            billing::CreateBillRequest {
                bill_id: "B-EXPORT-1".into(),
                capacity: 2,
                description: FORMULA_DESCRIPTION.into(),
                destination: "Kanpur".into(),
                vehicle_number: "UP32 AB 1234".into(),
            },
            &biller,
        ))
        .await
        .unwrap();
    for parent in ["SB00001", "M444-00001"] {
        bills
            .attach_parent(authed(
                billing::AttachParentRequest {
                    bill_id: "B-EXPORT-1".into(),
                    parent_qr: parent.into(),
                },
                &biller,
            ))
            .await
            .unwrap();
    }
    bills
        .create_bill(authed(
            billing::CreateBillRequest {
                bill_id: "Other-7".into(),
                capacity: 5,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();

    Dataset {
        stack,
        dispatcher_id: dispatcher.id,
        biller,
        loose: "LOOSE1".into(),
    }
}

async fn gateway(stack: &BillingStack) -> Gateway {
    let billing = stack.billings[0].url();
    Gateway::start(stack, |s| {
        s.billing_url = billing;
        s.rate_limits.enabled = false;
    })
    .await
}

fn column(rows: &[Vec<String>], header: &[&str], name: &str) -> Vec<String> {
    let i = header.iter().position(|h| *h == name).unwrap();
    rows.iter().map(|r| r[i].clone()).collect()
}

#[tokio::test]
async fn exports_round_trip_as_csv_and_xlsx_with_filters_for_admins_only() {
    let d = dataset().await;
    let gw = gateway(&d.stack).await;
    let c = Client::new();
    let admin = d.stack.admin.clone();
    let pool = d.stack.registry_pool().clone();

    // Bags: every row, in QR order, equal to the registry's table.
    let want = expected_bags(&pool).await;
    assert!(want.len() > 2_500, "{}", want.len());
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bags.csv").await;
    assert_eq!(got.header, headers(BAG_HEADER));
    assert_eq!(got.rows.len(), want.len());
    for (g, w) in got.rows.iter().zip(&want) {
        assert_eq!(g, &as_csv(w));
    }
    let got = xlsx(&c, &gw, &admin, "/api/v1/exports/bags.xlsx", "bags").await;
    assert_eq!(got.header, headers(BAG_HEADER));
    assert_eq!(got.rows.len(), want.len());
    for (g, w) in got.rows.iter().zip(&want) {
        assert_eq!(g, &as_xlsx(w));
    }

    // Bills with their figures, newest first.
    let want = expected_bills(&pool).await;
    assert_eq!(want.len(), 2);
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bills.csv").await;
    assert_eq!(got.header, headers(BILL_HEADER));
    assert_eq!(got.rows, want.iter().map(|w| as_csv(w)).collect::<Vec<_>>());
    let bill = &got.rows[1];
    assert_eq!(bill[0], "B-EXPORT-1");
    assert_eq!(bill[3], "2", "two parents");
    assert_eq!(bill[4], "7", "5 + 3 - 1 children");
    assert_eq!(bill[7], format!("'{FORMULA_DESCRIPTION}"), "formula guard");
    let got = xlsx(&c, &gw, &admin, "/api/v1/exports/bills.xlsx", "bills").await;
    assert_eq!(
        got.rows,
        want.iter().map(|w| as_xlsx(w)).collect::<Vec<_>>()
    );
    assert_eq!(got.rows[1][7], FORMULA_DESCRIPTION, "exact text in xlsx");

    // Scans: every attempt, refused ones and the undo included, newest first.
    let want = expected_scans(&pool).await;
    let outcomes: BTreeSet<String> = want.iter().map(|w| as_xlsx(w)[9].clone()).collect();
    assert!(outcomes.contains("invalid_qr"), "{outcomes:?}");
    assert!(outcomes.contains("qr_is_parent"), "{outcomes:?}");
    let got = csv(&c, &gw, &admin, "/api/v1/exports/scans.csv").await;
    assert_eq!(got.header, headers(SCAN_HEADER));
    assert_eq!(got.rows, want.iter().map(|w| as_csv(w)).collect::<Vec<_>>());
    assert!(
        column(&got.rows, SCAN_HEADER, "raw_input").contains(&format!("'{FORMULA_SCAN}")),
        "the refused formula scan is guarded"
    );
    assert!(column(&got.rows, SCAN_HEADER, "kind").contains(&"undo".to_owned()));
    let got = xlsx(&c, &gw, &admin, "/api/v1/exports/scans.xlsx", "scans").await;
    assert_eq!(
        got.rows,
        want.iter().map(|w| as_xlsx(w)).collect::<Vec<_>>()
    );

    // Filters: the lists'.
    let qrs = |rows: &[Vec<String>]| column(rows, BAG_HEADER, "qr");
    let got = csv(
        &c,
        &gw,
        &admin,
        "/api/v1/exports/bags.csv?type=parent&billed=true",
    )
    .await;
    assert_eq!(qrs(&got.rows), ["M444-00001", "SB00001"]);
    let got = csv(
        &c,
        &gw,
        &admin,
        "/api/v1/exports/bags.csv?type=child&linked=false",
    )
    .await;
    assert_eq!(qrs(&got.rows), ["LBL0013", d.loose.as_str()]);
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bags.csv?area=indore").await;
    assert_eq!(qrs(&got.rows), ["SB00002"]);
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bags.csv?q=lbl000").await;
    assert_eq!(
        qrs(&got.rows),
        ["LBL0001", "LBL0002", "LBL0003", "LBL0004", "LBL0005"]
    );
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bags.csv?q=IMP").await;
    assert_eq!(got.rows.len(), 2_500 - 84, "prefix over several chunks");
    let all = expected_bags(&pool).await;
    let holding: Vec<Vec<String>> = all
        .iter()
        .map(|w| as_xlsx(w))
        .filter(|w| w[1] == "parent" && w[8] == "lucknow" && w[4] != "0")
        .collect();
    assert_eq!(
        holding.len(),
        81 + 2,
        "imported parents 0-80 and two scanned ones hold labels"
    );
    let got = xlsx(
        &c,
        &gw,
        &admin,
        "/api/v1/exports/bags.xlsx?type=parent&area=lucknow&linked=true",
        "bags",
    )
    .await;
    assert_eq!(got.rows, holding);
    let future = "2999-01-01T00:00:00Z";
    let got = csv(
        &c,
        &gw,
        &admin,
        &format!("/api/v1/exports/bags.csv?from={future}"),
    )
    .await;
    assert!(got.rows.is_empty());
    assert_eq!(
        got.header,
        headers(BAG_HEADER),
        "the header even when empty"
    );
    let got = xlsx(
        &c,
        &gw,
        &admin,
        &format!("/api/v1/exports/scans.xlsx?from={future}"),
        "scans",
    )
    .await;
    assert!(got.rows.is_empty());
    assert_eq!(got.header, headers(SCAN_HEADER));

    let got = csv(&c, &gw, &admin, "/api/v1/exports/bills.csv?status=new").await;
    assert_eq!(column(&got.rows, BILL_HEADER, "bill_id"), ["Other-7"]);
    let got = csv(&c, &gw, &admin, "/api/v1/exports/bills.csv?q=b-exp").await;
    assert_eq!(column(&got.rows, BILL_HEADER, "bill_id"), ["B-EXPORT-1"]);

    let got = csv(
        &c,
        &gw,
        &admin,
        &format!("/api/v1/exports/scans.csv?user_id={}", d.dispatcher_id),
    )
    .await;
    assert_eq!(
        got.rows.len(),
        1 + 5 + 2,
        "ravi's parent, children and refusals"
    );
    assert!(column(&got.rows, SCAN_HEADER, "username")
        .iter()
        .all(|u| u == "ravi"));
    let got = csv(&c, &gw, &admin, "/api/v1/exports/scans.csv?qr=LBL0013").await;
    assert_eq!(
        column(&got.rows, SCAN_HEADER, "kind"),
        ["undo", "child"],
        "the link and its undo"
    );

    // Bad filters, before the first byte: problem documents.
    for path in [
        "/api/v1/exports/bags.csv?type=sack",
        "/api/v1/exports/bags.xlsx?from=yesterday",
        "/api/v1/exports/bags.csv?area=atlantis",
        "/api/v1/exports/bills.csv?status=lost",
        "/api/v1/exports/scans.xlsx?user_id=ravi",
        "/api/v1/exports/scans.csv?linked=maybe",
    ] {
        let r = get(&c, &gw, &admin, path).await;
        if path.ends_with("linked=maybe") {
            // Unknown query parameters are ignored.
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            continue;
        }
        problem(r, 400, "invalid_argument").await;
    }

    // Admins only.
    for path in [
        "/api/v1/exports/bags.csv",
        "/api/v1/exports/bags.xlsx",
        "/api/v1/exports/bills.csv",
        "/api/v1/exports/bills.xlsx",
        "/api/v1/exports/scans.csv",
        "/api/v1/exports/scans.xlsx",
    ] {
        problem(
            get(&c, &gw, &d.biller, path).await,
            403,
            "permission_denied",
        )
        .await;
        problem(
            c.get(gw.url(path)).send().await.unwrap(),
            401,
            "unauthenticated",
        )
        .await;
    }
}

// ------------------------------------------------------------------- label upload

fn label_text(n: u32) -> String {
    format!("LABEL NO.:{n:07} LOT NO.:STAR44GG24611")
}

/// Two sheets: a header, a 30-label mustard group (one label text invalid), a 15-label moong
/// group with a parent QR where a label should be, and label rows at the end of the second
/// sheet with no parent after them. Returns the bytes and the planted (sheet, row, code).
/// (sheet, row, code) of each reported row.
type Planted = BTreeSet<(String, u32, String)>;

fn small_workbook() -> (Vec<u8>, Planted, u64, u64) {
    let mut wb = Workbook::new();
    let mut planted = BTreeSet::new();
    let (mut parents, mut labels) = (0, 0);
    let mut next = 500u32;
    let ws = wb.add_worksheet();
    ws.set_name("Day 1").unwrap();
    ws.write_string(0, 0, "Sr. No.").unwrap();
    ws.write_string(0, 1, "QR Code").unwrap();
    let mut row = 1u32;
    for i in 0..30 {
        ws.write_number(row, 0, f64::from(i + 1)).unwrap();
        if i == 6 {
            ws.write_string(row, 1, "LABEL NO.:<torn> LOT NO.:X")
                .unwrap();
            planted.insert(("Day 1".to_owned(), row + 1, "invalid_qr".to_owned()));
        } else {
            ws.write_string(row, 1, label_text(next)).unwrap();
            labels += 1;
        }
        next += 1;
        row += 1;
    }
    ws.write_string(row, 0, "Parent Code").unwrap();
    ws.write_string(row, 1, "SB00900").unwrap();
    parents += 1;
    row += 1;
    for i in 0..15 {
        ws.write_number(row, 0, f64::from(i + 1)).unwrap();
        if i == 2 {
            ws.write_string(row, 1, "SB09999").unwrap();
            planted.insert(("Day 1".to_owned(), row + 1, "qr_is_parent".to_owned()));
        } else {
            ws.write_string(row, 1, label_text(next)).unwrap();
            labels += 1;
        }
        next += 1;
        row += 1;
    }
    ws.write_string(row, 1, "m444-00900").unwrap();
    parents += 1;

    let ws = wb.add_worksheet();
    ws.set_name("Day 2").unwrap();
    for i in 0..15u32 {
        ws.write_number(i, 0, f64::from(i + 1)).unwrap();
        ws.write_string(i, 1, label_text(next)).unwrap();
        labels += 1;
        next += 1;
    }
    ws.write_string(15, 0, "Parent Code").unwrap();
    ws.write_string(15, 1, "M444-00901").unwrap();
    parents += 1;
    for i in 16..20u32 {
        ws.write_number(i, 0, f64::from(i + 1)).unwrap();
        ws.write_string(i, 1, label_text(next)).unwrap();
        next += 1;
    }
    planted.insert(("Day 2".to_owned(), 17, "invalid_argument".to_owned()));
    (wb.save_to_buffer().unwrap(), planted, parents, labels)
}

fn problem_keys(report: &Value) -> Planted {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sheet"].as_str().unwrap().to_owned(),
                p["row"].as_u64().unwrap() as u32,
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_label_workbook_uploaded_twice_reports_its_bad_rows_and_changes_nothing_the_second_time()
{
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| s.rate_limits.enabled = false).await;
    let c = Client::new();
    let admin = stack.admin.clone();
    let (_, biller) = stack.user("bina", Role::Biller, "").await;
    let (book, planted, parents, labels) = small_workbook();
    let upload = |token: &str, query: &str, body: Vec<u8>, content_type: &str| {
        c.post(gw.url(&format!("/api/v1/imports/labels{query}")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // A dry run writes nothing.
    let r = upload(&admin, "?area=lucknow&dry_run=true", book.clone(), XLSX)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"], 0);
    assert_eq!(problem_keys(&report), planted, "{report:#}");
    assert_eq!(
        stack.bag(&admin, "SB00900").await.unwrap_err().code,
        tracetrack_domain::ErrorCode::BagNotFound
    );

    let r = upload(&admin, "?area=lucknow", book.clone(), XLSX)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.unwrap();
    assert_eq!(problem_keys(&first), planted, "{first:#}");
    assert_eq!(first["rejected"], planted.len());
    assert_eq!(first["parents_created"], parents);
    assert_eq!(first["labels_created"], labels);
    assert_eq!(first["created"], parents + labels);
    assert_eq!(first["linked"], labels);
    assert_eq!(first["unchanged"], 0);
    assert_eq!(first["nothing_changed"], false);
    assert_eq!(first["area"], "lucknow");
    for p in first["problems"].as_array().unwrap() {
        assert!(!p["message"].as_str().unwrap().is_empty());
    }
    let parent = stack.bag(&admin, "SB00900").await.unwrap();
    assert_eq!(parent.child_count, 29);
    assert_eq!(parent.area, "lucknow");
    assert_eq!(
        stack.bag(&admin, "M444-00900").await.unwrap().child_count,
        14
    );
    assert_eq!(
        stack.bag(&admin, "M444-00901").await.unwrap().child_count,
        15
    );

    // Again, as octet-stream: nothing changes and the report says so.
    let r = upload(
        &admin,
        "?area=lucknow",
        book.clone(),
        "application/octet-stream",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["nothing_changed"], true, "{second:#}");
    assert_eq!(second["created"], 0);
    assert_eq!(second["linked"], 0);
    assert_eq!(second["unchanged"], parents + labels);
    assert_eq!(problem_keys(&second), planted);

    // Not a workbook, no area, not an admin, not logged in.
    let r = upload(
        &admin,
        "?area=lucknow",
        b"Sr. No.,QR\n1,SB00001\n".to_vec(),
        "text/csv",
    )
    .await
    .unwrap();
    problem(r, 400, "invalid_workbook").await;
    let r = upload(&admin, "?area=lucknow", Vec::new(), XLSX)
        .await
        .unwrap();
    problem(r, 400, "invalid_workbook").await;
    let r = upload(&admin, "", book.clone(), XLSX).await.unwrap();
    problem(r, 400, "area_required").await;
    let r = upload(&biller, "?area=lucknow", book.clone(), XLSX)
        .await
        .unwrap();
    problem(r, 403, "permission_denied").await;
    let r = c
        .post(gw.url("/api/v1/imports/labels?area=lucknow"))
        .body(book.clone())
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_and_a_large_one_under_it_is_taken() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| {
        s.rate_limits.enabled = false;
        s.max_import_bytes = 2 * 1024 * 1024;
    })
    .await;
    let c = Client::new();
    // Larger than the general body limit (1 MiB) but under this route's.
    let (book, _, _, _) = small_workbook();
    let mut padded = book.clone();
    padded.resize(1536 * 1024, 0);
    let r = c
        .post(gw.url("/api/v1/imports/labels?area=lucknow"))
        .bearer_auth(&stack.admin)
        .body(padded)
        .send()
        .await
        .unwrap();
    // Zero padding after the archive: read as a workbook or refused as one, never 413.
    assert_ne!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.status() == StatusCode::OK || r.status() == StatusCode::BAD_REQUEST,
        "{}",
        r.status()
    );
    let r = c
        .post(gw.url("/api/v1/imports/labels?area=lucknow"))
        .bearer_auth(&stack.admin)
        .body(vec![0u8; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload_too_large").await;
}
