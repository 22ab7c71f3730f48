//! Result workbooks (issue 16 §3): `POST /api/v1/imports/labels?result=xlsx` answers the
//! import's per-row report as an `.xlsx` (Summary, Done, Problems), read back with calamine and
//! compared with what the uploaded workbook holds and with the JSON report. Real stack: auth,
//! bag-registry and scan on Postgres and Redis, and the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use calamine::Reader;
use reqwest::{Client, StatusCode};
use rust_xlsxwriter::Workbook;
use serde_json::Value;
use tracetrack_tests::*;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// (sheet, row, code) of a reported row.
type Keys = BTreeSet<(String, u32, String)>;
/// (sheet, row, qr, parent) of a row imported.
type Done = Vec<(String, u32, String, String)>;

fn label_text(n: u32) -> String {
    format!("LABEL NO.:{n:07} LOT NO.:STAR44GG24611")
}

/// "Day 1": a header, 30 mustard labels (row 8 torn) and parent SB00700. "Day 2": 15 moong
/// labels and parent M444-00701, then 4 labels with no parent after them. The workbook, the
/// planted problems, and the rows that go in: (sheet, row, qr, parent).
fn workbook() -> (Vec<u8>, Keys, Done) {
    let mut wb = Workbook::new();
    let mut planted = Keys::new();
    let mut done = Vec::new();
    let mut next = 7000u32;
    let ws = wb.add_worksheet();
    ws.set_name("Day 1").unwrap();
    ws.write_string(0, 0, "Sr. No.").unwrap();
    ws.write_string(0, 1, "QR Code").unwrap();
    let mut labels = Vec::new();
    for i in 0..30u32 {
        let row = i + 1;
        ws.write_number(row, 0, f64::from(i + 1)).unwrap();
        if i == 6 {
            ws.write_string(row, 1, "LABEL NO.:<torn> LOT NO.:X")
                .unwrap();
            planted.insert(("Day 1".into(), row + 1, "invalid_qr".into()));
        } else {
            ws.write_string(row, 1, label_text(next)).unwrap();
            labels.push((row + 1, format!("{next:07}")));
        }
        next += 1;
    }
    ws.write_string(31, 0, "Parent Code").unwrap();
    ws.write_string(31, 1, "SB00700").unwrap();
    done.push(("Day 1".into(), 32, "SB00700".into(), String::new()));
    done.extend(
        labels
            .drain(..)
            .map(|(r, qr)| ("Day 1".into(), r, qr, "SB00700".into())),
    );

    let ws = wb.add_worksheet();
    ws.set_name("Day 2").unwrap();
    for i in 0..15u32 {
        ws.write_number(i, 0, f64::from(i + 1)).unwrap();
        ws.write_string(i, 1, label_text(next)).unwrap();
        labels.push((i + 1, format!("{next:07}")));
        next += 1;
    }
    ws.write_string(15, 0, "Parent Code").unwrap();
    ws.write_string(15, 1, "M444-00701").unwrap();
    done.push(("Day 2".into(), 16, "M444-00701".into(), String::new()));
    done.extend(
        labels
            .drain(..)
            .map(|(r, qr)| ("Day 2".into(), r, qr, "M444-00701".into())),
    );
    for i in 16..20u32 {
        ws.write_number(i, 0, f64::from(i + 1)).unwrap();
        ws.write_string(i, 1, label_text(next)).unwrap();
        next += 1;
    }
    planted.insert(("Day 2".into(), 17, "invalid_argument".into()));
    done.sort();
    (wb.save_to_buffer().unwrap(), planted, done)
}

#[tokio::test]
async fn a_label_import_answers_its_result_workbook() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| s.rate_limits.enabled = false).await;
    let c = Client::new();
    let (body, planted, done) = workbook();
    let upload = |query: &str| {
        c.post(gw.url(&format!("/api/v1/imports/labels{query}")))
            .bearer_auth(&stack.admin)
            .header("content-type", XLSX)
            .body(body.clone())
            .send()
    };

    let r = upload("?area=lucknow&result=xlsx").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], XLSX);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".xlsx"));
    let bytes = r.bytes().await.unwrap().to_vec();
    let mut book = result_book(bytes);
    assert_eq!(book.sheet_names(), ["Summary", "Done", "Problems"]);

    // Problems: exactly the planted rows, each with its message and the row's text.
    let problems = result_rows(&mut book, "Problems");
    let keys: Keys = problems
        .iter()
        .map(|p| (p[0].clone(), p[1].parse().unwrap(), p[2].clone()))
        .collect();
    assert_eq!(keys, planted);
    assert!(problems.iter().all(|p| !p[3].is_empty()), "{problems:?}");
    let torn = problems.iter().find(|p| p[2] == "invalid_qr").unwrap();
    assert_eq!(torn[4], "LABEL NO.:<torn> LOT NO.:X");

    // Done: every other bag row, as what and into which parent.
    let mut got: Done = result_rows(&mut book, "Done")
        .into_iter()
        .map(|r| {
            assert!(r[3] == "parent" || r[3] == "label", "{r:?}");
            assert_eq!(r[3] == "parent", r[4].is_empty(), "{r:?}");
            (
                r[0].clone(),
                r[1].parse().unwrap(),
                r[2].clone(),
                r[4].clone(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, done);
    assert_eq!(result_summary(&mut book, "Parents created"), "2");
    assert_eq!(
        result_summary(&mut book, "Labels created"),
        (done.len() - 2).to_string()
    );
    assert_eq!(result_summary(&mut book, "Rows with problems"), "2");
    assert_eq!(result_summary(&mut book, "Nothing changed"), "no");
    // The bags are really there.
    stack.bag(&stack.admin, "SB00700").await.unwrap();

    // Again, as JSON: nothing new; and as a workbook, which says so with the same rows.
    let r = upload("?area=lucknow").await.unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["nothing_changed"], true, "{again:#}");
    let r = upload("?area=lucknow&result=xlsx").await.unwrap();
    let mut book = result_book(r.bytes().await.unwrap().to_vec());
    assert_eq!(result_summary(&mut book, "Nothing changed"), "yes");
    assert_eq!(
        result_summary(&mut book, "Already registered (unchanged)"),
        done.len().to_string()
    );
    assert_eq!(result_rows(&mut book, "Done").len(), done.len());

    // A dry run's workbook: the same rows, nothing written.
    let r = upload("?area=indore&dry_run=true&result=xlsx")
        .await
        .unwrap();
    let mut book = result_book(r.bytes().await.unwrap().to_vec());
    assert_eq!(
        result_summary(&mut book, "Dry run (nothing written)"),
        "yes"
    );
    assert_eq!(result_rows(&mut book, "Done").len(), done.len());

    // An unknown result format is refused with its code.
    let r = upload("?area=lucknow&result=pdf").await.unwrap();
    problem(r, 400, "invalid_argument").await;
}
