//! The dashboard: the read models' figures per area and in total, and how fresh they are.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::PgPool;
use tracetrack_common::time::ts;
use tracetrack_common::AppResult;
use tracetrack_proto::stats::v1 as pb;

use crate::store::{self, Figures};

/// The dashboard as the read models hold it now, of one area or (`None`) of all; `tz` is the
/// business time zone ("today").
pub async fn dashboard(pool: &PgPool, tz: &str, area: Option<&str>) -> AppResult<pb::Dashboard> {
    let mut d = assemble(store::figures(pool, tz, area).await?);
    d.returns_today = store::returns_today(pool, tz, area).await?;
    Ok(d)
}

/// The dashboard of the figures read: per area (an area with no bags but scans today shows
/// too) and their totals.
fn assemble(figures: Figures) -> pb::Dashboard {
    let mut d = pb::Dashboard::default();
    let mut areas: BTreeMap<String, pb::AreaFigures> = BTreeMap::new();
    for f in figures.areas {
        areas.insert(
            f.area.clone(),
            pb::AreaFigures {
                area: f.area,
                parents: f.parents,
                children: f.children,
                unlinked_children: f.unlinked,
                ..Default::default()
            },
        );
    }
    for s in figures.last_hour {
        area(&mut areas, s.area).scans_last_hour = s.scans;
    }
    for s in figures.today {
        area(&mut areas, s.area).scans_today = s.scans;
    }
    for f in areas.values() {
        d.parents += f.parents;
        d.children += f.children;
        d.unlinked_children += f.unlinked_children;
        d.scans_today += f.scans_today;
        d.scans_last_hour += f.scans_last_hour;
    }
    d.areas = areas
        .into_values()
        .filter(|a| !a.area.is_empty() || a.scans_today > 0)
        .collect();
    d.bills_by_status = figures
        .bills
        .into_iter()
        .map(|b| (b.status, b.bills))
        .collect();
    d.as_of = Some(ts(Utc::now()));
    d.freshness_seconds = match (
        figures.consumer.last_event_at,
        figures.consumer.last_applied_at,
    ) {
        (Some(e), Some(a)) => (a - e).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    d
}

/// An area's figures, new (all zero) if the area has none yet.
fn area(areas: &mut BTreeMap<String, pb::AreaFigures>, a: String) -> &mut pb::AreaFigures {
    areas.entry(a.clone()).or_insert_with(|| pb::AreaFigures {
        area: a,
        ..Default::default()
    })
}

/// The same figures, whenever they were read.
pub fn same_figures(a: &pb::Dashboard, b: &pb::Dashboard) -> bool {
    let strip = |d: &pb::Dashboard| pb::Dashboard {
        as_of: None,
        freshness_seconds: 0.0,
        ..d.clone()
    };
    strip(a) == strip(b)
}
