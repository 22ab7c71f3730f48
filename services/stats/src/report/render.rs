//! The reports as files: HTML through maud (every value escaped by construction), CSV and XLSX.
//! English and Hindi labels.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};
use tracetrack_common::{AppError, AppResult};
use tracetrack_proto::stats::v1 as pb;

pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The labels of both reports in one language.
struct Labels {
    summary_title: &'static str,
    daily_title: &'static str,
    biller: &'static str,
    bills_created: &'static str,
    bills_completed: &'static str,
    parents: &'static str,
    children: &'static str,
    actual: &'static str,
    expected: &'static str,
    completion: &'static str,
    total: &'static str,
    bill: &'static str,
    destination: &'static str,
    vehicle: &'static str,
    weight: &'static str,
    status: &'static str,
    parent_children: &'static str,
    scans_area: &'static str,
    scans_dispatcher: &'static str,
    area: &'static str,
    dispatcher: &'static str,
    scans: &'static str,
    returns: &'static str,
    ticket: &'static str,
    no_bills: &'static str,
    no_returns: &'static str,
    window: &'static str,
    open: &'static str,
}

const EN: Labels = Labels {
    summary_title: "Bill summary",
    daily_title: "End-of-day report",
    biller: "Biller",
    bills_created: "Bills created",
    bills_completed: "Completed",
    parents: "Parents",
    children: "Children",
    actual: "Actual weight (kg)",
    expected: "Expected weight (kg)",
    completion: "Completion %",
    total: "Total",
    bill: "Bill",
    destination: "Destination",
    vehicle: "Vehicle",
    weight: "Weight (kg)",
    status: "Status",
    parent_children: "Parents (children each)",
    scans_area: "Scans per area",
    scans_dispatcher: "Scans per dispatcher",
    area: "Area",
    dispatcher: "Dispatcher",
    scans: "Scans",
    returns: "Returns",
    ticket: "Ticket",
    no_bills: "No bills created.",
    no_returns: "No returns.",
    window: "Covers",
    open: "Open in TraceTrack",
};

const HI: Labels = Labels {
    summary_title: "बिल सारांश",
    daily_title: "दिन के अंत की रिपोर्ट",
    biller: "बिलर",
    bills_created: "बने बिल",
    bills_completed: "पूरे",
    parents: "बोरे",
    children: "पैकेट",
    actual: "असल वज़न (किग्रा)",
    expected: "अनुमानित वज़न (किग्रा)",
    completion: "पूरा %",
    total: "कुल",
    bill: "बिल",
    destination: "गंतव्य",
    vehicle: "गाड़ी",
    weight: "वज़न (किग्रा)",
    status: "स्थिति",
    parent_children: "बोरे (हर एक के पैकेट)",
    scans_area: "क्षेत्र के हिसाब से स्कैन",
    scans_dispatcher: "डिस्पैचर के हिसाब से स्कैन",
    area: "क्षेत्र",
    dispatcher: "डिस्पैचर",
    scans: "स्कैन",
    returns: "वापसी",
    ticket: "टिकट",
    no_bills: "कोई बिल नहीं बना।",
    no_returns: "कोई वापसी नहीं।",
    window: "अवधि",
    open: "TraceTrack में खोलें",
};

fn labels(lang: &str) -> &'static Labels {
    if lang == "hi" {
        &HI
    } else {
        &EN
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1rem;color:#111}\
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left}\
td.n,th.n{text-align:right}tfoot td{font-weight:bold}h1{font-size:1.3rem}h2{font-size:1.1rem}\
@media print{body{margin:0}}";

fn kg(v: f64) -> String {
    format!("{v:.2}")
}

