//! How each event changes the read models. Every event lands in the audit trail (the event store
//! the read models can be rebuilt from); known types also move the dashboard, activity and
//! bag-history figures.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use tokio::sync::watch;
use tracetrack_common::consumer::{ApplyError, Handler};
use tracetrack_proto::events::v1::EventEnvelope;
use uuid::Uuid;

pub struct StatsHandler {
    pub time_zone: String,
    /// Bumped after each applied batch; WatchDashboard streams wake on it.
    pub changed: watch::Sender<u64>,
}

fn poison(event: &EventEnvelope, what: &str) -> ApplyError {
    ApplyError::Poison(format!("{} {}: {what}", event.event_type, event.event_id))
}

fn str_field<'a>(event: &EventEnvelope, v: &'a Value, key: &str) -> Result<&'a str, ApplyError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| poison(event, &format!("missing {key}")))
}

fn occurred_at(event: &EventEnvelope) -> Result<DateTime<Utc>, ApplyError> {
    event
        .occurred_at
        .as_ref()
        .and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
        .ok_or_else(|| poison(event, "no occurred_at"))
}

async fn area_delta(
    conn: &mut PgConnection,
    area: &str,
    parents: i64,
    children: i64,
    unlinked: i64,
) -> Result<(), ApplyError> {
    if parents == 0 && children == 0 && unlinked == 0 {
        return Ok(());
    }
    sqlx::query(
        r#"INSERT INTO stats.area_figures AS f (area, parents, children, unlinked) VALUES ($1, $2, $3, $4)
           ON CONFLICT (area) DO UPDATE SET parents = f.parents + $2, children = f.children + $3, unlinked = f.unlinked + $4"#,
    )
    .bind(area)
    .bind(parents)
    .bind(children)
    .bind(unlinked)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn history(
    conn: &mut PgConnection,
    qr: &str,
    at: DateTime<Utc>,
    id: Uuid,
) -> Result<(), ApplyError> {
    sqlx::query("INSERT INTO stats.bag_history (qr, occurred_at, event_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(qr)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl StatsHandler {
    /// The audit-trail part: the event itself, kept.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        payload: &Value,
    ) -> Result<(), ApplyError> {
        use prost::Message;
        let id: Uuid = event
            .event_id
            .parse()
            .map_err(|_| poison(event, "bad event id"))?;
        let at = occurred_at(event)?;
        let actor = event.actor.clone().unwrap_or_default();
        sqlx::query(
            r#"INSERT INTO stats.audit_events (occurred_at, event_id, event_type, source, aggregate_type, aggregate_id,
                                               actor_user_id, actor_username, actor_service, ip, payload, envelope)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"#,
        )
        .bind(at)
        .bind(id)
        .bind(&event.event_type)
        .bind(&event.source)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(actor.user_id.parse::<Uuid>().ok())
        .bind(&actor.username)
        .bind(&actor.service)
        .bind(&actor.ip)
        .bind(payload)
        .bind(event.encode_to_vec())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The read-model part (also what a rebuild replays).
    pub async fn project(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        p: &Value,
    ) -> Result<(), ApplyError> {
        let id: Uuid = event
            .event_id
            .parse()
            .map_err(|_| poison(event, "bad event id"))?;
        let at = occurred_at(event)?;
        match event.event_type.as_str() {
            "auth.login_succeeded" => {
                let actor = event.actor.clone().unwrap_or_default();
                if let Ok(user) = actor.user_id.parse::<Uuid>() {
                    sqlx::query(
                        r#"INSERT INTO stats.user_activity AS a (user_id, username, last_login_at) VALUES ($1, $2, $3)
                           ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username,
                             last_login_at = GREATEST(a.last_login_at, EXCLUDED.last_login_at)"#,
                    )
                    .bind(user)
                    .bind(&actor.username)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            "registry.bag_registered" => {
                let area = str_field(event, p, "area")?;
                let qr = str_field(event, p, "bag")?;
                match str_field(event, p, "kind")? {
                    "parent" => area_delta(conn, area, 1, 0, 0).await?,
                    _ => area_delta(conn, area, 0, 1, 1).await?,
                }
                history(conn, qr, at, id).await?;
            }
            "registry.child_linked" => {
                let area = str_field(event, p, "area")?;
                let created = p.get("created").and_then(Value::as_bool).unwrap_or(false);
                if created {
                    area_delta(conn, area, 0, 1, 0).await?;
                } else {
                    let before = p.get("area_before").and_then(Value::as_str).unwrap_or(area);
                    area_delta(conn, before, 0, -1, -1).await?;
                    area_delta(conn, area, 0, 1, 0).await?;
                }
                history(conn, str_field(event, p, "child_qr")?, at, id).await?;
                history(conn, str_field(event, p, "parent_qr")?, at, id).await?;
            }
            "registry.child_unlinked" => {
                area_delta(conn, str_field(event, p, "area")?, 0, 0, 1).await?;
                history(conn, str_field(event, p, "child_qr")?, at, id).await?;
                history(conn, str_field(event, p, "parent_qr")?, at, id).await?;
            }
            "registry.child_moved" => {
                let area = str_field(event, p, "area")?;
                let from_area = p.get("from_area").and_then(Value::as_str).unwrap_or(area);
                let was_unlinked = p.get("from_parent_qr").is_none_or(Value::is_null);
                area_delta(conn, from_area, 0, -1, if was_unlinked { -1 } else { 0 }).await?;
                area_delta(conn, area, 0, 1, 0).await?;
                history(conn, str_field(event, p, "child_qr")?, at, id).await?;
                history(conn, str_field(event, p, "to_parent_qr")?, at, id).await?;
                if let Some(from) = p.get("from_parent_qr").and_then(Value::as_str) {
                    history(conn, from, at, id).await?;
                }
            }
            "registry.bag_deleted" => {
                let area = str_field(event, p, "area")?;
                match str_field(event, p, "kind")? {
                    "parent" => area_delta(conn, area, -1, 0, 0).await?,
                    _ => area_delta(conn, area, 0, -1, -1).await?,
                }
                history(conn, str_field(event, p, "bag")?, at, id).await?;
            }
            "registry.bags_imported" => {
                for a in p
                    .get("by_area")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let area = str_field(event, a, "area")?;
                    let g = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(0);
                    area_delta(conn, area, g("parents"), g("children"), g("unlinked")).await?;
                }
            }
            "registry.parent_claimed" | "registry.parent_released" => {
                history(conn, str_field(event, p, "parent_qr")?, at, id).await?;
            }
            "scan.recorded" => {
                let kind = str_field(event, p, "kind")?;
                let outcome = str_field(event, p, "outcome")?;
                if kind == "child" && outcome == "ok" {
                    let area = p.get("area").and_then(Value::as_str).unwrap_or("");
                    self.count_scan(conn, area, at, p).await?;
                }
            }
            t if t.starts_with("billing.") => {
                self.bill(conn, event, p).await?;
                if let Some(parent) = p.get("parent_qr").and_then(Value::as_str) {
                    history(conn, parent, at, id).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn count_scan(
        &self,
        conn: &mut PgConnection,
        area: &str,
        at: DateTime<Utc>,
        p: &Value,
    ) -> Result<(), ApplyError> {
        sqlx::query(
            r#"INSERT INTO stats.scans_by_minute AS s (area, minute, scans) VALUES ($1, date_trunc('minute', $2), 1)
               ON CONFLICT (minute, area) DO UPDATE SET scans = s.scans + 1"#,
        )
        .bind(area)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            r#"INSERT INTO stats.scans_by_hour AS s (area, hour_local, scans)
               VALUES ($1, date_trunc('hour', $2 AT TIME ZONE $3), 1)
               ON CONFLICT (hour_local, area) DO UPDATE SET scans = s.scans + 1"#,
        )
        .bind(area)
        .bind(at)
        .bind(&self.time_zone)
        .execute(&mut *conn)
        .await?;
        if let Some(user) = p
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|u| u.parse::<Uuid>().ok())
        {
            let username = p.get("username").and_then(Value::as_str).unwrap_or("");
            sqlx::query(
                r#"INSERT INTO stats.user_activity AS a (user_id, username, total_scans, last_scan_at) VALUES ($1, $2, 1, $3)
                   ON CONFLICT (user_id) DO UPDATE SET total_scans = a.total_scans + 1, username = EXCLUDED.username,
                     last_scan_at = GREATEST(a.last_scan_at, EXCLUDED.last_scan_at)"#,
            )
            .bind(user)
            .bind(username)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                r#"INSERT INTO stats.user_scans_daily AS d (user_id, day, scans) VALUES ($1, ($2 AT TIME ZONE $3)::date, 1)
                   ON CONFLICT (user_id, day) DO UPDATE SET scans = d.scans + 1"#,
            )
            .bind(user)
            .bind(at)
            .bind(&self.time_zone)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Bills by status: each billing event carries the bill's status after it (or says the bill
    /// is gone); the counts move with the change.
    async fn bill(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        p: &Value,
    ) -> Result<(), ApplyError> {
        let bill_id = p
            .get("bill_id")
            .or_else(|| p.pointer("/bill/bill_id"))
            .or_else(|| p.pointer("/after/bill_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| event.aggregate_id.clone());
        let status = if event.event_type == "billing.bill_deleted" {
            None
        } else {
            match p
                .get("status")
                .or_else(|| p.pointer("/bill/status"))
                .or_else(|| p.pointer("/after/status"))
                .and_then(Value::as_str)
            {
                Some(s) => Some(s.to_owned()),
                None => return Ok(()),
            }
        };
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM stats.bills WHERE bill_id = $1 FOR UPDATE")
                .bind(&bill_id)
                .fetch_optional(&mut *conn)
                .await?;
        if before == status {
            return Ok(());
        }
        if let Some(old) = &before {
            sqlx::query("UPDATE stats.bill_status_counts SET bills = bills - 1 WHERE status = $1")
                .bind(old)
                .execute(&mut *conn)
                .await?;
        }
        match &status {
            Some(new) => {
                sqlx::query("INSERT INTO stats.bills (bill_id, status) VALUES ($1, $2) ON CONFLICT (bill_id) DO UPDATE SET status = $2")
                    .bind(&bill_id)
                    .bind(new)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO stats.bill_status_counts AS c (status, bills) VALUES ($1, 1) ON CONFLICT (status) DO UPDATE SET bills = c.bills + 1",
                )
                .bind(new)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM stats.bills WHERE bill_id = $1")
                    .bind(&bill_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

pub fn payload(event: &EventEnvelope) -> Result<Value, ApplyError> {
    if event.payload_json.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(&event.payload_json)
        .map_err(|e| poison(event, &format!("payload is not JSON: {e}")))
}

#[async_trait]
impl Handler for StatsHandler {
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        let p = payload(event)?;
        self.project(conn, event, &p).await?;
        self.record(conn, event, &p).await?;
        let at = occurred_at(event)?;
        sqlx::query(
            "UPDATE stats.consumer_state SET last_event_at = GREATEST(last_event_at, $1), last_applied_at = now()",
        )
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn after_batch(&self, applied: usize) {
        if applied > 0 {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}
