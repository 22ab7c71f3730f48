//! The Reports page in Chromium (tests/browser/reports.test.mjs; node + playwright-core +
//! Chromium from scripts/browser-deps.sh): a biller at 360 px reads the bill summary and the
//! end-of-day preview in English and Hindi (axe-core clean) and sends the report now; the mail
//! arrives at a real SMTP server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{FixedOffset, Utc};
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as bpb;
use tracetrack_tests::smtp::SmtpServer;
use tracetrack_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_biller_previews_and_sends_the_end_of_day_report_from_the_page() {
    let stack = BillingStack::start(1, 1).await;
    let smtp = SmtpServer::start().await;
    // A cut-off five minutes ahead and stats' clock just past it: today's work is the day due.
    let ist = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let now = Utc::now();
    let cut = (now + chrono::Duration::minutes(5)).with_timezone(&ist);
    let mut s = stats_settings(&stack.db, &redis_url(), &stack.prefix, &stack.auth);
    s.registry_url = stack.registry_urls();
    s.billing_url = stack.billings[0].url();
    s.business_time_zone = "Asia/Kolkata".into();
    s.smtp.host = "127.0.0.1".into();
    s.smtp.port = smtp.port;
    s.reports.recipients = "ops@example.com".into();
    s.reports.enabled = false;
    s.reports.send_at = cut.format("%H:%M:%S").to_string();
    s.reports.clock_offset_ms = (cut.with_timezone(&Utc) - now).num_milliseconds() + 2000;
    let stats = start_stats(s).await;
    let gw = Gateway::start(&stack, |g| {
        g.stats_url = stats.url();
        g.billing_url = stack.billings[0].url();
        g.rate_limits.enabled = false;
    })
    .await;

    // Work of the day: a completed bill by the biller, an open one by the admin.
    let (_, bina) = stack.user("bina", Role::Biller, "").await;
    let admin = stack.admin.clone();
    for (parent, children) in [("SB20001", 2), ("SB20002", 1)] {
        stack.scan_parent(&admin, parent, "lucknow").await.unwrap();
        for c in 0..children {
            stack
                .scan_child(&admin, parent, &format!("LBL2000{c}{}", &parent[6..]))
                .await
                .unwrap();
        }
    }
    for (token, id, parent) in [(&bina, "RB-1", "SB20001"), (&admin, "RB-2", "SB20002")] {
        let req = bpb::CreateBillRequest {
            bill_id: id.into(),
            capacity: if id == "RB-1" { 1 } else { 2 },
            ..Default::default()
        };
        stack.open_bill(token, req, &[parent.to_owned()]).await;
    }
    stack.complete_bill(&bina, "RB-1").await;

    tracetrack_tests::browser::NodeTests::new(&["reports.test.mjs"], gw.addr)
        .env("TT_USER", "bina")
        .run()
        .await;

    // "Send now" sent one mail, with the day's bills and the workbook.
    let got = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, vec!["ops@example.com".to_string()]);
    assert!(got[0].html.contains("RB-1") && got[0].html.contains("RB-2"));
    assert!(got[0]
        .message_id
        .starts_with(&format!("<eod-{}-now-", cut.date_naive())));
    assert_eq!(got[0].attachments.len(), 1);
}
