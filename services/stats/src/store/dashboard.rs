//! The figures behind the dashboard.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tracetrack_common::AppResult;

/// An area's bag figures (`stats.area_figures`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AreaFiguresRow {
    pub area: String,
    pub parents: i64,
    pub children: i64,
    pub unlinked: i64,
}

/// Scans in an area over some window.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AreaScans {
    pub area: String,
    pub scans: i64,
}

/// Bills in a status.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BillCount {
    pub status: String,
    pub bills: i64,
}

/// When the newest event applied happened, and when it was applied.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConsumerState {
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_applied_at: Option<DateTime<Utc>>,
}

/// Everything the dashboard shows, as the read models hold it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub areas: Vec<AreaFiguresRow>,
    pub last_hour: Vec<AreaScans>,
    /// Since the start of the day in the business time zone.
    pub today: Vec<AreaScans>,
    pub bills: Vec<BillCount>,
    pub consumer: ConsumerState,
}

/// The dashboard's figures, of one area or (`None`) of all; `tz` is the business time zone.
pub async fn figures(pool: &PgPool, tz: &str, area: Option<&str>) -> AppResult<Figures> {
    let areas = sqlx::query_as(
        "SELECT area, parents, children, unlinked FROM stats.area_figures WHERE $1::text IS NULL OR area = $1 ORDER BY area",
    )
    .bind(area)
    .fetch_all(pool)
    .await?;
    let last_hour = sqlx::query_as(
        r#"SELECT area, sum(scans)::bigint AS scans FROM stats.scans_by_minute
           WHERE minute > now() - interval '1 hour' AND ($1::text IS NULL OR area = $1) GROUP BY area"#,
    )
    .bind(area)
    .fetch_all(pool)
    .await?;
    let today = sqlx::query_as(
        r#"SELECT area, sum(scans)::bigint AS scans FROM stats.scans_by_hour
           WHERE hour_local >= date_trunc('day', now() AT TIME ZONE $2) AND ($1::text IS NULL OR area = $1) GROUP BY area"#,
    )
    .bind(area)
    .bind(tz)
    .fetch_all(pool)
    .await?;
    let bills =
        sqlx::query_as("SELECT status, bills FROM stats.bill_status_counts WHERE bills <> 0")
            .fetch_all(pool)
            .await?;
    let consumer =
        sqlx::query_as("SELECT last_event_at, last_applied_at FROM stats.consumer_state")
            .fetch_one(pool)
            .await?;
    Ok(Figures {
        areas,
        last_hour,
        today,
        bills,
        consumer,
    })
}

/// Parents returned since midnight in `tz` (of one area: returned to it), counted from the audit
/// trail's `billing.parent_returned` events.
pub async fn returns_today(pool: &PgPool, tz: &str, area: Option<&str>) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM stats.audit_events \
          WHERE event_type = 'billing.parent_returned' \
            AND occurred_at >= (date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1) \
            AND ($2::text IS NULL OR payload->>'area' = $2)",
    )
    .bind(tz)
    .bind(area)
    .fetch_one(pool)
    .await?)
}
