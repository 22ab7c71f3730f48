//! Hostile workbooks through a real gateway (issue 14, hole 2): a 5 KB workbook with a cell at
//! `XFD1048576` used to abort the gateway (calamine asked for a dense range of ~1.7e10 cells),
//! and only the compressed upload size was capped. Now the cells are streamed (columns A and B
//! only), the archive's declared decompressed size, its files, the shared-string count and the
//! rows are capped (413 `payload_too_large`), one workbook is parsed at a time (429
//! `overloaded` with `Retry-After` for another upload meanwhile), and every other route answers
//! during and after such uploads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Read, Write};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tracetrack_labels::fixtures::far_cell_workbook;
use tracetrack_tests::*;

const SHEET: &str = "xl/worksheets/sheet1.xml";
const SHARED_STRINGS: &str = "xl/sharedStrings.xml";

/// `book` with the part `name` rewritten by `write` (deflated; its declared size is true), the
/// other parts copied as they are.
fn with_part(book: &[u8], name: &str, level: i64, write: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(Cursor::new(book)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut write = Some(write);
    for i in 0..src.len() {
        let entry = src.by_index_raw(i).unwrap();
        if entry.name_raw() == name.as_bytes() {
            drop(entry);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(level))
                .large_file(true);
            out.start_file(name, options).unwrap();
            (write.take().unwrap())(&mut out);
        } else {
            out.raw_copy_file(entry).unwrap();
        }
    }
    assert!(write.is_none(), "no part {name}");
    out.finish().unwrap().into_inner()
}

/// A workbook whose sheet is 300 MiB of zeros once inflated, declared as such: well under 1 MiB.
fn zip_bomb() -> Vec<u8> {
    let bytes = with_part(&far_cell_workbook(), SHEET, 9, |w| {
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..300 {
            w.write_all(&chunk).unwrap();
        }
    });
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    bytes
}

/// A workbook whose shared-string table declares 10^12 strings (calamine reserves room for the
/// declared count up front).
fn forged_string_count() -> Vec<u8> {
    let book = far_cell_workbook();
    let mut zip = zip::ZipArchive::new(Cursor::new(&book[..])).unwrap();
    let mut xml = String::new();
    zip.by_name(SHARED_STRINGS)
        .unwrap()
        .read_to_string(&mut xml)
        .unwrap();
    let (head, tail) = xml.split_once("uniqueCount=\"").unwrap();
    let (_, tail) = tail.split_once('"').unwrap();
    let forged = format!("{head}uniqueCount=\"1000000000000\"{tail}");
    with_part(&book, SHARED_STRINGS, 6, |w| {
        w.write_all(forged.as_bytes()).unwrap()
    })
}

/// A workbook under every cap that takes a while to read: 64 MiB of cells in column C.
fn slow_workbook() -> Vec<u8> {
    with_part(&far_cell_workbook(), SHEET, 1, |w| {
        w.write_all(
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">"#,
        )
        .unwrap();
        let cells = r#"<c r="C1"><v>1</v></c>"#.repeat(1 << 16);
        for _ in 0..(64 << 20) / cells.len() {
            w.write_all(cells.as_bytes()).unwrap();
        }
        w.write_all(b"</row></sheetData></worksheet>").unwrap();
    })
}

struct Env {
    _stack: Stack,
    gw: Gateway,
    c: Client,
    token: String,
}

