//! The consumer's writes to the read models and the audit trail, each a set-based statement
//! over arrays (sums are grouped per key first: an upsert may touch a row once). Errors are
//! sqlx's own, for the consumer to classify.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// `(array_agg(x ORDER BY t DESC))[1]`: the newest of a group's values.
const NEWEST_NAME: &str = "(array_agg(n ORDER BY t DESC))[1]";

type Written = Result<(), sqlx::Error>;

/// Adds (area, parents, children, unlinked) deltas to the areas' figures.
pub async fn add_area_figures(
    conn: &mut PgConnection,
    deltas: &[(String, i64, i64, i64)],
) -> Written {
    let (a, p, c, u): (Vec<&str>, Vec<i64>, Vec<i64>, Vec<i64>) = deltas.iter().fold(
        Default::default(),
        |(mut a, mut p, mut c, mut u), (area, dp, dc, du)| {
            a.push(area.as_str());
            p.push(*dp);
            c.push(*dc);
            u.push(*du);
            (a, p, c, u)
        },
    );
    sqlx::query(
        r#"INSERT INTO stats.area_figures AS f (area, parents, children, unlinked)
           SELECT a, sum(p), sum(c), sum(u) FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS x(a, p, c, u)
           GROUP BY a
           ON CONFLICT (area) DO UPDATE SET parents = f.parents + EXCLUDED.parents,
             children = f.children + EXCLUDED.children, unlinked = f.unlinked + EXCLUDED.unlinked"#,
    )
    .bind(a)
    .bind(p)
    .bind(c)
    .bind(u)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts (area, occurred_at) scans per minute and per local hour (in `tz`).
pub async fn add_scans(
    conn: &mut PgConnection,
    scans: &[(String, DateTime<Utc>)],
    tz: &str,
) -> Written {
    let areas: Vec<&str> = scans.iter().map(|s| s.0.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = scans.iter().map(|s| s.1).collect();
    sqlx::query(
        r#"INSERT INTO stats.scans_by_minute AS s (area, minute, scans)
           SELECT a, date_trunc('minute', t), count(*) FROM unnest($1::text[], $2::timestamptz[]) AS x(a, t)
           GROUP BY 1, 2
           ON CONFLICT (minute, area) DO UPDATE SET scans = s.scans + EXCLUDED.scans"#,
    )
    .bind(&areas)
    .bind(&ats)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        r#"INSERT INTO stats.scans_by_hour AS s (area, hour_local, scans)
           SELECT a, date_trunc('hour', t AT TIME ZONE $3), count(*) FROM unnest($1::text[], $2::timestamptz[]) AS x(a, t)
           GROUP BY 1, 2
           ON CONFLICT (hour_local, area) DO UPDATE SET scans = s.scans + EXCLUDED.scans"#,
    )
    .bind(&areas)
    .bind(&ats)
    .bind(tz)
    .execute(conn)
    .await?;
    Ok(())
}

/// (user, username, occurred_at) rows as the three arrays of an `unnest`.
fn by_user(rows: &[(Uuid, String, DateTime<Utc>)]) -> (Vec<Uuid>, Vec<&str>, Vec<DateTime<Utc>>) {
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1.as_str()).collect(),
        rows.iter().map(|r| r.2).collect(),
    )
}

/// Counts (user, username, occurred_at) scans per user, in total and per local day (in `tz`).
pub async fn add_user_scans(
    conn: &mut PgConnection,
    scans: &[(Uuid, String, DateTime<Utc>)],
    tz: &str,
) -> Written {
    let (users, names, ats) = by_user(scans);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO stats.user_activity AS a (user_id, username, total_scans, last_scan_at)
           SELECT u, {NEWEST_NAME}, count(*), max(t) FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS x(u, n, t)
           GROUP BY u
           ON CONFLICT (user_id) DO UPDATE SET total_scans = a.total_scans + EXCLUDED.total_scans,
             username = EXCLUDED.username, last_scan_at = GREATEST(a.last_scan_at, EXCLUDED.last_scan_at)"#
    )))
    .bind(&users)
    .bind(&names)
    .bind(&ats)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        r#"INSERT INTO stats.user_scans_daily AS d (user_id, day, scans)
           SELECT u, (t AT TIME ZONE $3)::date, count(*) FROM unnest($1::uuid[], $2::timestamptz[]) AS x(u, t)
           GROUP BY 1, 2
           ON CONFLICT (user_id, day) DO UPDATE SET scans = d.scans + EXCLUDED.scans"#,
    )
    .bind(&users)
    .bind(&ats)
    .bind(tz)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes (user, username, occurred_at) logins.
