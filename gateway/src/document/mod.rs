//! The printable dispatch document (A4) and label (A6) of a bill, rendered with `maud`: every
//! value is escaped by construction. Print CSS only (Chromium's print-to-PDF and any browser's
//! print): the table's header row repeats on every page (`thead` is a table-header-group), rows
//! are never split, and the page's bottom margin box counts pages (`@page { @bottom-right }`,
//! printed by Chromium since version 131).

pub mod qr;
pub mod words;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use tracetrack_proto::billing::v1 as pb;

use crate::config::Organisation;
pub use words::Lang;
use words::Words;

/// A4 document or A6 label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    A4,
    A6,
}

/// One parent that came back from this bill on a return ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnLine {
    pub ticket_id: String,
    pub parent_qr: String,
    pub child_count: i64,
    pub weight_kg: f64,
    pub returned_at: Option<DateTime<Utc>>,
}

/// Everything one document shows.
pub struct Document<'a> {
    pub org: &'a Organisation,
    pub bill: &'a pb::Bill,
    pub parents: &'a [pb::BillParent],
    /// The bill's returns (section "Returns", left out when there are none).
    pub returns: &'a [ReturnLine],
    pub lang: Lang,
    pub now: DateTime<Utc>,
}

impl Document<'_> {
    /// The document as a whole HTML page.
    pub fn render(&self, format: Format) -> String {
        let w = &Words::of(self.lang);
        let title = match format {
            Format::A4 => w.title,
            Format::A6 => w.label_title,
        };
        html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    title { (title) " " (self.bill.bill_id) }
                    style { (PreEscaped(css(format, w))) }
                }
                body class=(match format { Format::A4 => "a4", Format::A6 => "a6" }) {
                    @match format {
                        Format::A4 => (self.a4(w)),
                        Format::A6 => (self.a6(w)),
                    }
                }
            }
        }
        .into_string()
    }

    fn qr(&self) -> Markup {
        let text = qr::payload(&self.org.public_base_url, &self.bill.bill_id);
        html! {
            @if let Some(svg) = qr::svg(&text) {
                figure class="qr" data-qr=(text) { (svg) figcaption { (Words::of(self.lang).scan_to_open) } }
            }
        }
    }

    fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.org.time_zone)
            .format("%d-%m-%Y %H:%M %Z")
            .to_string()
    }

    fn dispatched(&self) -> Option<DateTime<Utc>> {
        (self.bill.status == pb::BillStatus::Completed as i32)
            .then_some(self.bill.completed_at.as_ref())
            .flatten()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
    }

    /// The depot of the area most of the bill's parents are in.
    fn depot(&self) -> Option<String> {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for p in self.parents.iter().filter(|p| !p.area.is_empty()) {
            *count.entry(&p.area).or_default() += 1;
        }
        let (area, _) = count
            .into_iter()
            .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))?;
        Some(
            self.org
                .depots
                .get(area)
                .cloned()
                .unwrap_or_else(|| area.to_owned()),
        )
    }

    fn status(&self, w: &Words) -> &'static str {
        let i = self.bill.status - 1;
        usize::try_from(i)
            .ok()
            .and_then(|i| w.statuses.get(i).copied())
            .unwrap_or("")
    }

    fn organisation(&self, w: &Words) -> Markup {
        let org = self.org;
        html! {
            div class="org" {
                div class="org-name" { (org.name) }
                @if !org.address.is_empty() { div { (org.address) } }
                @if !org.tax_id.is_empty() { div { (w.tax_id) ": " (org.tax_id) } }
                @if let Some(depot) = self.depot() { div { (w.depot) ": " (depot) } }
            }
        }
    }

    fn a4(&self, w: &Words) -> Markup {
        let b = self.bill;
        let dispatched = self.dispatched();
        html! {
            header class="head" {
                div {
                    (self.organisation(w))
                    h1 { (w.title) }
                    div class="bill-id" { (w.bill) " " (b.bill_id) }
                    @if dispatched.is_none() { div class="draft" { (w.draft) } }
                }
                (self.qr())
            }
            table class="facts" {
                tr {
                    th { (w.dispatched_at) }
                    td { @match dispatched { Some(t) => (self.local(t)), None => (w.not_dispatched) } }
                    th { (w.status) } td { (self.status(w)) }
                }
                tr { th { (w.destination) } td { (b.destination) } th { (w.vehicle) } td class="vehicle" { (b.vehicle_number) } }
                tr { th { (w.driver) } td { (b.driver_name) } th { (w.driver_phone) } td { (b.driver_phone) } }
                tr { th { (w.seal) } td class="seal" { (b.seal_number) } th { (w.created_by) } td { (if b.created_by_username.is_empty() { &b.created_by } else { &b.created_by_username }) } }
                @if !b.description.is_empty() { tr { th { (w.description) } td colspan="3" { (b.description) } } }
            }
            table class="totals" {
                tr { th { (w.sacks) } th { (w.packets) } th { (w.expected_kg) } th { (w.actual_kg) } th { (w.difference_kg) } }
                tr {
                    td { (b.parent_count) "/" (b.capacity) }
                    td { (b.child_count) }
                    td { (kg(b.expected_weight_kg)) }
                    td { (kg(b.actual_weight_kg)) }
                    td { (signed(b.actual_weight_kg - b.expected_weight_kg)) }
                }
            }
            table class="lines" {
                thead {
                    tr class="repeat" { th colspan="8" { (w.bill) " " (b.bill_id) " · " (w.sacks) } }
                    tr {
                        th { (w.no) } th { (w.sack) } th { (w.product_line) } th { (w.area) }
                        th class="n" { (w.packets) } th class="n" { (w.expected_kg) }
                        th class="n" { (w.actual_kg) } th class="n" { (w.difference_kg) }
                    }
                }
                tbody {
                    @for (i, p) in self.parents.iter().enumerate() {
                        tr {
                            td { (i + 1) } td class="qr-text" { (p.qr) } td { (p.product_line) } td { (p.area) }
                            td class="n" { (p.child_count) "/" (p.capacity) }
                            td class="n" { (kg(p.expected_weight_kg)) }
                            td class="n" { (kg(p.weight_kg)) }
                            td class="n" { (signed(p.weight_kg - p.expected_weight_kg)) }
                        }
                    }
                    tr class="total" {
                        td colspan="4" { (w.total) " (" (self.parents.len()) ")" }
                        td class="n" { (b.child_count) }
                        td class="n" { (kg(b.expected_weight_kg)) }
                        td class="n" { (kg(b.actual_weight_kg)) }
                        td class="n" { (signed(b.actual_weight_kg - b.expected_weight_kg)) }
                    }
                }
            }
            // SPEC §1: dispatched = still on the bill (net, the figures above) + returned.
            @if !self.returns.is_empty() || b.returned_count > 0 {
                section class="returns" {
                    h2 { (w.returns) }
                    table class="lines" {
                        thead { tr { th { (w.ticket) } th { (w.sack) } th class="n" { (w.packets) } th class="n" { (w.actual_kg) } th { (w.returned_at) } } }
                        tbody {
                            @for r in self.returns {
                                tr {
                                    td { (r.ticket_id) } td { (r.parent_qr) } td class="n" { (r.child_count) }
                                    td class="n" { (kg(r.weight_kg)) }
                                    td { @if let Some(t) = r.returned_at { (self.local(t)) } }
                                }
                            }
                        }
                    }
                    table class="totals" {
                        tr { th {} th { (w.dispatched) } th { (w.returned) } th { (w.net) } }
                        tr { th { (w.sacks) } td { (b.parent_count + b.returned_count) } td { (b.returned_count) } td { (b.parent_count) } }
                        tr { th { (w.packets) } td { (b.child_count + b.returned_child_count) } td { (b.returned_child_count) } td { (b.child_count) } }
                        tr {
                            th { (w.actual_kg) }
                            td { (kg(b.actual_weight_kg + b.returned_actual_weight_kg)) }
                            td { (kg(b.returned_actual_weight_kg)) }
                            td { (kg(b.actual_weight_kg)) }
                        }
                    }
                }
            }
            section class="signatures" {
                @for who in [w.dispatcher, w.driver_sign, w.receiver] {
                    div class="sign" {
                        div class="who" { (who) }
                        div class="line" { (w.signature) }
                        div class="line" { (w.name_date) }
                    }
                }
            }
            p class="printed" { (w.printed) " " (self.local(self.now)) }
        }
    }

    fn a6(&self, w: &Words) -> Markup {
        let b = self.bill;
        html! {
            div class="org-name" { (self.org.name) }
            div class="bill-id" { (b.bill_id) }
            (self.qr())
            table class="facts" {
                tr { th { (w.destination) } td { (b.destination) } }
                tr { th { (w.vehicle) } td class="vehicle" { (b.vehicle_number) } }
                tr { th { (w.sacks) } td { (b.parent_count) "/" (b.capacity) " · " (w.packets) " " (b.child_count) } }
                @if !b.seal_number.is_empty() { tr { th { (w.seal) } td class="seal" { (b.seal_number) } } }
                tr {
                    th { (w.dispatched_at) }
                    td { @match self.dispatched() { Some(t) => (self.local(t)), None => (w.not_dispatched) } }
                }
            }
        }
    }
}