impl Env {
    async fn start() -> Self {
        let stack = Stack::start(1).await;
        let gw = Gateway::start(&stack, |s| s.rate_limits.enabled = false).await;
        // The admin logs in over HTTP, as a browser does.
        let token = tracetrack_dataio::session::login(&gw.url(""), "admin", ADMIN_PASSWORD)
            .await
            .unwrap();
        let c = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            _stack: stack,
            gw,
            c,
            token,
        }
    }

    async fn upload(&self, body: Vec<u8>) -> reqwest::Response {
        self.c
            .post(
                self.gw
                    .url("/api/v1/imports/labels?area=lucknow&dry_run=true"),
            )
            .bearer_auth(&self.token)
            .header(
                "content-type",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// /healthz and an authenticated route that goes to auth answer, promptly.
    async fn still_serving(&self) {
        let started = Instant::now();
        let r = self.c.get(self.gw.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = self
            .c
            .get(self.gw.url("/api/v1/auth/me"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let me: Value = r.json().await.unwrap();
        assert_eq!(me["user"]["username"], "admin", "{me}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_cell_at_xfd1048576_is_read_quickly_and_the_gateway_lives_on() {
    let env = Env::start().await;
    let started = Instant::now();
    let r = env.upload(far_cell_workbook()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["rows"], 17, "{report:#}");
    assert_eq!(report["parents_in_file"], 1);
    assert_eq!(report["labels_in_file"], 15);
    assert_eq!(report["rejected"], 0, "{report:#}");
    env.still_serving().await;
    // And again: the gateway did not just survive once.
    let r = env.upload(far_cell_workbook()).await;
    assert_eq!(r.status(), StatusCode::OK);
    env.still_serving().await;
}

#[tokio::test]
async fn a_zip_bomb_is_413_and_other_routes_answer_meanwhile() {
    let env = Env::start().await;
    let bomb = zip_bomb();
    let started = Instant::now();
    let (r, ()) = tokio::join!(env.upload(bomb.clone()), env.still_serving());
    let body = problem(r, 413, "payload_too_large").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("decompressed size is over the limit of 256 MiB"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    env.still_serving().await;

    // A forged shared-string count (calamine would reserve 24 TB): 413 too.
    let r = env.upload(forged_string_count()).await;
    let body = problem(r, 413, "payload_too_large").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("shared-string table"),
        "{body}"
    );
    // Not an archive at all: 400 invalid_workbook as before.
    let r = env.upload(b"PK\x03\x04 not really".to_vec()).await;
    problem(r, 400, "invalid_workbook").await;
    env.still_serving().await;
}

#[tokio::test]
async fn one_workbook_is_read_at_a_time_and_the_rest_of_the_gateway_answers_meanwhile() {
    let env = Env::start().await;
    let slow = slow_workbook();
    assert!(slow.len() < 50 << 20, "{}", slow.len());
    let small = far_cell_workbook();
    let slow_upload = env.upload(slow);
    tokio::pin!(slow_upload);
    // Only once the slow workbook holds the parse slot (else a small one could take it first).
    let admin_addr = env.gw.admin_addr;
    let slow_status = tokio::select! {
        r = &mut slow_upload => Some(r.status()),
        () = eventually(Duration::from_secs(30), "the slow workbook is being read", || async move {
            metric(admin_addr, "gateway_workbook_parses").await == 1.0
        }) => None,
    };
    assert_eq!(
        slow_status, None,
        "the slow workbook was answered before it was read"
    );
    // While the slow workbook is read: other routes answer, and another upload is shed with
    // 429 and Retry-After (until the slow one is done; its reading takes seconds).
    let mut shed = false;
    let mut served_meanwhile = 0;
    let slow_status = loop {
        tokio::select! {
            r = &mut slow_upload => break r.status(),
            () = env.still_serving() => served_meanwhile += 1,
        }
        if !shed {
            tokio::select! {
                r = &mut slow_upload => break r.status(),
                r = env.upload(small.clone()) => {
                    if r.status() == StatusCode::TOO_MANY_REQUESTS {
                        assert_eq!(r.headers()["retry-after"], "1");
                        let body = problem(r, 429, "overloaded").await;
                        assert_eq!(body["retry_after_seconds"], 1, "{body}");
                        shed = true;
                    } else {
                        assert_eq!(r.status(), StatusCode::OK);
                    }
                }
            }
        }
    };
    assert_eq!(slow_status, StatusCode::OK);
    assert!(shed, "no upload was shed while the slow workbook was read");
    assert!(served_meanwhile > 0);
    // The slot is free again.
    let r = env.upload(small).await;
    assert_eq!(r.status(), StatusCode::OK);
    env.still_serving().await;
}