fn page(lang: &str, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

// ------------------------------------------------------------------------------ bill summary

pub fn summary_html(s: &pb::GetBillSummaryResponse, lang: &str) -> String {
    let t = labels(lang);
    let totals = s.totals.clone().unwrap_or_default();
    let body = html! {
        h1 { (t.summary_title) " " (s.from_day) " – " (s.to_day) }
        p { (s.time_zone) }
        table {
            thead { tr {
                th { (t.biller) } th.n { (t.bills_created) } th.n { (t.bills_completed) }
                th.n { (t.parents) } th.n { (t.children) } th.n { (t.actual) }
                th.n { (t.expected) } th.n { (t.completion) }
            } }
            tbody {
                @for b in &s.billers { (summary_row(&b.biller, b)) }
            }
            tfoot { (summary_row(t.total, &totals)) }
        }
    };
    page(lang, t.summary_title, body)
}

fn summary_row(name: &str, b: &pb::BillerFigures) -> Markup {
    html! {
        tr {
            td { (name) } td.n { (b.bills_created) } td.n { (b.bills_completed) }
            td.n { (b.parents) } td.n { (b.children) } td.n { (kg(b.actual_weight_kg)) }
            td.n { (kg(b.expected_weight_kg)) } td.n { (format!("{:.1}", b.completion_percent)) }
        }
    }
}

const SUMMARY_HEADER: [&str; 9] = [
    "biller",
    "bills_created",
    "bills_completed",
    "parents",
    "capacity",
    "children",
    "actual_weight_kg",
    "expected_weight_kg",
    "completion_percent",
];

fn summary_cells(name: &str, b: &pb::BillerFigures) -> Vec<String> {
    vec![
        name.to_owned(),
        b.bills_created.to_string(),
        b.bills_completed.to_string(),
        b.parents.to_string(),
        b.capacity.to_string(),
        b.children.to_string(),
        kg(b.actual_weight_kg),
        kg(b.expected_weight_kg),
        format!("{:.1}", b.completion_percent),
    ]
}

/// One row per biller, then a `TOTAL` row.
pub fn summary_csv(s: &pb::GetBillSummaryResponse) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let e = |e: csv::Error| AppError::internal(e);
    w.write_record(SUMMARY_HEADER).map_err(e)?;
    for b in &s.billers {
        w.write_record(summary_cells(&b.biller, b)).map_err(e)?;
    }
    w.write_record(summary_cells(
        "TOTAL",
        &s.totals.clone().unwrap_or_default(),
    ))
    .map_err(e)?;
    w.into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))
}

pub fn summary_xlsx(s: &pb::GetBillSummaryResponse) -> AppResult<Vec<u8>> {
    let build = || -> Result<Vec<u8>, XlsxError> {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.set_name("Summary")?;
        let bold = Format::new().set_bold();
        for (c, h) in SUMMARY_HEADER.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        let totals = s.totals.clone().unwrap_or_default();
        let rows = s
            .billers
            .iter()
            .map(|b| (b.biller.as_str(), b))
            .chain(std::iter::once(("TOTAL", &totals)));
        for (i, (name, b)) in rows.enumerate() {
            let r = i as u32 + 1;
            ws.write_string(r, 0, name)?;
            let nums = [
                b.bills_created as f64,
                b.bills_completed as f64,
                b.parents as f64,
                b.capacity as f64,
                b.children as f64,
                b.actual_weight_kg,
                b.expected_weight_kg,
                b.completion_percent,
            ];
            for (c, v) in nums.iter().enumerate() {
                ws.write_number(r, c as u16 + 1, *v)?;
            }
        }
        wb.save_to_buffer()
    };
    build().map_err(AppError::internal)
}

// ---------------------------------------------------------------------------- end of day

fn window_text(r: &pb::DailyReport) -> String {
    let f = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    format!("{} – {}", f(&r.window_from), f(&r.window_to))
}

