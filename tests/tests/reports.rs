//! Reports (issue 16 §2): the end-of-day report sent by e-mail to a real SMTP server on loopback
//! (aiosmtpd, tests/src/smtp.rs) by stats replicas running as separate processes, whose clock
//! is shifted past the cut-off (the `reports.clock_offset_ms` hook) instead of waiting for it;
//! and the bill summary's downloads through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tracetrack_proto::auth::v1::Role;
use tracetrack_proto::billing::v1 as bpb;
use tracetrack_proto::stats::v1 as pb;
use tracetrack_tests::smtp::{Received, SmtpServer};
use tracetrack_tests::*;

const TZ: &str = "Asia/Kolkata";
const RECIPIENTS: [&str; 2] = ["ops@example.com", "owner@example.com"];

fn ist() -> FixedOffset {
    // Asia/Kolkata has had no daylight saving since 1945.
    FixedOffset::east_opt(5 * 3600 + 1800).unwrap()
}

/// A billing stack, an in-process stats that applies the events (its scheduler off), users.
struct World {
    stack: BillingStack,
    stats: Running,
    bina: String,
    ravi: String,
    sita: String,
}

impl World {
    async fn start(send_at: &str) -> Self {
        let stack = BillingStack::start(1, 1).await;
        let mut s = stats_settings(&stack.db, &redis_url(), &stack.prefix, &stack.auth);
        s.registry_url = stack.registry_urls();
        s.billing_url = stack.billings[0].url();
        s.business_time_zone = TZ.into();
        s.reports.enabled = false;
        s.reports.send_at = send_at.into();
        let stats = start_stats(s).await;
        let (_, bina) = stack.user("bina", Role::Biller, "").await;
        let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
        let (_, sita) = stack.user("sita", Role::Dispatcher, "indore").await;
        Self {
            stack,
            stats,
            bina,
            ravi,
            sita,
        }
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.stack.billing_pool()
    }

    /// Three parents with 3, 2 and 4 children scanned by two dispatchers in two areas; a full
    /// bill of two completed by a biller, a bill of three with one parent by the admin.
    async fn activity(&self, tag: &str) {
        let s = &self.stack;
        for (token, parent, children) in [
            (&self.ravi, format!("SB{tag}0001"), 3),
            (&self.ravi, format!("SB{tag}0002"), 2),
            (&self.sita, format!("SB{tag}0003"), 4),
        ] {
            s.scan_parent(token, &parent, "").await.unwrap();
            for c in 0..children {
                s.scan_child(token, &parent, &format!("LBL{}X{c}", &parent[2..]))
                    .await
                    .unwrap();
            }
        }
        for (token, id, capacity, destination, parents) in [
            (
                &self.bina,
                format!("R-{tag}-1"),
                2,
                "Kanpur",
                vec![format!("SB{tag}0001"), format!("SB{tag}0002")],
            ),
            (
                &s.admin,
                format!("R-{tag}-2"),
                3,
                "Agra <& Co>",
                vec![format!("SB{tag}0003")],
            ),
        ] {
            let req = bpb::CreateBillRequest {
                bill_id: id,
                capacity,
                destination: destination.into(),
                vehicle_number: "UP32 AB 1234".into(),
                ..Default::default()
            };
            s.open_bill(token, req, &parents).await;
        }
        s.complete_bill(&self.bina, &format!("R-{tag}-1")).await;
        self.applied().await;
    }

