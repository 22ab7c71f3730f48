//! Upkeep of stats' tables: the audit trail's monthly partitions, retention of the short-lived
//! figures, the parked events' count, and emptying the read models for a rebuild.

use sqlx::{PgConnection, PgPool};

/// Whether the partition `stats.<name>` exists.
pub async fn partition_exists(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('stats.' || $1)::text")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(exists.is_some())
}

/// Creates `stats.<name>`, the audit trail's partition of `[start, end)` (dates as SQL literals).
pub async fn create_audit_partition(
    pool: &PgPool,
    name: &str,
    start: &str,
    end: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS stats.{name} PARTITION OF stats.audit_events FOR VALUES FROM ('{start}') TO ('{end}')"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(&*sql))
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops what is past keeping: per-minute scans after two days, per-hour after sixteen, the
/// consumer's applied event ids after three. Each failure is logged; the others still run.
pub async fn retention(pool: &PgPool) {
    for sql in [
        "DELETE FROM stats.scans_by_minute WHERE minute < now() - interval '2 days'",
        "DELETE FROM stats.scans_by_hour WHERE hour_local < (now() - interval '16 days')::timestamp",
        "DELETE FROM stats.applied_events WHERE applied_at < now() - interval '3 days'",
    ] {
        if let Err(e) = sqlx::query(sql).execute(pool).await {
            tracing::warn!(error = %e, "stats retention failed");
        }
    }
}

/// Events the consumer parked (poison, or failing past its retries).
pub async fn parked_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM stats.parked_events")
        .fetch_one(pool)
        .await
}

/// Empties every read model (not the audit trail), for a rebuild in the same transaction.
pub async fn truncate_read_models(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "TRUNCATE stats.area_figures, stats.scans_by_minute, stats.scans_by_hour, stats.bills, \
         stats.bill_status_counts, stats.user_activity, stats.user_scans_daily",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every stored event's envelope, in (time, id) order.
pub async fn stored_envelopes(conn: &mut PgConnection) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT envelope FROM stats.audit_events ORDER BY occurred_at, event_id")
        .fetch_all(conn)
        .await
}
