//! The monthly partitions of `scan.scan_events`: which should exist, and creating the missing.

use chrono::{DateTime, Datelike, Utc};
use sqlx::PgPool;

/// (year, month) `offset` months away from (year, month).
fn add_months(year: i32, month: u32, offset: i32) -> (i32, u32) {
    let index = year * 12 + month as i32 - 1 + offset;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

/// A monthly partition: its name and its UTC bounds as SQL literals.
fn partition(year: i32, month: u32) -> (String, String, String) {
    let (ny, nm) = add_months(year, month, 1);
    (
        format!("scan_events_{year:04}_{month:02}"),
        format!("{year:04}-{month:02}-01 00:00:00+00"),
        format!("{ny:04}-{nm:02}-01 00:00:00+00"),
    )
}

/// The partitions that should exist at `now`: the previous, current and next two months.
pub fn wanted_partitions(now: DateTime<Utc>) -> Vec<(String, String, String)> {
    (-1..=2)
        .map(|offset| {
            let (y, m) = add_months(now.year(), now.month(), offset);
            partition(y, m)
        })
        .collect()
}

/// Creates the monthly partitions that are missing (see [`wanted_partitions`]); returns how many
/// were created. Replicas serialise on an advisory lock. Creating a partition locks the parent
/// table briefly, so it waits at most a second for that lock and leaves the partition for the
/// next run rather than stall scans behind a long reader. A month whose rows already went to the
/// DEFAULT partition cannot get its own partition: that is logged and those rows stay (and are
/// read) where they are. Errors reading the catalogue (database down) are returned.
pub async fn ensure_partitions(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut created = 0;
    for (name, from, to) in wanted_partitions(now) {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("scan.{name}"))
            .fetch_one(pool)
            .await?;
        if exists {
            continue;
        }
        let result = create_partition(pool, &name, &from, &to).await;
        match result {
            Ok(()) => {
                created += 1;
                tracing::info!(partition = %name, "created scan log partition");
            }
            Err(e) => {
                tracing::warn!(partition = %name, error = %e, "could not create scan log partition")
            }
        }
    }
    Ok(created)
}

async fn create_partition(pool: &PgPool, name: &str, from: &str, to: &str) -> anyhow::Result<()> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS scan.{name} PARTITION OF scan.scan_events \
         FOR VALUES FROM ('{from}') TO ('{to}')"
    );
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracetrack.scan.partitions'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(&*ddl))
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn months_wrap_around_years() {
        assert_eq!(add_months(2025, 1, -1), (2024, 12));
        assert_eq!(add_months(2025, 12, 1), (2026, 1));
        assert_eq!(add_months(2025, 11, 2), (2026, 1));
        assert_eq!(add_months(2025, 6, 0), (2025, 6));
    }

    #[test]
    fn wanted_partitions_span_previous_to_next_two() {
        let now = Utc.with_ymd_and_hms(2025, 12, 15, 3, 0, 0).single();
        let Some(now) = now else {
            panic!("bad test date")
        };
        let names: Vec<String> = wanted_partitions(now).into_iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            [
                "scan_events_2025_11",
                "scan_events_2025_12",
                "scan_events_2026_01",
                "scan_events_2026_02"
            ]
        );
        let (_, from, to) = partition(2025, 12);
        assert_eq!(from, "2025-12-01 00:00:00+00");
        assert_eq!(to, "2026-01-01 00:00:00+00");
    }
}