    /// Waits until stats has stored every scan event (the report reads scans from there).
    async fn applied(&self) {
        let pool = self.pool().clone();
        eventually(Duration::from_secs(30), "stats applied the scans", || {
            let pool = pool.clone();
            async move {
                let (stored, made): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM stats.audit_events WHERE event_type = 'scan.recorded'),
                            (SELECT count(*) FROM scan.scan_events)",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                stored == made
            }
        })
        .await;
    }

    /// A stats replica as its own process, sending reports to `smtp_port` with its clock shifted
    /// by `offset_ms`.
    async fn stats_process(&self, smtp_port: u16, send_at: &str, offset_ms: i64) -> ServiceProcess {
        self.stats_process_with(smtp_port, send_at, offset_ms, "en")
            .await
    }

    async fn stats_process_with(
        &self,
        smtp_port: u16,
        send_at: &str,
        offset_ms: i64,
        lang: &str,
    ) -> ServiceProcess {
        let s = &self.stack;
        let env = [
            ("TRACETRACK_DATABASE__URL", s.db.clone()),
            ("TRACETRACK_DATABASE__MAX_CONNECTIONS", "5".into()),
            ("TRACETRACK_DATABASE__ACQUIRE_TIMEOUT_MS", "3000".into()),
            ("TRACETRACK_DATABASE__MIGRATE_ON_START", "true".into()),
            ("TRACETRACK_REDIS__URL", redis_url()),
            ("TRACETRACK_EVENTS__KEY_PREFIX", s.prefix.clone()),
            ("TRACETRACK_AUTH__URL", s.auth.url()),
            (
                "TRACETRACK_AUTH__SERVICE_TOKEN",
                service_token("stats").into(),
            ),
            ("TRACETRACK_REGISTRY_URL", s.registry_urls()),
            ("TRACETRACK_BILLING_URL", s.billings[0].url()),
            ("TRACETRACK_BUSINESS_TIME_ZONE", TZ.into()),
            ("TRACETRACK_CONSUMER_BLOCK_MS", "200".into()),
            (
                "TRACETRACK_PUBLIC_BASE_URL",
                "https://tracetrack.example".into(),
            ),
            ("TRACETRACK_SMTP__HOST", "127.0.0.1".into()),
            ("TRACETRACK_SMTP__PORT", smtp_port.to_string()),
            ("TRACETRACK_SMTP__STARTTLS", "opportunistic".into()),
            (
                "TRACETRACK_SMTP__FROM",
                "TraceTrack <reports@tracetrack.test>".into(),
            ),
            ("TRACETRACK_SMTP__TIMEOUT_MS", "3000".into()),
            ("TRACETRACK_REPORTS__RECIPIENTS", RECIPIENTS.join(", ")),
            ("TRACETRACK_REPORTS__SEND_AT", send_at.into()),
            ("TRACETRACK_REPORTS__LANG", lang.into()),
            ("TRACETRACK_REPORTS__TICK_MS", "100".into()),
            ("TRACETRACK_REPORTS__LEASE_MS", "15000".into()),
            ("TRACETRACK_REPORTS__RETRY_BASE_MS", "100".into()),
            ("TRACETRACK_REPORTS__RETRY_MAX_MS", "400".into()),
            ("TRACETRACK_REPORTS__CLOCK_OFFSET_MS", offset_ms.to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        ServiceProcess::start("tracetrack-stats", env).await
    }

    async fn delivery(&self, day: NaiveDate) -> Option<(String, i32)> {
        sqlx::query_as("SELECT status, attempts FROM stats.daily_reports WHERE day = $1")
            .bind(day)
            .fetch_optional(self.pool())
            .await
            .unwrap()
    }

    async fn wait_status(&self, day: NaiveDate, what: &str, ok: impl Fn(&str, i32) -> bool) {
        eventually(Duration::from_secs(60), what, || async {
            self.delivery(day)
                .await
                .is_some_and(|(s, n)| ok(s.as_str(), n))
        })
        .await;
    }
}

/// A cut-off a few minutes ahead (so the activity just made falls in its day's window): the
/// business day it closes, its local time, and the clock offset that puts a replica 2 s past it.
fn cutoff_ahead() -> (NaiveDate, String, i64) {
    let now = Utc::now();
    let cut = (now + chrono::Duration::minutes(5)).with_timezone(&ist());
    let cut_s = cut.format("%H:%M:%S").to_string();
    let cut_utc = cut.with_timezone(&Utc);
    let whole =
        cut_utc - chrono::Duration::nanoseconds(i64::from(cut_utc.timestamp_subsec_nanos()));
    (
        cut.date_naive(),
        cut_s,
        (whole - now).num_milliseconds() + 2000,
    )
}

/// Waits until every process has looked for due reports `n` more times (its ticks metric).
async fn ticks(procs: &[&ServiceProcess], n: f64) {
    for p in procs {
        let start = metric(p.admin_addr, "reports_ticks_total").await;
        eventually(Duration::from_secs(30), "more scheduler ticks", || async {
            metric(p.admin_addr, "reports_ticks_total").await >= start + n
        })
        .await;
    }
}

type Sheet = Vec<Vec<String>>;

fn sheets(bytes: &[u8]) -> BTreeMap<String, Sheet> {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let names = book.sheet_names();
    names
        .into_iter()
        .map(|name| {
            let range = book.worksheet_range(&name).unwrap();
            let rows = range
                .rows()
                .skip(1)
                .map(|r| {
                    r.iter()
                        .map(|c| match c {
                            Data::Empty => String::new(),
                            Data::String(s) => s.clone(),
                            Data::Float(f) => f.to_string(),
                            Data::Int(i) => i.to_string(),
                            other => format!("{other:?}"),
                        })
                        .collect()
                })
                .collect();
            (name, rows)
        })
        .collect()
}

/// The rows of `sql`, whose `$1` and `$2` are the window's ends.
async fn in_window<R>(
    pool: &sqlx::PgPool,
    sql: impl sqlx::SqlSafeStr,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<R>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let q = sqlx::query_as(sql).bind(from).bind(to);
    q.fetch_all(pool).await.unwrap()
}

/// The report's figures as the owning services' tables say, for bills created and scans made in
/// [from, to): Bills rows (bill, biller, parents, capacity, children, status), Parents rows
/// (bill, qr, children), scans per area and per dispatcher.
async fn truth(
    pool: &sqlx::PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Sheet, Sheet, Sheet, Sheet) {
    let bills: Vec<(String, String, i32, i32, i64, String)> = in_window(
        pool,
        r#"SELECT b.bill_id, b.created_by_username, b.parent_count, b.capacity,
                  (SELECT count(*) FROM registry.bags c JOIN registry.bags p ON c.parent_qr = p.qr
                   WHERE p.bill_id = b.bill_id), b.status
           FROM billing.bills b WHERE b.created_at >= $1 AND b.created_at < $2 ORDER BY 2, 1"#,
        from,
        to,
    )
    .await;
    let parents: Vec<(String, String, i64)> = in_window(
        pool,
        r#"SELECT p.bill_id, p.qr, (SELECT count(*) FROM registry.bags c WHERE c.parent_qr = p.qr)
           FROM registry.bags p JOIN billing.bills b ON b.bill_id = p.bill_id
           WHERE b.created_at >= $1 AND b.created_at < $2 ORDER BY b.created_by_username, 1, 2"#,
        from,
        to,
    )
    .await;
    // Successful child scans per `column` (area or username), most first.
    let scans_by = |column: &str| {
        let sql = format!(
            "SELECT {column}, count(*) FROM scan.scan_events WHERE kind = 'child' AND outcome = 'ok'
             AND occurred_at >= $1 AND occurred_at < $2 GROUP BY 1 ORDER BY 2 DESC, 1"
        );
        in_window::<(String, i64)>(pool, sqlx::AssertSqlSafe(sql), from, to)
    };
    let (by_area, by_user) = (scans_by("area").await, scans_by("username").await);
    let counts = |rows: Vec<(String, i64)>| -> Sheet {
        rows.into_iter()
            .map(|(n, c)| vec![n, c.to_string()])
            .collect()
    };
    (
        bills
            .into_iter()
            .map(|(id, by, p, cap, ch, st)| {
                vec![id, by, p.to_string(), cap.to_string(), ch.to_string(), st]
            })
            .collect(),
        parents
            .into_iter()
            .map(|(b, q, c)| vec![b, q, c.to_string()])
            .collect(),
        counts(by_area),
        counts(by_user),
    )
}

/// The mail's workbook in the shape of [`truth`].
fn from_mail(m: &Received) -> (Sheet, Sheet, Sheet, Sheet, Sheet) {
    let (name, ct, bytes) = &m.attachments[0];
    assert!(
        name.starts_with("end-of-day-") && name.ends_with(".xlsx"),
        "{name}"
    );
    assert_eq!(
        ct,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let s = sheets(bytes);
    let mut bills: Sheet = s["Bills"]
        .iter()
        .map(|r| {
            vec![
                r[1].clone(),
                r[0].clone(),
                r[4].clone(),
                r[5].clone(),
                r[6].clone(),
                r[9].clone(),
            ]
        })
        .collect();
    bills.sort_by(|a, b| (&a[1], &a[0]).cmp(&(&b[1], &b[0])));
    (
        bills,
        s["Parents"].clone(),
        s["Scans per area"].clone(),
        s["Scans per dispatcher"].clone(),
        s["Totals"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_end_of_day_report_arrives_once_from_two_replicas_with_the_databases_figures() {
    let w = World::start("22:00").await;
    w.activity("1").await;
    // A dealer returns one sack of the completed bill on a return ticket.
    let mut billing = w.stack.billing();
    let ticket = billing
        .create_return_ticket(authed(
            bpb::CreateReturnTicketRequest {
                area: "lucknow".into(),
                notes: "dealer return".into(),
            },
            &w.bina,
        ))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    billing
        .return_parent(authed(
            bpb::ReturnParentRequest {
                ticket_id: ticket.ticket_id.clone(),
                parent_qr: "SB10002".into(),
            },
            &w.bina,
        ))
        .await
        .unwrap();
    let smtp = SmtpServer::start().await;
    let (day, send_at, offset) = cutoff_ahead();
    // Two stats replicas (separate processes), both past the cut-off, and a gateway on each.
    let a = w.stats_process(smtp.port, &send_at, offset).await;
    let b = w.stats_process(smtp.port, &send_at, offset).await;
    let gateways = [
        Gateway::start(&w.stack, |s| {
            s.stats_url = a.url();
            s.billing_url = w.stack.billings[0].url();
            s.rate_limits.enabled = false;
        })
        .await,
        Gateway::start(&w.stack, |s| {
            s.stats_url = b.url();
            s.billing_url = w.stack.billings[0].url();
            s.rate_limits.enabled = false;
        })
        .await,
    ];

    let got = smtp.wait_for(1, Duration::from_secs(60)).await;
    w.wait_status(day, "the day recorded as sent", |s, _| s == "sent")
        .await;
    // Both replicas keep looking; nothing more is sent.
    ticks(&[&a, &b], 5.0).await;
    let got_after = smtp.messages();
    assert_eq!(got_after.len(), 1, "exactly one report: {got_after:?}");
    let m = &got[0];
    assert_eq!(m.message_id, format!("<eod-{day}@tracetrack.local>"));
    assert_eq!(m.rcpt_tos, RECIPIENTS.map(String::from).to_vec());
    assert!(m.subject.contains(&day.to_string()), "{}", m.subject);
    assert!(m.html.contains("R-1-1") && m.html.contains("R-1-2"));
    assert!(m.html.contains("Agra &lt;&amp; Co&gt;"), "escaped by maud");
    assert!(m.html.contains("https://tracetrack.example/#/reports?day="));
    assert!(m.text.contains("R-1-1"));

    // The figures equal the owning services' tables for the report's window.
    let (from, to): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT window_from, window_to FROM stats.daily_reports WHERE day = $1")
            .bind(day)
            .fetch_one(w.pool())
            .await
            .unwrap();
    assert_eq!(to - from, chrono::Duration::hours(24));
    let (bills, parents, areas, dispatchers) = truth(w.pool(), from, to).await;
    let (m_bills, m_parents, m_areas, m_dispatchers, totals) = from_mail(m);
    let returns: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT ticket_id, bill_id, parent_qr, child_count FROM billing.returns
         WHERE state = 'returned' AND returned_at >= $1 AND returned_at < $2 ORDER BY 1, 3",
    )
    .bind(from)
    .bind(to)
    .fetch_all(w.pool())
    .await
    .unwrap();
    assert_eq!(
        returns,
        vec![(
            ticket.ticket_id.clone(),
            "R-1-1".into(),
            "SB10002".into(),
            2
        )]
    );
    let m_returns: Vec<(String, String, String, i32)> = sheets(&m.attachments[0].2)["Returns"]
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(m_returns, returns);
    assert!(m.html.contains(&ticket.ticket_id));
    assert_eq!(m_bills, bills);
    assert_eq!(bills.len(), 2);
    let mut m_parents = m_parents;
    m_parents.sort();
    let mut parents = parents;
    parents.sort();
    assert_eq!(m_parents, parents);
    assert_eq!(m_areas, areas);
    assert_eq!(
        areas,
        vec![
            vec!["lucknow".to_string(), "5".into()],
            vec!["indore".to_string(), "4".into()]
        ]
    );
    assert_eq!(m_dispatchers, dispatchers);
    let total = |k: &str| totals.iter().find(|r| r[0] == k).unwrap()[1].clone();
    assert_eq!(total("bills"), "2");
    // The returned sack left its bill: 2 parents and 7 children still on the day's bills.
    assert_eq!(total("parents"), "2");
    assert_eq!(total("children"), "7");
    assert_eq!(total("scans"), "9");
    assert_eq!(total("returns"), "1");

    // The preview through either gateway says the same and shows the delivery.
    let c = Client::new();
    for gw in &gateways {
        let token = http_token(&c, gw, "bina", USER_PASSWORD).await;
        let r = c
            .get(gw.url(&format!("/api/v1/reports/daily?day={day}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["totals"]["scans"], 9);
        assert_eq!(v["delivery"]["status"], "sent");
        assert_eq!(v["mail_enabled"], true);
        assert_eq!(v["bills"].as_array().unwrap().len(), 2);
    }
    // A dispatcher is refused.
    let ravi = http_token(&c, &gateways[0], "ravi", USER_PASSWORD).await;
    let r = c
        .get(gateways[0].url("/api/v1/reports/daily"))
        .bearer_auth(&ravi)
        .send()
        .await
        .unwrap();
    problem(r, 403, "permission_denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_smtp_server_down_the_report_is_retried_and_arrives_when_it_returns() {
    let w = World::start("22:00").await;
    w.activity("2").await;
    let mut smtp = SmtpServer::reserved();
    let (day, send_at, offset) = cutoff_ahead();
    // This one mails in Hindi.
    let a = w
        .stats_process_with(smtp.port, &send_at, offset, "hi")
        .await;
    w.wait_status(day, "two failed attempts", |s, n| s == "failed" && n >= 2)
        .await;
    assert!(smtp.messages().is_empty());
    let last_error: String =
        sqlx::query_scalar("SELECT last_error FROM stats.daily_reports WHERE day = $1")
            .bind(day)
            .fetch_one(w.pool())
            .await
            .unwrap();
    assert!(!last_error.is_empty());

    smtp.up().await;
    let got = smtp.wait_for(1, Duration::from_secs(60)).await;
    w.wait_status(day, "sent after the server returned", |s, n| {
        s == "sent" && n >= 3
    })
    .await;
    ticks(&[&a], 5.0).await;
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(got[0].message_id, format!("<eod-{day}@tracetrack.local>"));
    assert!(got[0].html.contains("lang=\"hi\"") && got[0].html.contains("दिन के अंत की रिपोर्ट"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_day_without_activity_sends_nothing() {
    let w = World::start("22:00").await;
    let smtp = SmtpServer::start().await;
    let (day, send_at, offset) = cutoff_ahead();
    let a = w.stats_process(smtp.port, &send_at, offset).await;
    w.wait_status(day, "the day recorded as skipped", |s, _| s == "skipped")
        .await;
    ticks(&[&a], 5.0).await;
    assert!(smtp.messages().is_empty());
}

/// What comes after a day's cut-off (22:00 to midnight, here: the minute since) is in the next
/// day's report, not lost: the windows are [previous cut-off, cut-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activity_after_the_cut_off_is_in_the_next_days_report() {
    let cut = (Utc::now() - chrono::Duration::seconds(60)).with_timezone(&ist());
    let w = World::start(&cut.format("%H:%M:%S").to_string()).await;
    w.activity("3").await;
    let day = cut.date_naive();
    let stats = pb::stats_service_client::StatsServiceClient::new(
        tonic::transport::Channel::from_shared(w.stats.url())
            .unwrap()
            .connect_lazy(),
    );
    let preview = |d: NaiveDate| {
        let req = authed(
            pb::PreviewDailyReportRequest {
                day: d.to_string(),
                with_xlsx: true,
                lang: "hi".into(),
            },
            &w.stack.admin,
        );
        let mut s = stats.clone();
        async move { s.preview_daily_report(req).await.unwrap().into_inner() }
    };
    let closing = preview(day).await;
    assert!(!closing.has_activity, "{closing:?}");
    let next = preview(day.succ_opt().unwrap()).await;
    assert!(next.has_activity);
    let t = next.totals.unwrap();
    assert_eq!((t.bills, t.parents, t.children, t.scans), (2, 3, 9, 9));
    assert_eq!(
        next.window_from.unwrap().seconds,
        closing.window_to.unwrap().seconds,
        "the windows meet"
    );
    assert!(next.html.contains("lang=\"hi\""));
    assert!(sheets(&next.xlsx.unwrap().body).contains_key("Totals"));
    assert!(next.delivery.is_none());
    assert!(!next.mail_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bill_summary_equals_a_direct_computation_and_its_downloads_parse() {
    let w = World::start("22:00").await;
    w.activity("4").await;
    let gw = Gateway::start(&w.stack, |s| {
        s.stats_url = w.stats.url();
        s.billing_url = w.stack.billings[0].url();
        s.rate_limits.enabled = false;
    })
    .await;
    let c = Client::new();
    let token = http_token(&c, &gw, "bina", USER_PASSWORD).await;
    let today = Utc::now().with_timezone(&ist()).date_naive();
    let q = format!("from={today}&to={today}");
    let get = |path: String| {
        let c = c.clone();
        let token = token.clone();
        let url = gw.url(&path);
        async move { c.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let r = get(format!("/api/v1/reports/bill-summary?{q}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();

    // Directly: bills created today (business day) from billing, children from bag-registry.
    let (bills, completed, parents, children): (i64, i64, i64, i64) = sqlx::query_as(
        r#"SELECT count(*), count(*) FILTER (WHERE status = 'completed'), sum(parent_count)::bigint,
                  (SELECT count(*) FROM registry.bags c JOIN registry.bags p ON c.parent_qr = p.qr
                   JOIN billing.bills b2 ON b2.bill_id = p.bill_id
                   WHERE (b2.created_at AT TIME ZONE $1)::date = $2)
           FROM billing.bills WHERE (created_at AT TIME ZONE $1)::date = $2"#,
    )
    .bind(TZ)
    .bind(today)
    .fetch_one(w.pool())
    .await
    .unwrap();
    let totals = &v["totals"];
    assert_eq!(totals["bills_created"], bills);
    assert_eq!(totals["bills_completed"], completed);
    assert_eq!(totals["parents"], parents);
    assert_eq!(totals["children"], children);
    assert_eq!(totals["completion_percent"], 50.0);
    assert_eq!(v["billers"].as_array().unwrap().len(), 2);
    assert_eq!(v["time_zone"], TZ);

    // CSV: one row per biller, then TOTAL, equal to the JSON.
    let r = get(format!("/api/v1/reports/bill-summary.csv?{q}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .ends_with(".csv\""));
    let body = r.bytes().await.unwrap();
    let mut rd = csv::Reader::from_reader(body.as_ref());
    let rows: Vec<Vec<String>> = rd
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    let total_row = &rows[2];
    assert_eq!(total_row[0], "TOTAL");
    assert_eq!(total_row[1], bills.to_string());
    assert_eq!(total_row[5], children.to_string());

    // XLSX: the same TOTAL row.
    let r = get(format!("/api/v1/reports/bill-summary.xlsx?{q}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = sheets(&r.bytes().await.unwrap());
    let last = s["Summary"].last().unwrap();
    assert_eq!(last[0], "TOTAL");
    assert_eq!(last[1], bills.to_string());
    assert_eq!(last[6], children.to_string());

    // The printable page, in Hindi, escaped; bad input is a 400 with a stable code.
    let r = get(format!("/api/v1/reports/bill-summary.html?{q}&lang=hi")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("बिल सारांश") && html.contains("bina"));
    let r = get(format!(
        "/api/v1/reports/bill-summary?from={today}&to=2020-01-01"
    ))
    .await;
    problem(r, 400, "invalid_argument").await;
    let r = get("/api/v1/reports/bill-summary?from=yesterday&to=today".into()).await;
    problem(r, 400, "invalid_argument").await;
    // Without SMTP, send-now says why.
    let r = c
        .post(gw.url("/api/v1/reports/daily/send"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    problem(r, 503, "unavailable").await;
}

/// The claim and the lease in SQL: one row per day whoever inserts it, one holder at a time
/// among many racing replicas, a result recorded only by the holder, and a crashed holder's day
/// taken over once its lease has run out (the same Message-ID, the attempt counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_at_a_time_holds_a_day_and_a_crashed_holders_day_is_taken_over() {
    use tracetrack_stats::store;
    let w = World::start("22:00").await;
    let pool = w.stats.pool.clone();
    let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
    let (from, to) = (Utc::now() - chrono::Duration::hours(24), Utc::now());
    let claims = (0..8).map(|i| {
        let pool = pool.clone();
        async move {
            let id = if i == 0 { "eod-first@x" } else { "eod-other@x" };
            store::claim_day(&pool, day, from, to, id).await.unwrap();
        }
    });
    futures::future::join_all(claims).await;
    let leases = (0..16).map(|i| {
        let pool = pool.clone();
        async move {
            store::lease_day(&pool, day, &format!("replica-{i}"), 60_000)
                .await
                .unwrap()
                .map(|r| (i, r))
        }
    });
    let won: Vec<_> = futures::future::join_all(leases)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(won.len(), 1, "exactly one holder");
    let (holder, row) = &won[0];
    assert_eq!(row.attempts, 1);
    let message_id = row.message_id.clone();
    // Another replica cannot record a result or take the live lease.
    assert!(
        !store::record_result(&pool, day, "replica-x", "sent", "", "", 0)
            .await
            .unwrap()
    );
    assert!(store::lease_day(&pool, day, "replica-x", 60_000)
        .await
        .unwrap()
        .is_none());
    // The holder "crashes": its lease is made to run out; the next replica takes the day over.
    sqlx::query(
        "UPDATE stats.daily_reports SET lease_until = now() - interval '1 second' WHERE day = $1",
    )
    .bind(day)
    .execute(&pool)
    .await
    .unwrap();
    let taken = store::lease_day(&pool, day, "replica-y", 60_000)
        .await
        .unwrap()
        .expect("the expired lease is taken over");
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.message_id, message_id, "the same Message-ID");
    // The crashed holder's late result does not count; the new holder's does, once.
    assert!(
        !store::record_result(&pool, day, &format!("replica-{holder}"), "sent", "", "", 0)
            .await
            .unwrap()
    );
    assert!(
        store::record_result(&pool, day, "replica-y", "sent", "a@x", "", 0)
            .await
            .unwrap()
    );
    assert!(store::lease_day(&pool, day, "replica-z", 60_000)
        .await
        .unwrap()
        .is_none());
    assert_eq!(w.delivery(day).await, Some(("sent".into(), 2)));
}
