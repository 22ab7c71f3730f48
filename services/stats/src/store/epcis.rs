//! The EPCIS export's source events.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tracetrack_common::AppResult;
use uuid::Uuid;

use crate::epcis::{Source, SOURCE_TYPES};

/// Up to `limit` source events of the window `from..to` after `after` (keyset), in (time, id) order, each
/// with the offset of the business time zone `tz` at its time.
pub async fn epcis_sources(
    conn: &mut PgConnection,
    tz: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: (DateTime<Utc>, Uuid),
    limit: i64,
) -> AppResult<Vec<Source>> {
    let types: Vec<String> = SOURCE_TYPES.iter().map(|t| (*t).to_owned()).collect();
    Ok(sqlx::query_as(
        r#"SELECT a.occurred_at, a.event_id, a.event_type, a.payload,
                  EXTRACT(EPOCH FROM (a.occurred_at AT TIME ZONE $1) - (a.occurred_at AT TIME ZONE 'UTC'))::int AS offset_secs
           FROM stats.audit_events a
           WHERE a.occurred_at >= $2 AND a.occurred_at < $3 AND (a.occurred_at, a.event_id) > ($4, $5)
             AND a.event_type = ANY($6)
           ORDER BY a.occurred_at, a.event_id LIMIT $7"#,
    )
    .bind(tz)
    .bind(from)
    .bind(to)
    .bind(after.0)
    .bind(after.1)
    .bind(&types)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