/// The e-mail's (and the preview's) HTML; `link` opens the reports page.
pub fn daily_html(r: &pb::DailyReport, lang: &str, link: &str) -> String {
    let t = labels(lang);
    let totals = r.totals.unwrap_or_default();
    let body = html! {
        h1 { (t.daily_title) " " (r.day) }
        p { (t.window) ": " (window_text(r)) " (" (r.time_zone) ")" }
        h2 { (t.bill) }
        @if r.bills.is_empty() { p { (t.no_bills) } } @else {
            table {
                thead { tr {
                    th { (t.biller) } th { (t.bill) } th { (t.destination) } th { (t.vehicle) }
                    th.n { (t.parents) } th.n { (t.children) } th.n { (t.weight) }
                    th { (t.status) } th { (t.parent_children) }
                } }
                tbody {
                    @for b in &r.bills {
                        tr {
                            td { (b.biller) } td { (b.bill_id) } td { (b.destination) }
                            td { (b.vehicle_number) }
                            td.n { (b.parent_count) "/" (b.capacity) } td.n { (b.child_count) }
                            td.n { (kg(b.actual_weight_kg)) } td { (b.status) }
                            td {
                                @for (i, p) in b.parents.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (p.qr) " (" (p.child_count) ")"
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t.scans_area) }
        (name_counts(t.area, t.scans, &r.scans_by_area))
        h2 { (t.scans_dispatcher) }
        (name_counts(t.dispatcher, t.scans, &r.scans_by_dispatcher))
        h2 { (t.returns) }
        @if r.returns.is_empty() { p { (t.no_returns) } } @else {
            table {
                thead { tr { th { (t.ticket) } th { (t.bill) } th { "QR" } th.n { (t.children) } th.n { (t.weight) } } }
                tbody { @for x in &r.returns { tr {
                    td { (x.ticket_id) } td { (x.bill_id) } td { (x.parent_qr) }
                    td.n { (x.child_count) } td.n { (kg(x.weight_kg)) }
                } } }
            }
        }
        h2 { (t.total) }
        table.totals { tbody {
            tr { th { (t.bill) } td.n { (totals.bills) } }
            tr { th { (t.parents) } td.n { (totals.parents) } }
            tr { th { (t.children) } td.n { (totals.children) } }
            tr { th { (t.actual) } td.n { (kg(totals.actual_weight_kg)) } }
            tr { th { (t.expected) } td.n { (kg(totals.expected_weight_kg)) } }
            tr { th { (t.scans) } td.n { (totals.scans) } }
            tr { th { (t.returns) } td.n { (totals.returns) } }
        } }
        @if !link.is_empty() { p { a href=(link) { (t.open) } } }
    };
    page(lang, t.daily_title, body)
}

fn name_counts(name: &str, count: &str, rows: &[pb::NameCount]) -> Markup {
    html! {
        table {
            thead { tr { th { (name) } th.n { (count) } } }
            tbody { @for r in rows { tr { td { (r.name) } td.n { (r.count) } } } }
        }
    }
}

/// The plain-text alternative of the e-mail.
pub fn daily_text(r: &pb::DailyReport, link: &str) -> String {
    let t = r.totals.unwrap_or_default();
    let mut s = format!(
        "End-of-day report {} ({})\nBills: {}  Parents: {}  Children: {}  Weight: {} kg  Scans: {}  Returns: {}\n\n",
        r.day,
        window_text(r),
        t.bills,
        t.parents,
        t.children,
        kg(t.actual_weight_kg),
        t.scans,
        t.returns
    );
    for b in &r.bills {
        s.push_str(&format!(
            "{}  {}  {}/{} parents  {} children  {} kg  {}\n",
            b.bill_id,
            b.biller,
            b.parent_count,
            b.capacity,
            b.child_count,
            kg(b.actual_weight_kg),
            b.status
        ));
    }
    s.push_str("\nThe workbook attached has every figure.\n");
    if !link.is_empty() {
        s.push_str(link);
        s.push('\n');
    }
    s
}

fn header(ws: &mut Worksheet, cols: &[&str]) -> Result<(), XlsxError> {
    let bold = Format::new().set_bold();
    for (c, h) in cols.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    Ok(())
}

/// The same content as the HTML: sheets Bills, Parents, Scans per area, Scans per dispatcher,
/// Returns, Totals.
pub fn daily_xlsx(r: &pb::DailyReport) -> AppResult<Vec<u8>> {
    let build = || -> Result<Vec<u8>, XlsxError> {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.set_name("Bills")?;
        header(
            ws,
            &[
                "biller",
                "bill_id",
                "destination",
                "vehicle_number",
                "parents",
                "capacity",
                "children",
                "actual_weight_kg",
                "expected_weight_kg",
                "status",
            ],
        )?;
        for (i, b) in r.bills.iter().enumerate() {
            let row = i as u32 + 1;
            ws.write_string(row, 0, &b.biller)?;
            ws.write_string(row, 1, &b.bill_id)?;
            ws.write_string(row, 2, &b.destination)?;
            ws.write_string(row, 3, &b.vehicle_number)?;
            ws.write_number(row, 4, f64::from(b.parent_count))?;
            ws.write_number(row, 5, f64::from(b.capacity))?;
            ws.write_number(row, 6, b.child_count as f64)?;
            ws.write_number(row, 7, b.actual_weight_kg)?;
            ws.write_number(row, 8, b.expected_weight_kg)?;
            ws.write_string(row, 9, &b.status)?;
        }
        let ws = wb.add_worksheet();
        ws.set_name("Parents")?;
        header(ws, &["bill_id", "parent_qr", "children"])?;
        let mut row = 1u32;
        for b in &r.bills {
            for p in &b.parents {
                ws.write_string(row, 0, &b.bill_id)?;
                ws.write_string(row, 1, &p.qr)?;
                ws.write_number(row, 2, f64::from(p.child_count))?;
                row += 1;
            }
        }
        for (name, col, rows) in [
            ("Scans per area", "area", &r.scans_by_area),
            ("Scans per dispatcher", "dispatcher", &r.scans_by_dispatcher),
        ] {
            let ws = wb.add_worksheet();
            ws.set_name(name)?;
            header(ws, &[col, "scans"])?;
            for (i, n) in rows.iter().enumerate() {
                ws.write_string(i as u32 + 1, 0, &n.name)?;
                ws.write_number(i as u32 + 1, 1, n.count as f64)?;
            }
        }
        let ws = wb.add_worksheet();
        ws.set_name("Returns")?;
        header(
            ws,
            &["ticket_id", "bill_id", "parent_qr", "children", "weight_kg"],
        )?;
        for (i, x) in r.returns.iter().enumerate() {
            let row = i as u32 + 1;
            ws.write_string(row, 0, &x.ticket_id)?;
            ws.write_string(row, 1, &x.bill_id)?;
            ws.write_string(row, 2, &x.parent_qr)?;
            ws.write_number(row, 3, f64::from(x.child_count))?;
            ws.write_number(row, 4, x.weight_kg)?;
        }
        let t = r.totals.unwrap_or_default();
        let ws = wb.add_worksheet();
        ws.set_name("Totals")?;
        header(ws, &["figure", "value"])?;
        for (i, (k, v)) in [
            ("day", f64::NAN),
            ("bills", t.bills as f64),
            ("parents", t.parents as f64),
            ("children", t.children as f64),
            ("actual_weight_kg", t.actual_weight_kg),
            ("expected_weight_kg", t.expected_weight_kg),
            ("scans", t.scans as f64),
            ("returns", t.returns as f64),
        ]
        .iter()
        .enumerate()
        {
            let row = i as u32 + 1;
            ws.write_string(row, 0, *k)?;
            if v.is_nan() {
                ws.write_string(row, 1, &r.day)?;
            } else {
                ws.write_number(row, 1, *v)?;
            }
        }
        wb.save_to_buffer()
    };
    build().map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_the_html() {
        let r = pb::DailyReport {
            day: "2026-12-05".into(),
            bills: vec![pb::ReportBill {
                bill_id: "<script>alert(1)</script>".into(),
                destination: "A & B".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = daily_html(&r, "en", "https://tt.example/#/reports");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("A &amp; B"));
    }

    #[test]
    fn the_summary_csv_ends_with_the_totals() {
        let s = pb::GetBillSummaryResponse {
            billers: vec![pb::BillerFigures {
                biller: "asha".into(),
                bills_created: 2,
                ..Default::default()
            }],
            totals: Some(pb::BillerFigures {
                bills_created: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let csv = String::from_utf8(summary_csv(&s).unwrap_or_default()).unwrap_or_default();
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("TOTAL,2,"));
    }
}
