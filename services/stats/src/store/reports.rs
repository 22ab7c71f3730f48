//! The reports' own SQL: business-day windows (time-zone arithmetic in Postgres), the scans of a
//! window from the event store, and the end-of-day report's delivery rows
//! (`stats.daily_reports`: claim, lease, result).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tracetrack_common::AppResult;

/// The instant local `day` at local `time` ("HH:MM[:SS]") in `tz`.
pub async fn local_instant(
    pool: &PgPool,
    day: NaiveDate,
    time: &str,
    tz: &str,
) -> AppResult<DateTime<Utc>> {
    Ok(
        sqlx::query_scalar("SELECT ($1::date + $2::time) AT TIME ZONE $3")
            .bind(day)
            .bind(time)
            .bind(tz)
            .fetch_one(pool)
            .await?,
    )
}

/// The last business day whose cut-off (`time` in `tz`) is at or before `now`.
pub async fn due_day(
    pool: &PgPool,
    now: DateTime<Utc>,
    time: &str,
    tz: &str,
) -> AppResult<NaiveDate> {
    Ok(
        sqlx::query_scalar("SELECT ((($1::timestamptz AT TIME ZONE $3) - $2::time)::date)")
            .bind(now)
            .bind(time)
            .bind(tz)
            .fetch_one(pool)
            .await?,
    )
}

/// Successful child scans in [from, to) from the event store, per area and per dispatcher
/// (username), most first.
pub async fn scans_in(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    let by_area = scans_by(pool, "coalesce(payload->>'area', '')", from, to).await?;
    let username = "coalesce(nullif(payload->>'username', ''), actor_username)";
    let by_user = scans_by(pool, username, from, to).await?;
    Ok((by_area, by_user))
}

/// Successful child scans in [from, to) per `name` (an expression over the event), most first.
async fn scans_by(
    pool: &PgPool,
    name: &'static str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<(String, i64)>> {
    let sql = format!(
        r#"SELECT {name} AS name, count(*) AS n FROM stats.audit_events
           WHERE event_type = 'scan.recorded' AND occurred_at >= $1 AND occurred_at < $2
             AND payload->>'kind' = 'child' AND payload->>'outcome' = 'ok'
           GROUP BY 1 ORDER BY 2 DESC, 1"#
    );
    let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from).bind(to);
    Ok(q.fetch_all(pool).await?)
}

/// One day's delivery record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DailyReportRow {
    pub day: NaiveDate,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub status: String,
    pub message_id: String,
    pub attempts: i32,
    pub last_error: String,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The day's row, made by the first replica to get here (the others' inserts do nothing).
pub async fn claim_day(
    pool: &PgPool,
    day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    message_id: &str,
) -> AppResult<()> {
    sqlx::query(
        r#"INSERT INTO stats.daily_reports (day, window_from, window_to, message_id)
           VALUES ($1, $2, $3, $4) ON CONFLICT (day) DO NOTHING"#,
    )
    .bind(day)
    .bind(from)
    .bind(to)
    .bind(message_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes the lease on a day that still needs sending and whose retry time has come: at most one
/// replica gets the row back until the lease runs out or the result is recorded.
pub async fn lease_day(
    pool: &PgPool,
    day: NaiveDate,
    holder: &str,
    lease_ms: i64,
) -> AppResult<Option<DailyReportRow>> {
    Ok(sqlx::query_as(
        r#"UPDATE stats.daily_reports
           SET leased_by = $2, lease_until = now() + make_interval(secs => $3::double precision / 1000),
               attempts = attempts + 1, updated_at = now()
           WHERE day = $1 AND status IN ('pending', 'failed') AND next_attempt_at <= now()
             AND (lease_until IS NULL OR lease_until < now())
           RETURNING day, window_from, window_to, status, message_id, attempts, last_error, sent_at"#,
    )
    .bind(day)
    .bind(holder)
    .bind(lease_ms)
    .fetch_optional(pool)
    .await?)
}

/// Records the outcome of the holder's attempt: `sent` or `skipped` (final), or `failed` with the
/// time of the next attempt. Only while the holder still holds the lease.
pub async fn record_result(
    pool: &PgPool,
    day: NaiveDate,
    holder: &str,
    status: &str,
    recipients: &str,
    error: &str,
    retry_in_ms: i64,
) -> AppResult<bool> {
    let done = sqlx::query(
        r#"UPDATE stats.daily_reports
           SET status = $3, recipients = $4, last_error = $5, leased_by = NULL, lease_until = NULL,
               sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END,
               next_attempt_at = now() + make_interval(secs => $6::double precision / 1000),
               updated_at = now()
           WHERE day = $1 AND leased_by = $2"#,
    )
    .bind(day)
    .bind(holder)
    .bind(status)
    .bind(recipients)
    .bind(error)
    .bind(retry_in_ms)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

pub async fn daily_report(pool: &PgPool, day: NaiveDate) -> AppResult<Option<DailyReportRow>> {
    Ok(sqlx::query_as(
        r#"SELECT day, window_from, window_to, status, message_id, attempts, last_error, sent_at
           FROM stats.daily_reports WHERE day = $1"#,
    )
    .bind(day)
    .fetch_optional(pool)
    .await?)
}
