//! The reports' figures: bills from billing, scans from the event store.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use tracetrack_common::{client, time, AppError, AppResult};
use tracetrack_proto::billing::v1 as bpb;
use tracetrack_proto::stats::v1 as pb;

use crate::state::Stats;
use crate::store;

/// The longest bill summary, in days.
pub const MAX_SUMMARY_DAYS: i64 = 366;

fn biller(b: &bpb::Bill) -> String {
    if b.created_by_username.is_empty() {
        b.created_by.clone()
    } else {
        b.created_by_username.clone()
    }
}

/// Every bill created in [from, to), from billing's ListBills (figures from bag-registry),
/// oldest first.
pub async fn bills_created(
    stats: &Stats,
    token: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<bpb::Bill>> {
    let billing = &stats.0.reports.billing;
    let mut bills = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = bpb::ListBillsRequest {
            created_from: Some(time::ts(from)),
            created_to: Some(time::ts(to)),
            page_size: 200,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client::retry_transport(|| {
            let (mut billing, req) = (billing.clone(), req.clone());
            async move { billing.list_bills(client::request(req, token, None)).await }
        })
        .await
        .map_err(|s| AppError::from_upstream(&s, "billing"))?
        .into_inner();
        bills.extend(page.bills);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    bills.reverse();
    Ok(bills)
}

/// The bill summary of the business days [from_day, to_day].
pub async fn summary(
    stats: &Stats,
    token: Option<&str>,
    from_day: NaiveDate,
    to_day: NaiveDate,
) -> AppResult<pb::GetBillSummaryResponse> {
    if to_day < from_day {
        return Err(AppError::invalid("to_day is before from_day"));
    }
    if (to_day - from_day).num_days() >= MAX_SUMMARY_DAYS {
        return Err(AppError::invalid(format!(
            "a bill summary covers at most {MAX_SUMMARY_DAYS} days"
        )));
    }
    let tz = stats.time_zone();
    let from = store::local_instant(stats.pool(), from_day, "00:00", tz).await?;
    let to = store::local_instant(
        stats.pool(),
        to_day.succ_opt().unwrap_or(to_day),
        "00:00",
        tz,
    )
    .await?;
    let bills = bills_created(stats, token, from, to).await?;
    let mut per: BTreeMap<String, pb::BillerFigures> = BTreeMap::new();
    let mut totals = pb::BillerFigures {
        biller: String::new(),
        ..Default::default()
    };
    for b in &bills {
        let name = biller(b);
        let row = per
            .entry(name.clone())
            .or_insert_with(|| pb::BillerFigures {
                biller: name,
                ..Default::default()
            });
        for f in [&mut *row, &mut totals] {
            f.bills_created += 1;
            if b.status == bpb::BillStatus::Completed as i32 {
                f.bills_completed += 1;
            }
            f.parents += i64::from(b.parent_count);
            f.capacity += i64::from(b.capacity);
            f.children += b.child_count;
            f.actual_weight_kg += b.actual_weight_kg;
            f.expected_weight_kg += b.expected_weight_kg;
        }
    }
    let mut billers: Vec<_> = per.into_values().collect();
    for f in billers.iter_mut().chain(std::iter::once(&mut totals)) {
        f.completion_percent = percent(f.bills_completed, f.bills_created);
    }
    billers.sort_by(|a, b| {
        b.bills_created
            .cmp(&a.bills_created)
            .then(a.biller.cmp(&b.biller))
    });
    Ok(pb::GetBillSummaryResponse {
        from_day: from_day.to_string(),
        to_day: to_day.to_string(),
        time_zone: tz.to_owned(),
        billers,
        totals: Some(totals),
        document: None,
    })
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

/// Day `day`'s window: [cut-off of the day before, cut-off of `day`).
pub async fn window(stats: &Stats, day: NaiveDate) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let at = &stats.0.reports.settings.send_at;
    let tz = stats.time_zone();
    let before = day.pred_opt().unwrap_or(day);
    Ok((
        store::local_instant(stats.pool(), before, at, tz).await?,
        store::local_instant(stats.pool(), day, at, tz).await?,
    ))
}

/// The end-of-day report of `day` (figures only; no HTML, no delivery record).
pub async fn daily(
    stats: &Stats,
    token: Option<&str>,
    day: NaiveDate,
) -> AppResult<pb::DailyReport> {
    let (from, to) = window(stats, day).await?;
    let created = bills_created(stats, token, from, to).await?;
    let billing = &stats.0.reports.billing;
    let mut bills = Vec::with_capacity(created.len());
    for b in created {
        // Each parent's child count: one GetBill per bill (a day's bills, once a day).
        let req = bpb::GetBillRequest {
            bill_id: b.bill_id.clone(),
        };
        let parents = match client::retry_transport(|| {
            let (mut billing, req) = (billing.clone(), req.clone());
            async move { billing.get_bill(client::request(req, token, None)).await }
        })
        .await
        {
            Ok(r) => r.into_inner().parents,
            // Deleted since it was listed: it stays in the report with no parents.
            Err(s)
                if AppError::from_status(&s).code == tracetrack_domain::ErrorCode::BillNotFound =>
            {
                Vec::new()
            }
            Err(s) => return Err(AppError::from_upstream(&s, "billing")),
        };
        bills.push(pb::ReportBill {
            biller: biller(&b),
            status: bpb::BillStatus::name_of(b.status).to_owned(),
            bill_id: b.bill_id,
            destination: b.destination,
            vehicle_number: b.vehicle_number,
            parent_count: b.parent_count,
            capacity: b.capacity,
            child_count: b.child_count,
            actual_weight_kg: b.actual_weight_kg,
            expected_weight_kg: b.expected_weight_kg,
            created_at: b.created_at,
            parents: parents
                .into_iter()
                .map(|p| pb::ReportParent {
                    qr: p.qr,
                    child_count: p.child_count,
                })
                .collect(),
        });
    }
    bills.sort_by(|a, b| a.biller.cmp(&b.biller).then(a.bill_id.cmp(&b.bill_id)));
    let (by_area, by_user) = store::scans_in(stats.pool(), from, to).await?;
    let returns = returns_in(stats, token, from, to).await?;
    let nc = |v: Vec<(String, i64)>| {
        v.into_iter()
            .map(|(name, count)| pb::NameCount { name, count })
            .collect::<Vec<_>>()
    };
    let scans_by_area = nc(by_area);
    let totals = pb::ReportTotals {
        bills: bills.len() as i64,
        parents: bills.iter().map(|b| i64::from(b.parent_count)).sum(),
        children: bills.iter().map(|b| b.child_count).sum(),
        actual_weight_kg: bills.iter().map(|b| b.actual_weight_kg).sum(),
        expected_weight_kg: bills.iter().map(|b| b.expected_weight_kg).sum(),
        scans: scans_by_area.iter().map(|a| a.count).sum(),
        returns: returns.len() as i64,
    };
    Ok(pb::DailyReport {
        day: day.to_string(),
        time_zone: stats.time_zone().to_owned(),
        window_from: Some(time::ts(from)),
        window_to: Some(time::ts(to)),
        has_activity: totals.bills > 0 || totals.scans > 0 || totals.returns > 0,
        bills,
        scans_by_area,
        scans_by_dispatcher: nc(by_user),
        returns,
        totals: Some(totals),
        ..Default::default()
    })
}

/// The parents returned on return tickets in [from, to), from billing (read, not copied): the
/// tickets that can hold such a return (created before `to`, not closed before `from`, not empty),
/// then each one's returns. ListReturnTickets filters by creation time only, so every ticket
/// opened before `to` is listed (a page of 200 per call).
async fn returns_in(
    stats: &Stats,
    token: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<pb::ReportReturn>> {
    let billing = &stats.0.reports.billing;
    let at =
        |t: &Option<prost_types::Timestamp>| t.as_ref().and_then(|t| time::from_ts(t, "").ok());
    let mut candidates = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = bpb::ListReturnTicketsRequest {
            status: String::new(),
            page_size: 200,
            page_token: page_token.clone(),
            // A ticket opened at or after `to` holds no return before it.
            created_to: Some(time::ts(to)),
            ..Default::default()
        };
        let page = client::retry_transport(|| {
            let (mut billing, req) = (billing.clone(), req.clone());
            async move {
                billing
                    .list_return_tickets(client::request(req, token, None))
                    .await
            }
        })
        .await
        .map_err(|s| AppError::from_upstream(&s, "billing"))?
        .into_inner();
        for t in page.tickets {
            let created = at(&t.created_at);
            let closed = at(&t.closed_at);
            if t.return_count > 0
                && created.is_none_or(|c| c < to)
                && closed.is_none_or(|c| c >= from)
            {
                candidates.push(t.ticket_id);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut out = Vec::new();
    for ticket_id in candidates {
        let req = bpb::GetReturnTicketRequest { ticket_id };
        let t = client::retry_transport(|| {
            let (mut billing, req) = (billing.clone(), req.clone());
            async move {
                billing
                    .get_return_ticket(client::request(req, token, None))
                    .await
            }
        })
        .await
        .map_err(|s| AppError::from_upstream(&s, "billing"))?
        .into_inner();
        for r in t.returns {
            let when = at(&r.returned_at);
            if r.state == "returned" && when.is_some_and(|w| w >= from && w < to) {
                out.push(pb::ReportReturn {
                    ticket_id: r.ticket_id,
                    bill_id: r.bill_id,
                    parent_qr: r.parent_qr,
                    child_count: r.child_count,
                    weight_kg: r.actual_weight_kg,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.ticket_id, &a.parent_qr).cmp(&(&b.ticket_id, &b.parent_qr)));
    Ok(out)
}
