//! Scans per hour, and a user's activity.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::PgPool;
use tracetrack_common::AppResult;
use uuid::Uuid;

/// Scans in one local hour.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HourScans {
    pub hour_local: NaiveDateTime,
    pub scans: i64,
}

/// Scans on one local day.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DayScans {
    pub day: NaiveDate,
    pub scans: i64,
}

/// A user's figures (`stats.user_activity`); the default for a user never seen.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct ActivityRow {
    pub username: String,
    pub total_scans: i64,
    pub last_scan_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Scans per local hour (in `tz`) of the last `days` days including today, of one area or all.
pub async fn scans_per_hour(
    pool: &PgPool,
    tz: &str,
    days: i32,
    area: Option<String>,
) -> AppResult<Vec<HourScans>> {
    Ok(sqlx::query_as(
        r#"SELECT hour_local, sum(scans)::bigint AS scans FROM stats.scans_by_hour
           WHERE hour_local >= date_trunc('day', now() AT TIME ZONE $1) - make_interval(days => $2 - 1)
             AND ($3::text IS NULL OR area = $3)
           GROUP BY hour_local ORDER BY hour_local"#,
    )
    .bind(tz)
    .bind(days)
    .bind(area)
    .fetch_all(pool)
    .await?)
}

pub async fn user_activity(pool: &PgPool, user: Uuid) -> AppResult<Option<ActivityRow>> {
    Ok(sqlx::query_as(
        "SELECT username, total_scans, last_scan_at, last_login_at FROM stats.user_activity WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

/// A user's scans on each of the last 14 local days (in `tz`), zeros included, oldest first.
pub async fn user_scans_daily(pool: &PgPool, user: Uuid, tz: &str) -> AppResult<Vec<DayScans>> {
    Ok(sqlx::query_as(
        r#"SELECT d::date AS day, coalesce(u.scans, 0)::bigint AS scans
           FROM generate_series((now() AT TIME ZONE $2)::date - 13, (now() AT TIME ZONE $2)::date, interval '1 day') d
           LEFT JOIN stats.user_scans_daily u ON u.user_id = $1 AND u.day = d::date ORDER BY 1"#,
    )
    .bind(user)
    .bind(tz)
    .fetch_all(pool)
    .await?)
}
