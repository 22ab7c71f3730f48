//! How each event changes the read models. Every event lands in the audit trail (the event store
//! the read models can be rebuilt from, and each bag's history, read through `stats.audit_bags`);
//! known types also move the dashboard and activity figures.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use tokio::sync::watch;
use tracetrack_common::consumer::{ApplyError, Handler};
use tracetrack_proto::events::v1::EventEnvelope;
use uuid::Uuid;

use crate::store;

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

/// What events do to the read models, worked out before touching the database, then written
/// with one set-based statement per table (see [`Effects::write`]).
#[derive(Default)]
pub struct Effects {
    /// (area, parents, children, unlinked) deltas.
    areas: Vec<(String, i64, i64, i64)>,
    /// Successful child scans: (area, occurred_at).
    scans: Vec<(String, DateTime<Utc>)>,
    /// The same scans by user: (user, username, occurred_at).
    user_scans: Vec<(Uuid, String, DateTime<Utc>)>,
    /// Successful logins: (user, username, occurred_at).
    logins: Vec<(Uuid, String, DateTime<Utc>)>,
    /// Billing events (index into the events given), applied one by one in order.
    bills: Vec<usize>,
}

impl Effects {
    fn area(&mut self, area: &str, parents: i64, children: i64, unlinked: i64) {
        if parents != 0 || children != 0 || unlinked != 0 {
            self.areas
                .push((area.to_owned(), parents, children, unlinked));
        }
    }

    fn extend(&mut self, other: Effects) {
        self.areas.extend(other.areas);
        self.scans.extend(other.scans);
        self.user_scans.extend(other.user_scans);
        self.logins.extend(other.logins);
        self.bills.extend(other.bills);
    }

    /// One event's effects (`index` is its place among the events being applied). Poison when
    /// the event lacks what its type needs; then it has no effect at all.
    fn of(index: usize, event: &EventEnvelope, p: &Value) -> Result<Effects, ApplyError> {
        event
            .event_id
            .parse::<Uuid>()
            .map_err(|_| poison(event, "bad event id"))?;
        let at = occurred_at(event)?;
        let mut fx = Effects::default();
        match event.event_type.as_str() {
            "auth.login_succeeded" => {
                let actor = event.actor.clone().unwrap_or_default();
                if let Ok(user) = actor.user_id.parse::<Uuid>() {
                    fx.logins.push((user, actor.username, at));
                }
            }
            "registry.bag_registered" => {
                let area = str_field(event, p, "area")?;
                // The QRs an event is about are read from its audit row (stats.audit_bags);
                // an event without them is refused as before.
                str_field(event, p, "bag")?;
                match str_field(event, p, "kind")? {
                    "parent" => fx.area(area, 1, 0, 0),
                    _ => fx.area(area, 0, 1, 1),
                }
            }
            "registry.child_linked" => {
                let area = str_field(event, p, "area")?;
                let created = p.get("created").and_then(Value::as_bool).unwrap_or(false);
                if created {
                    fx.area(area, 0, 1, 0);
                } else {
                    let before = p.get("area_before").and_then(Value::as_str).unwrap_or(area);
                    fx.area(before, 0, -1, -1);
                    fx.area(area, 0, 1, 0);
                }
                str_field(event, p, "child_qr")?;
                str_field(event, p, "parent_qr")?;
            }
            "registry.child_unlinked" => {
                fx.area(str_field(event, p, "area")?, 0, 0, 1);
                str_field(event, p, "child_qr")?;
                str_field(event, p, "parent_qr")?;
            }
            "registry.child_moved" => {
                let area = str_field(event, p, "area")?;
                let from_area = p.get("from_area").and_then(Value::as_str).unwrap_or(area);
                let was_unlinked = p.get("from_parent_qr").is_none_or(Value::is_null);
                fx.area(from_area, 0, -1, if was_unlinked { -1 } else { 0 });
                fx.area(area, 0, 1, 0);
                str_field(event, p, "child_qr")?;
                str_field(event, p, "to_parent_qr")?;
            }
            "registry.bag_deleted" => {
                let area = str_field(event, p, "area")?;
                match str_field(event, p, "kind")? {
                    "parent" => fx.area(area, -1, 0, 0),
                    _ => fx.area(area, 0, -1, -1),
                }
                str_field(event, p, "bag")?;
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
                    fx.area(area, g("parents"), g("children"), g("unlinked"));
                }
            }
            "registry.parent_claimed" | "registry.parent_released" => {
                str_field(event, p, "parent_qr")?;
            }
            "registry.parent_returned" => {
                // A returned parent and its children take the return ticket's area.
                let area = str_field(event, p, "area")?;
                let from = p.get("from_area").and_then(Value::as_str).unwrap_or(area);
                if from != area && !from.is_empty() {
                    let children = p.get("child_count").and_then(Value::as_i64).unwrap_or(0);
                    fx.area(from, -1, -children, 0);
                    fx.area(area, 1, children, 0);
                }
                str_field(event, p, "parent_qr")?;
            }
            "scan.recorded" => {
                let kind = str_field(event, p, "kind")?;
                let outcome = str_field(event, p, "outcome")?;
                if kind == "child" && outcome == "ok" {
                    let area = p.get("area").and_then(Value::as_str).unwrap_or("");
                    fx.scans.push((area.to_owned(), at));
                    if let Some(user) = p
                        .get("user_id")
                        .and_then(Value::as_str)
                        .and_then(|u| u.parse::<Uuid>().ok())
                    {
                        let username = p.get("username").and_then(Value::as_str).unwrap_or("");
                        fx.user_scans.push((user, username.to_owned(), at));
                    }
                }
            }
            // Return tickets are not bills (their own status is not a bill's).
            t if t.starts_with("billing.") && event.aggregate_type != "return_ticket" => {
                fx.bills.push(index);
            }
            _ => {}
        }
        Ok(fx)
    }
}

