//! What must hold after each victim, read straight from the private database: every
//! acknowledged scan present, the registry's invariants, one `child_linked` event per linked
//! child, every acknowledged scan in scan's log once; and the dashboard equal to the registry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::time::{sleep, Instant};

use super::load::Ack;
use super::stack::Redis;
use crate::api::Api;

/// What the SQL checks found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Acknowledged scans not in the registry as acknowledged (descriptions).
    pub missing: Vec<String>,
    /// Invariant breaks: (what, how many).
    pub breaks: Vec<(String, i64)>,
}

/// Each invariant as a query counting its violations.
const INVARIANTS: &[(&str, &str)] = &[
    (
        "parent over capacity",
        "SELECT count(*) FROM registry.bags WHERE kind = 'parent' AND child_count > capacity",
    ),
    (
        "parent child_count differs from its links",
        "SELECT count(*) FROM registry.bags p WHERE p.kind = 'parent' AND p.child_count <> \
         (SELECT count(*) FROM registry.bags c WHERE c.parent_qr = p.qr)",
    ),
    (
        "child linked to a bag that is not a parent",
        "SELECT count(*) FROM registry.bags c JOIN registry.bags p ON p.qr = c.parent_qr \
         WHERE p.kind <> 'parent' OR c.kind <> 'child'",
    ),
    (
        "child with more than one child_linked event",
        "SELECT count(*) FROM (SELECT aggregate_id FROM registry.outbox \
         WHERE event_type = 'registry.child_linked' GROUP BY aggregate_id HAVING count(*) > 1) d",
    ),
    (
        "linked child without a child_linked event",
        "SELECT count(*) FROM registry.bags c WHERE c.kind = 'child' AND c.parent_qr IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM registry.outbox o \
                         WHERE o.event_type = 'registry.child_linked' AND o.aggregate_id = c.qr)",
    ),
    (
        "child_linked event of a child that is not linked",
        "SELECT count(*) FROM registry.outbox o WHERE o.event_type = 'registry.child_linked' \
         AND NOT EXISTS (SELECT 1 FROM registry.bags c \
                         WHERE c.qr = o.aggregate_id AND c.parent_qr IS NOT NULL)",
    ),
    (
        "scan recorded as a success twice for one idempotency key",
        "SELECT count(*) FROM (SELECT idempotency_key FROM scan.scan_events \
         WHERE outcome IN ('created', 'ok', 'already_linked') AND idempotency_key IS NOT NULL \
         GROUP BY idempotency_key HAVING count(*) > 1) d",
    ),
    (
        "registry event published without a sequence",
        "SELECT count(*) FROM registry.outbox WHERE published_at IS NOT NULL AND seq IS NULL",
    ),
];

/// Runs every check against the acknowledged scans so far.
pub async fn check(pool: &PgPool, acks: &[Ack]) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    let bags: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT qr, kind, parent_qr FROM registry.bags")
            .fetch_all(pool)
            .await?;
    let bags: HashMap<String, (String, Option<String>)> =
        bags.into_iter().map(|(q, k, p)| (q, (k, p))).collect();
    let logged: Vec<(String,)> = sqlx::query_as(
        "SELECT idempotency_key FROM scan.scan_events \
         WHERE outcome IN ('created', 'ok', 'already_linked') AND idempotency_key IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let logged: HashSet<String> = logged.into_iter().map(|(k,)| k).collect();
    let mut not_logged = 0;
    for a in acks {
        match &a.child {
            None => match bags.get(&a.parent) {
                Some((k, _)) if k == "parent" => {}
                other => f.missing.push(format!(
                    "parent {} acknowledged but {}",
                    a.parent,
                    other.map_or("absent".to_owned(), |(k, _)| format!("a {k}"))
                )),
            },
            Some(c) => match bags.get(c) {
                Some((k, Some(p))) if k == "child" && *p == a.parent => {}
                other => f.missing.push(format!(
                    "child {c} acknowledged into {} but {}",
                    a.parent,
                    match other {
                        None => "absent".to_owned(),
                        Some((k, p)) => format!("a {k} in {}", p.as_deref().unwrap_or("no parent")),
                    }
                )),
            },
        }
        if !logged.contains(&a.key) {
            not_logged += 1;
        }
    }
    if not_logged > 0 {
        f.breaks.push((
            "acknowledged scan missing from scan's log".into(),
            not_logged,
        ));
    }
    for (what, sql) in INVARIANTS {
        let (n,): (i64,) = sqlx::query_as(*sql).fetch_one(pool).await?;
        if n > 0 {
            f.breaks.push(((*what).to_owned(), n));
        }
    }
    Ok(f)
}

