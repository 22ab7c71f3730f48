//! The audit trail (`stats.audit_events`, also the event store) and bag histories.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tracetrack_common::AppResult;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub occurred_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: String,
    pub source: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_username: String,
    pub actor_service: String,
    pub ip: String,
    pub payload: serde_json::Value,
}

const AUDIT_COLUMNS: &str =
    "a.occurred_at, a.event_id, a.event_type, a.source, a.aggregate_type, a.aggregate_id, \
    a.actor_user_id, a.actor_username, a.actor_service, a.ip, a.payload";

/// What ListAuditEvents asks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    /// This event type exactly.
    pub event_type: Option<String>,
    /// Event types matching this LIKE pattern.
    pub event_type_like: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Keyset: strictly older than this (occurred_at, event_id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Newest first, by (occurred_at DESC, event_id DESC). The statement holds only the filters
/// given.
pub async fn list_audit(pool: &PgPool, f: &AuditFilter) -> AppResult<Vec<AuditRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {AUDIT_COLUMNS} FROM stats.audit_events a WHERE true"
    ));
    if let Some(user_id) = f.user_id {
        q.push(" AND a.actor_user_id = ").push_bind(user_id);
    }
    if let Some(t) = &f.event_type {
        q.push(" AND a.event_type = ").push_bind(t.clone());
    }
    if let Some(p) = &f.event_type_like {
        q.push(" AND a.event_type LIKE ").push_bind(p.clone());
    }
    if let Some(from) = f.from {
        q.push(" AND a.occurred_at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND a.occurred_at < ").push_bind(to);
    }
    if let Some((at, id)) = f.after {
        q.push(" AND (a.occurred_at, a.event_id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY a.occurred_at DESC, a.event_id DESC LIMIT ")
        .push_bind(f.limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// The events about a bag, oldest first (at most 1,000): the audit rows whose `stats.audit_bags`
/// (migration 0003, GIN-indexed) names the QR.
pub async fn bag_history(pool: &PgPool, qr: &str) -> AppResult<Vec<AuditRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT {AUDIT_COLUMNS} FROM stats.audit_events a
           WHERE stats.audit_bags(a.event_type, a.payload) @> ARRAY[$1::text]
           ORDER BY a.occurred_at, a.event_id LIMIT 1000"#
    )))
    .bind(qr)
    .fetch_all(pool)
    .await?)
}