impl StatsHandler {
    /// Writes `fx` (computed from `events` with their payloads): a few statements, whatever the
    /// number of events.
    async fn write(
        &self,
        conn: &mut PgConnection,
        fx: &Effects,
        events: &[(&EventEnvelope, Value)],
    ) -> Result<(), ApplyError> {
        if !fx.areas.is_empty() {
            store::add_area_figures(conn, &fx.areas).await?;
        }
        if !fx.scans.is_empty() {
            store::add_scans(conn, &fx.scans, &self.time_zone).await?;
        }
        if !fx.user_scans.is_empty() {
            store::add_user_scans(conn, &fx.user_scans, &self.time_zone).await?;
        }
        if !fx.logins.is_empty() {
            store::add_logins(conn, &fx.logins).await?;
        }
        for &i in &fx.bills {
            let (event, p) = &events[i];
            self.bill(conn, event, p).await?;
        }
        Ok(())
    }

    /// The read-model part of `events` (also what a rebuild replays); the poison ones (by index,
    /// with the reason) have no effect.
    pub async fn project_many(
        &self,
        conn: &mut PgConnection,
        events: &[(&EventEnvelope, Value)],
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        let mut fx = Effects::default();
        let mut poisoned = Vec::new();
        for (i, (event, p)) in events.iter().enumerate() {
            match Effects::of(i, event, p) {
                Ok(one) => fx.extend(one),
                Err(ApplyError::Poison(reason)) => poisoned.push((i, reason)),
                Err(e) => return Err(e),
            }
        }
        self.write(conn, &fx, events).await?;
        Ok(poisoned)
    }