pub async fn add_logins(
    conn: &mut PgConnection,
    logins: &[(Uuid, String, DateTime<Utc>)],
) -> Written {
    let (users, names, ats) = by_user(logins);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO stats.user_activity AS a (user_id, username, last_login_at)
           SELECT u, {NEWEST_NAME}, max(t) FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS x(u, n, t)
           GROUP BY u
           ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username,
             last_login_at = GREATEST(a.last_login_at, EXCLUDED.last_login_at)"#
    )))
    .bind(&users)
    .bind(&names)
    .bind(&ats)
    .execute(conn)
    .await?;
    Ok(())
}

/// A bill's status as counted (locked until the transaction ends), if it is counted.
pub async fn bill_status_for_update(
    conn: &mut PgConnection,
    bill_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM stats.bills WHERE bill_id = $1 FOR UPDATE")
        .bind(bill_id)
        .fetch_optional(conn)
        .await
}

/// One bill fewer in `status`.
pub async fn uncount_bill(conn: &mut PgConnection, status: &str) -> Written {
    sqlx::query("UPDATE stats.bill_status_counts SET bills = bills - 1 WHERE status = $1")
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

/// The bill is now in `status`, and counted there.
pub async fn count_bill(conn: &mut PgConnection, bill_id: &str, status: &str) -> Written {
    sqlx::query("INSERT INTO stats.bills (bill_id, status) VALUES ($1, $2) ON CONFLICT (bill_id) DO UPDATE SET status = $2")
        .bind(bill_id)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO stats.bill_status_counts AS c (status, bills) VALUES ($1, 1) ON CONFLICT (status) DO UPDATE SET bills = c.bills + 1",
    )
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

/// The bill is gone.
pub async fn forget_bill(conn: &mut PgConnection, bill_id: &str) -> Written {
    sqlx::query("DELETE FROM stats.bills WHERE bill_id = $1")
        .bind(bill_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One event for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent<'a> {
    pub occurred_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub source: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub actor_user_id: Option<Uuid>,
    pub actor_username: &'a str,
    pub actor_service: &'a str,
    pub ip: &'a str,
    /// JSON text.
    pub payload: String,
    /// The encoded envelope (what a rebuild replays).
    pub envelope: Vec<u8>,
}

/// Keeps `events` in the audit trail (each once); the ids it wrote (not those kept before).
pub async fn insert_audit<'a>(
    conn: &mut PgConnection,
    events: &[NewAuditEvent<'a>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&NewAuditEvent<'a>) -> &'a str| events.iter().map(f).collect::<Vec<_>>();
    sqlx::query_scalar(
        r#"INSERT INTO stats.audit_events (occurred_at, event_id, event_type, source, aggregate_type, aggregate_id,
                                           actor_user_id, actor_username, actor_service, ip, payload, envelope)
           SELECT t, i, k, s, at, ai, u, un, sv, ip, p::jsonb, e
           FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[])
                AS x(t, i, k, s, at, ai, u, un, sv, ip, p, e)
           ON CONFLICT DO NOTHING RETURNING event_id"#,
    )
    .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(col(|e| e.event_type))
    .bind(col(|e| e.source))
    .bind(col(|e| e.aggregate_type))
    .bind(col(|e| e.aggregate_id))
    .bind(events.iter().map(|e| e.actor_user_id).collect::<Vec<_>>())
    .bind(col(|e| e.actor_username))
    .bind(col(|e| e.actor_service))
    .bind(col(|e| e.ip))
    .bind(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.envelope.as_slice()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await
}

/// Removes one event from the audit trail (one that turned out poison: it is parked instead).
pub async fn delete_audit(
    conn: &mut PgConnection,
    occurred_at: DateTime<Utc>,
    event_id: Uuid,
) -> Written {
    sqlx::query("DELETE FROM stats.audit_events WHERE occurred_at = $1 AND event_id = $2")
        .bind(occurred_at)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The consumer has applied events up to `newest` (their time), just now.
pub async fn mark_applied(conn: &mut PgConnection, newest: DateTime<Utc>) -> Written {
    sqlx::query(
        "UPDATE stats.consumer_state SET last_event_at = GREATEST(last_event_at, $1), last_applied_at = clock_timestamp()",
    )
    .bind(newest)
    .execute(conn)
    .await?;
    Ok(())
}