/// Per area: (parents, children, unlinked children).
type Figures = BTreeMap<String, (i64, i64, i64)>;

async fn registry_figures(pool: &PgPool) -> anyhow::Result<Figures> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT area, count(*) FILTER (WHERE kind = 'parent'), count(*) FILTER (WHERE kind = 'child'), \
                count(*) FILTER (WHERE kind = 'child' AND parent_qr IS NULL) \
         FROM registry.bags GROUP BY area",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(a, p, c, u)| (a, (p, c, u)))
        .collect())
}

fn dashboard_figures(v: &Value) -> Option<Figures> {
    let areas = v.get("areas")?.as_array()?;
    let mut out = Figures::new();
    for a in areas {
        let g = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(0);
        let fig = (g("parents"), g("children"), g("unlinked_children"));
        if fig != (0, 0, 0) {
            out.insert(a.get("area")?.as_str()?.to_owned(), fig);
        }
    }
    Some(out)
}

/// The events of bag-registry and scan that their streams lack: (service, the sequence in
/// Postgres, the stream's last entry) for each stream behind its sequence.
pub async fn streams_behind(pool: &PgPool, redis: &Redis) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for (service, schema) in [("bag-registry", "registry"), ("scan", "scan")] {
        let sql = format!("SELECT last_seq FROM {schema}.outbox_sequence");
        let seq: i64 = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .map_or(-1, |(n,)| n);
        let last = redis.stream(service).await.map_or(-1, |(l, _)| l);
        if last < seq {
            out.push((service.to_owned(), seq, last));
        }
    }
    out
}

/// Polls the dashboard (as the admin) until its figures equal the registry's, no registry
/// event waits to be published and the event streams hold every published event; the time it
/// took, or `Err` with the last difference after `cap`.
pub async fn converge(
    pool: &PgPool,
    redis: &Redis,
    api: &Api,
    token: &str,
    cap: Duration,
) -> anyhow::Result<Result<Duration, String>> {
    let started = Instant::now();
    loop {
        let want = registry_figures(pool).await?;
        let (unpublished,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM registry.outbox WHERE published_at IS NULL")
                .fetch_one(pool)
                .await?;
        let behind = streams_behind(pool, redis).await;
        let a = api.get("/api/v1/stats/dashboard", token).await;
        let got = if a.ok() {
            dashboard_figures(&a.value())
        } else {
            None
        };
        if unpublished == 0 && behind.is_empty() && got.as_ref() == Some(&want) {
            return Ok(Ok(started.elapsed()));
        }
        if started.elapsed() > cap {
            let dashboard = match &got {
                None => format!("dashboard HTTP {} {}", a.status, a.code()),
                Some(g) => {
                    let areas: std::collections::BTreeSet<&String> =
                        want.keys().chain(g.keys()).collect();
                    let diff: Vec<String> = areas
                        .into_iter()
                        .filter(|k| want.get(*k) != g.get(*k))
                        .map(|k| {
                            format!("{k}: registry {:?}, dashboard {:?}", want.get(k), g.get(k))
                        })
                        .collect();
                    format!(
                        "(parents, children, unlinked) differ in {}",
                        diff.join("; ")
                    )
                }
            };
            return Ok(Err(format!(
                "after {} s: {dashboard}; {unpublished} registry events unpublished; streams \
                 behind their sequence (service, sequence, stream): {behind:?}",
                cap.as_secs(),
            )));
        }
        sleep(Duration::from_millis(200)).await;
    }
}