    /// The audit-trail part: the events themselves, kept (the store the read models are rebuilt
    /// from), each once; which of them are new (an event that cannot be kept — no time, no
    /// JSON payload, a bad id — counts as new: applying it then parks it as poison). The audit
    /// trail's key is the consumer's record of what was applied (no `applied_events` row).
    pub async fn record_many(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope],
    ) -> Result<Vec<bool>, ApplyError> {
        use prost::Message;
        let mut rows = Vec::with_capacity(events.len());
        let mut keys = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            let row_of = |e: &EventEnvelope| -> Result<(Uuid, DateTime<Utc>, Value), ApplyError> {
                let id = e
                    .event_id
                    .parse::<Uuid>()
                    .map_err(|_| poison(e, "bad event id"))?;
                Ok((id, occurred_at(e)?, payload(e)?))
            };
            match row_of(event) {
                Ok((id, at, p)) => {
                    keys.push(Some(id));
                    payloads.push(Some((at, p)));
                }
                Err(ApplyError::Poison(_)) => {
                    keys.push(None);
                    payloads.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        for ((event, key), p) in events.iter().zip(&keys).zip(&payloads) {
            let (Some(id), Some((at, p))) = (key, p) else {
                continue;
            };
            let actor = event.actor.as_ref();
            rows.push(store::NewAuditEvent {
                occurred_at: *at,
                event_id: *id,
                event_type: &event.event_type,
                source: &event.source,
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                actor_user_id: actor.and_then(|a| a.user_id.parse::<Uuid>().ok()),
                actor_username: actor.map_or("", |a| a.username.as_str()),
                actor_service: actor.map_or("", |a| a.service.as_str()),
                ip: actor.map_or("", |a| a.ip.as_str()),
                payload: p.to_string(),
                envelope: event.encode_to_vec(),
            });
        }
        let mut inserted: std::collections::HashSet<Uuid> = store::insert_audit(conn, &rows)
            .await?
            .into_iter()
            .collect();
        // New: the first occurrence of an id the insert wrote, or an event that could not be kept.
        Ok(keys
            .iter()
            .map(|k| k.is_none_or(|id| inserted.remove(&id)))
            .collect())
    }

    /// Removes an event [`StatsHandler::record_many`] kept that turned out poison.
    pub async fn unrecord(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        if let (Ok(id), Ok(at)) = (event.event_id.parse::<Uuid>(), occurred_at(event)) {
            store::delete_audit(conn, at, id).await?;
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
        let before = store::bill_status_for_update(conn, &bill_id).await?;
        if before == status {
            return Ok(());
        }
        if let Some(old) = &before {
            store::uncount_bill(conn, old).await?;
        }
        match &status {
            Some(new) => store::count_bill(conn, &bill_id, new).await?,
            None => store::forget_bill(conn, &bill_id).await?,
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

impl StatsHandler {
    /// Applies `events` (new ones) at once: read models, audit trail, freshness. Returns the
    /// poison ones, which have no effect.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope],
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        let mut good: Vec<(&EventEnvelope, Value)> = Vec::with_capacity(events.len());
        let mut index = Vec::with_capacity(events.len());
        let mut poisoned = Vec::new();
        for (i, event) in events.iter().enumerate() {
            match payload(event).and_then(|p| occurred_at(event).map(|_| p)) {
                Ok(p) => {
                    good.push((event, p));
                    index.push(i);
                }
                Err(ApplyError::Poison(reason)) => poisoned.push((i, reason)),
                Err(e) => return Err(e),
            }
        }
        let bad = self.project_many(conn, &good).await?;
        let bad_set: std::collections::HashSet<usize> = bad.iter().map(|(i, _)| *i).collect();
        let kept: Vec<(&EventEnvelope, &Value)> = good
            .iter()
            .enumerate()
            .filter(|(i, _)| !bad_set.contains(i))
            .map(|(_, (e, p))| (*e, p))
            .collect();
        // The events themselves are in the audit trail already (`record_new`, which the consumer
        // ran first: it is how the consumer knows they are new).
        if let Some(newest) = kept.iter().filter_map(|(e, _)| occurred_at(e).ok()).max() {
            store::mark_applied(conn, newest).await?;
        }
        poisoned.extend(bad.into_iter().map(|(i, r)| (index[i], r)));
        poisoned.sort_by_key(|(i, _)| *i);
        Ok(poisoned)
    }
}

#[async_trait]
impl Handler for StatsHandler {
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        match self.apply_all(conn, &[event]).await?.pop() {
            Some((_, reason)) => Err(ApplyError::Poison(reason)),
            None => Ok(()),
        }
    }

    fn applies_many(&self) -> bool {
        true
    }

    async fn apply_many(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope],
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        self.apply_all(conn, events).await
    }

    async fn after_batch(&self, applied: usize) {
        if applied > 0 {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    async fn record_new(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope],
    ) -> Result<Option<Vec<bool>>, ApplyError> {
        self.record_many(conn, events).await.map(Some)
    }

    async fn forget(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        self.unrecord(conn, event).await
    }
}
