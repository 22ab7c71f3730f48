//! The dispatch document and A6 label printed by Chromium (tests/browser/document.test.mjs):
//! A4 and A6, English and Hindi, a 500-parent bill over many pages with its table header and page
//! number on each, the QR code decoded from the printed page. The stack is real (auth, registry,
//! scan, billing, gateway on Postgres and Redis); bills are seeded over gRPC. The PDFs and their
//! pages as PNG images land in tests/browser/screenshots/document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::stream::{self, StreamExt};
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_tests::*;

const SMALL: &str = "DOC-SMALL-1";
const BIG: &str = "DOC-BIG-500";
const ORG: &str = "Shree Agro Inputs Pvt. Ltd.";
const DEPOT: &str = "Lucknow C&F depot";

async fn create(stack: &BillingStack, id: &str, capacity: i32, destination: &str) {
    let req = pb::CreateBillRequest {
        bill_id: id.into(),
        capacity,
        destination: destination.into(),
        ..Default::default()
    };
    stack.open_bill(&stack.admin, req, &[]).await;
}

async fn attach_all(stack: &BillingStack, bill: &str, parents: &[String]) {
    stream::iter(parents)
        .for_each_concurrent(8, |qr| async move {
            stack
                .billing()
                .attach_parent(authed(
                    pb::AttachParentRequest {
                        bill_id: bill.into(),
                        parent_qr: qr.clone(),
                    },
                    &stack.admin,
                ))
                .await
                .unwrap();
        })
        .await;
}

async fn complete(stack: &BillingStack, bill: &str) {
    stack.complete_bill(&stack.admin, bill).await;
}

#[tokio::test]
async fn dispatch_documents_print_in_chromium() {
    let stack = BillingStack::start(1, 1).await;
    let billing = stack.billings[0].url();
    let gw = Gateway::start(&stack, |s| {
        s.billing_url = billing.clone();
        s.organisation.name = ORG.into();
        s.organisation.address = "Plot 14, Transport Nagar, Lucknow 226012".into();
        s.organisation.tax_id = "09AAACS1234F1Z5".into();
        s.organisation.depots.insert("lucknow".into(), DEPOT.into());
    })
    .await;
    // A second gateway whose QR codes hold the first one's address (`public_base_url`).
    let base = format!("http://{}", gw.addr);
    let gw_url = Gateway::start(&stack, |s| {
        s.billing_url = billing.clone();
        s.organisation.public_base_url = format!("{base}/");
    })
    .await;
    let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;

    // A small bill: four sacks with a few packets each, completed (dispatched); the fourth comes
    // back on a return ticket.
    create(&stack, SMALL, 4, "Jaipur mandi").await;
    let small: Vec<String> = (1..=4).map(|i| format!("SB4{i:04}")).collect();
    for (i, p) in small.iter().enumerate() {
        stack.scan_parent(&ravi, p, "").await.unwrap();
        for j in 0..=i {
            stack
                .scan_child(&ravi, p, &format!("DOCC{i}{j:03}"))
                .await
                .unwrap();
        }
    }
    attach_all(&stack, SMALL, &small).await;
    complete(&stack, SMALL).await;
    let ticket = stack
        .billing()
        .create_return_ticket(authed(
            pb::CreateReturnTicketRequest {
                area: "lucknow".into(),
                notes: "dealer return".into(),
            },
            &stack.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .ticket_id;
    stack
        .billing()
        .return_parent(authed(
            pb::ReturnParentRequest {
                ticket_id: ticket.clone(),
                parent_qr: "SB40004".into(),
            },
            &stack.admin,
        ))
        .await
        .unwrap();

    // A 500-parent bill, registered and attached over gRPC (eight at a time).
    create(&stack, BIG, 500, "Indore").await;
    let big: Vec<String> = (1..=500).map(|i| format!("SB5{i:04}")).collect();
    let (shared, parent) = (&stack, reg::BagType::Parent);
    stream::iter(&big)
        .for_each_concurrent(8, |qr| async move {
            let registered = shared.register(&shared.admin, qr, parent, "lucknow").await;
            registered.unwrap();
        })
        .await;
    attach_all(&stack, BIG, &big).await;
    complete(&stack, BIG).await;

    // Transport details through HTTP: a bad phone is refused with its code.
    let http = reqwest::Client::new();
    let token = http_token(&http, &gw, "admin", ADMIN_PASSWORD).await;
    let r = http
        .patch(gw.url(&format!("/api/v1/bills/{BIG}")))
        .bearer_auth(&token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"driver_phone": "call me"}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_argument").await;
    let r = http
        .patch(gw.url(&format!("/api/v1/bills/{BIG}")))
        .bearer_auth(&token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"driver_name": "Suresh <b>Yadav</b>", "seal_number": "S-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["status"], "completed");
    assert_eq!(b["driver_name"], "Suresh <b>Yadav</b>");
    assert_eq!(b["seal_number"], "S-1");

    // A label workbook for the data page's import: 15 moong labels and their parent.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for i in 0..15u32 {
        ws.write_number(i, 0, f64::from(i + 1)).unwrap();
        ws.write_string(i, 1, format!("LABEL NO.:{:07} LOT NO.:X1", 8000 + i))
            .unwrap();
    }
    ws.write_string(15, 0, "Parent Code").unwrap();
    ws.write_string(15, 1, "M444-00801").unwrap();
    let labels = tempfile::NamedTempFile::with_suffix(".xlsx").unwrap();
    std::fs::write(labels.path(), wb.save_to_buffer().unwrap()).unwrap();

    let root = repo_root();
    let artifacts = root.join("tests/browser/screenshots/document");
    let _ = std::fs::remove_dir_all(&artifacts);
    tracetrack_tests::browser::NodeTests::new(&["document.test.mjs"], gw.addr)
        .env("TT_URL_GATEWAY", format!("http://{}", gw_url.addr))
        .env("TT_ARTIFACTS", &artifacts)
        .env("TT_LABEL_WORKBOOK", labels.path())
        .env("TT_BILL_SMALL", SMALL)
        .env("TT_BILL_BIG", BIG)
        .env("TT_TICKET", &ticket)
        .env("TT_ORG_NAME", ORG)
        .env("TT_DEPOT", DEPOT)
        .run()
        .await;

    // The result workbook the data page downloaded: its three sheets, the 16 rows done.
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook(artifacts.join("label-import-result.xlsx")).unwrap();
    use calamine::Reader;
    assert_eq!(book.sheet_names(), ["Summary", "Done", "Problems"]);
    assert_eq!(book.worksheet_range("Done").unwrap().height(), 1 + 16);
    assert_eq!(book.worksheet_range("Problems").unwrap().height(), 1);
}