fn kg(v: f64) -> String {
    format!("{v:.1}")
}

fn signed(v: f64) -> String {
    // -0.0 prints as 0.0.
    let v = if v.abs() < 0.05 { 0.0 } else { v };
    format!("{v:+.1}")
}

/// The page's stylesheet. Its only variable parts are this module's own words (no quote or
/// backslash in any of them: a unit test checks).
fn css(format: Format, w: &Words) -> String {
    let common = "*{box-sizing:border-box}\
        body{margin:0;font:10pt \"Noto Sans\",\"Noto Sans Devanagari\",system-ui,sans-serif;color:#000}\
        table{border-collapse:collapse;width:100%}\
        th,td{border:1px solid #000;padding:2px 5px;text-align:left;vertical-align:top}\
        .n{text-align:right}\
        .org-name{font-weight:700;font-size:12pt}\
        .qr{margin:0;text-align:center}.qr svg{display:block;width:100%;height:auto}\
        .qr figcaption{font-size:8pt}";
    match format {
        Format::A4 => format!(
            "@page{{size:A4;margin:12mm 12mm 16mm;\
              @bottom-right{{content:\"{page}\" counter(page) \"{of}\" counter(pages);font-size:9pt}}}}\
             {common}\
             .head{{display:flex;justify-content:space-between;gap:8mm;margin-bottom:4mm}}\
             .head .qr{{width:38mm;flex:none}}\
             h1{{font-size:16pt;margin:3mm 0 1mm}}.bill-id{{font-size:18pt;font-weight:700}}\
             .draft{{font-weight:700;border:2px solid #000;padding:1mm 2mm;display:inline-block;margin-top:2mm}}\
             .facts,.totals{{margin-bottom:4mm}}.facts th{{width:18%}}.facts td{{width:32%}}\
             .totals td{{font-size:12pt;font-weight:700}}\
             thead{{display:table-header-group}}tr{{break-inside:avoid}}\
             .lines th{{background:#eee}}.lines .repeat th{{background:#fff;border:0;padding:0 0 1mm}}\
             .total td{{font-weight:700}}\
             h2{{font-size:13pt;margin:5mm 0 2mm}}.returns{{break-inside:avoid-page}}.returns .totals{{margin-top:2mm}}\
             .signatures{{display:flex;gap:6mm;margin-top:8mm;break-inside:avoid}}\
             .sign{{flex:1;border:1px solid #000;padding:2mm;min-height:34mm}}\
             .sign .who{{font-weight:700}}.sign .line{{border-top:1px solid #000;margin-top:10mm;font-size:8pt}}\
             .printed{{font-size:8pt;margin-top:4mm}}",
            page = w.page,
            of = w.of,
        ),
        Format::A6 => format!(
            "@page{{size:105mm 148mm;margin:5mm}}{common}\
             body{{font-size:11pt}}.org-name{{text-align:center}}\
             .bill-id{{font-size:20pt;font-weight:800;text-align:center;overflow-wrap:anywhere}}\
             .qr{{width:66mm;margin:1mm auto}}\
             .facts{{width:99%}}.facts th{{width:32%}}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill(id: &str) -> pb::Bill {
        pb::Bill {
            bill_id: id.into(),
            status: pb::BillStatus::Processing as i32,
            capacity: 2,
            parent_count: 1,
            destination: "<script>alert(1)</script> & Co".into(),
            vehicle_number: "RJ14 \"GA\" 1234".into(),
            ..Default::default()
        }
    }

    #[test]
    fn values_are_escaped() {
        let org = Organisation {
            name: "A & B <Ltd>".into(),
            ..Default::default()
        };
        let b = bill("B<1>");
        let parents = vec![pb::BillParent {
            qr: "SB<X>".into(),
            area: "lucknow".into(),
            ..Default::default()
        }];
        for format in [Format::A4, Format::A6] {
            let page = Document {
                org: &org,
                bill: &b,
                parents: &parents,
                returns: &[],
                lang: Lang::En,
                now: Utc::now(),
            }
            .render(format);
            assert!(!page.contains("<script>"), "{page}");
            assert!(!page.contains("B<1>") && !page.contains("<Ltd>"), "{page}");
            assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co"));
            assert!(page.contains("<svg"));
        }
    }

    #[test]
    fn words_fit_in_a_css_string() {
        for w in Lang::ALL.map(Words::of) {
            for s in [w.page, w.of] {
                assert!(!s.contains(['"', '\\', '<']), "{s}");
            }
        }
    }

    #[test]
    fn depot_is_the_area_of_most_parents() {
        let mut org = Organisation::default();
        org.depots.insert("nagpur".into(), "Nagpur C&F".into());
        let b = bill("B1");
        let p = |a: &str| pb::BillParent {
            area: a.into(),
            ..Default::default()
        };
        let parents = vec![p("lucknow"), p("nagpur"), p("nagpur")];
        let d = Document {
            org: &org,
            bill: &b,
            parents: &parents,
            returns: &[],
            lang: Lang::Hi,
            now: Utc::now(),
        };
        assert_eq!(d.depot().as_deref(), Some("Nagpur C&F"));
        let d = Document {
            parents: &parents[..1],
            ..d
        };
        assert_eq!(d.depot().as_deref(), Some("lucknow"));
    }
}
