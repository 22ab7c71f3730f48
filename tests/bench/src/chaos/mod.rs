//! `chaos`: the whole-stack fault suite (issue 20). A private stack (its own Postgres cluster,
//! redis-server and the six binaries on their own ports), dispatchers scanning through the
//! gateway with retrying clients, and one victim after another killed with SIGKILL and started
//! again exactly as before: scan, bag-registry, auth, billing, stats, the gateway, Redis
//! (restarted empty, then from a stale snapshot while stats lags) and the Postgres postmaster.
//! After each: the queues drained, then in SQL every acknowledged scan present, the invariants,
//! one `child_linked` event per child, no HTTP 500; and the dashboard converging to the
//! registry. The report has one row per victim; times are reported, never asserted.

mod checks;
mod load;
mod stack;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::{sleep, Instant};
use tokio_stream::StreamExt;
use tracetrack_common::client;
use tracetrack_domain::DEFAULT_AREAS;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::{BagType, ImportBag, ImportBagsRequest};

use crate::accounts::{self, Accounts, Role};
use crate::api::Api;
use crate::session::{describe, open};
use load::{Dispatcher, Record, Shared, User};
use stack::{signal, Pg, Ports, Stack, Svc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Victim {
    Scan,
    BagRegistry,
    Auth,
    Billing,
    Stats,
    Gateway,
    RedisEmpty,
    RedisStale,
    Postgres,
}

impl Victim {
    const ALL: [Victim; 9] = [
        Victim::Scan,
        Victim::BagRegistry,
        Victim::Auth,
        Victim::Billing,
        Victim::Stats,
        Victim::Gateway,
        Victim::RedisEmpty,
        Victim::RedisStale,
        Victim::Postgres,
    ];

    fn name(self) -> &'static str {
        match self {
            Victim::Scan => "scan",
            Victim::BagRegistry => "bag-registry",
            Victim::Auth => "auth",
            Victim::Billing => "billing",
            Victim::Stats => "stats",
            Victim::Gateway => "gateway",
            Victim::RedisEmpty => "redis, restarted empty",
            Victim::RedisStale => "redis, from a stale snapshot while stats lags",
            Victim::Postgres => "postgres postmaster",
        }
    }

    fn service(self) -> Option<Svc> {
        match self {
            Victim::Scan => Some(Svc::Scan),
            Victim::BagRegistry => Some(Svc::Registry),
            Victim::Auth => Some(Svc::Auth),
            Victim::Billing => Some(Svc::Billing),
            Victim::Stats => Some(Svc::Stats),
            Victim::Gateway => Some(Svc::Gateway),
            _ => None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the six binaries are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Logs, Redis's snapshot, pid files and the report.
    #[arg(long, default_value = ".local/chaos")]
    state_dir: PathBuf,
    /// Postgres's binaries (initdb, pg_ctl): `scripts/stack.sh install` prints them.
    #[arg(long)]
    pg_bin: PathBuf,
    /// The private cluster's directory (an empty or missing `data` inside it is initialised).
    #[arg(long)]
    pg_dir: PathBuf,
    /// Run Postgres's programs as this user (it refuses to run as root).
    #[arg(long)]
    pg_user: Option<String>,
    /// gRPC base+1…+5, admin base+11…+16, gateway base+30, Postgres base+40, Redis base+41.
    #[arg(long, default_value_t = 18150)]
    port_base: u16,
    #[arg(long, default_value_t = 12)]
    dispatchers: u32,
    /// Each dispatcher scans once per this many milliseconds into its queue.
    #[arg(long, default_value_t = 60)]
    scan_interval_ms: u64,
    /// Children per dispatcher imported (unlinked) before the run; later ones are new bags.
    #[arg(long, default_value_t = 1500)]
    seeded_children: u32,
    /// Seconds of load before the kill.
    #[arg(long, default_value_t = 5)]
    kill_after_secs: u64,
    /// Seconds between the kill and the restart.
    #[arg(long, default_value_t = 5)]
    down_secs: u64,
    /// Seconds of load after the first success following the restart.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Longest wait for the first success after a restart (then: failed).
    #[arg(long, default_value_t = 60)]
    recover_cap_secs: u64,
    /// Longest wait for the queues to drain (then: failed).
    #[arg(long, default_value_t = 120)]
    drain_cap_secs: u64,
    /// Longest wait for the dashboard to equal the registry (then: failed).
    #[arg(long, default_value_t = 60)]
    converge_cap_secs: u64,
    /// The victims, in order (default: all nine).
    #[arg(long, value_enum, value_delimiter = ',')]
    victims: Vec<Victim>,
    /// Proves the checks can fail: unlinks one acknowledged child with raw SQL (bypassing the
    /// services) before each victim's checks; the run must then fail.
    #[arg(long)]
    tamper_check: bool,
}

/// One victim's row of the report.
struct Row {
    victim: &'static str,
    acked: usize,
    scans_per_sec: f64,
    missing: Vec<String>,
    breaks: Vec<(String, i64)>,
    errors_down: BTreeMap<String, u64>,
    errors_down_by_op: BTreeMap<String, u64>,
    errors_other: BTreeMap<String, u64>,
    slowest: Option<(Duration, String)>,
    ready: Option<Duration>,
    /// From the kill to the victim's being ready again.
    back_ready: Duration,
    recovered: Result<Duration, String>,
    drained: Result<Duration, String>,
    converged: Result<Duration, String>,
    /// Failures not in the other columns.
    notes: Vec<String>,
    /// What the run saw, for the reader (not failures).
    info: Vec<String>,
}

impl Row {
    fn failed(&self) -> bool {
        !self.missing.is_empty()
            || !self.breaks.is_empty()
            || self.recovered.is_err()
            || self.drained.is_err()
            || self.converged.is_err()
            || !self.notes.is_empty()
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn errors_cell(e: &BTreeMap<String, u64>) -> String {
    if e.is_empty() {
        return "none".into();
    }
    let mut v: Vec<_> = e.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_key(r: &Record) -> String {
    if r.status == 0 {
        format!("no answer ({})", r.code)
    } else {
        format!("{} {}", r.status, r.code)
    }
}

fn say(msg: &str) {
    eprintln!("[chaos] {msg}");
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let ports = Ports {
        base: args.port_base,
    };
    stack::ensure_ports_free(ports).await?;
    tokio::fs::create_dir_all(&args.state_dir).await?;
    let pg = Pg {
        bin: args.pg_bin.clone(),
        dir: args.pg_dir.clone(),
        user: args.pg_user.clone(),
        port: ports.pg(),
        db: "tracetrack".into(),
    };
    let mut stack = Stack::new(ports, pg, args.bin_dir.clone(), &args.state_dir);
    let outcome = drive(&mut stack, &args).await;
    say("stopping the private stack");
    stack.stop_all().await;
    let (rows, problems) = outcome?;
    let report = render(&rows, &problems, started.elapsed(), &args);
    println!("{report}");
    let path = args.state_dir.join("report.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    say(&format!("report written to {}", path.display()));
    let failed = rows.iter().filter(|r| r.failed()).count() + problems.len();
    if failed > 0 {
        say(&format!(
            "FAILED: {failed} failure(s), see the report above"
        ));
        std::process::exit(1);
    }
    Ok(())
}

/// Problems that are not one victim's: HTTP 500s, definitive refusals, processes that died.
type Problems = Vec<String>;

async fn drive(stack: &mut Stack, args: &Args) -> anyhow::Result<(Vec<Row>, Problems)> {
    say(&format!(
        "starting a private stack: Postgres on {}, Redis on {}, gateway on {} (logs in {})",
        stack.ports.pg(),
        stack.ports.redis(),
        stack.gateway_url(),
        args.state_dir.join("logs").display()
    ));
    let t = Instant::now();
    stack.start_all().await?;
    say(&format!("stack ready in {}", secs(t.elapsed())));

    let api = Api::new(&stack.gateway_url(), Duration::from_secs(15))?;
    let admin_password = stack.secrets.admin_password.clone();
    let cache = args.state_dir.join("sessions.json");
    let _ = std::fs::remove_file(&cache);
    let accounts = Arc::new(Accounts::open(&api, "admin", &admin_password, &cache).await?);
    let n = args.dispatchers as usize;
    accounts.ensure(Role::Dispatcher, n).await?;
    let sessions = accounts.sessions(Role::Dispatcher, n).await?;
    let admin = Arc::new(User::new(
        "admin".into(),
        admin_password.clone(),
        accounts.admin_token().to_owned(),
    ));
    seed_children(stack, accounts.admin_token(), n, args.seeded_children).await?;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&stack.pg.url(&stack.pg.db))
        .await?;
    let cap = Duration::from_secs(args.converge_cap_secs);
    match checks::converge(&pool, &stack.redis, &api, &admin.token(), cap).await? {
        Ok(d) => say(&format!(
            "the dashboard shows the seeded bags ({})",
            secs(d)
        )),
        Err(e) => anyhow::bail!("the dashboard never showed the seeded bags: {e}"),
    }

    let shared = Shared::new(api.clone(), Duration::from_millis(args.scan_interval_ms));
    let password = accounts::bench_password(&admin_password);
    let dispatchers: Vec<Arc<Dispatcher>> = sessions
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            Dispatcher::new(
                k,
                User::new(Role::Dispatcher.username(k), password.clone(), s.token),
                args.seeded_children,
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for d in &dispatchers {
        tasks.push(tokio::spawn(d.clone().produce(shared.clone())));
        tasks.push(tokio::spawn(d.clone().send(shared.clone())));
    }
    tasks.push(tokio::spawn(load::reader(admin.clone(), shared.clone())));

    let victims = if args.victims.is_empty() {
        Victim::ALL.to_vec()
    } else {
        args.victims.clone()
    };
    let mut rows = Vec::new();
    let mut problems = Problems::new();
    for v in victims {
        say(&format!("── victim: {}", v.name()));
        let row = phase(v, stack, &shared, &dispatchers, &pool, &admin, args).await?;
        say(&format!(
            "{}: {} acknowledged, {} missing, {} invariant breaks, recovered {}, dashboard {}",
            row.victim,
            row.acked,
            row.missing.len(),
            row.breaks.len(),
            row.recovered
                .as_ref()
                .map_or_else(Clone::clone, |d| secs(*d)),
            row.converged
                .as_ref()
                .map_or_else(|_| "FAILED".into(), |d| secs(*d)),
        ));
        let stop = row.drained.is_err();
        rows.push(row);
        if stop {
            problems.push("the queues did not drain: the remaining victims were skipped".into());
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }

    let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
    write_records(&args.state_dir, &records, &shared)?;
    let fives: Vec<&Record> = records.iter().filter(|r| r.status == 500).collect();
    if !fives.is_empty() {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for r in &fives {
            *by.entry(format!("{} {}", r.op, r.code)).or_default() += 1;
        }
        problems.push(format!(
            "HTTP 500 answered {} times: {} (first at {:.1} s)",
            fives.len(),
            errors_cell(&by),
            fives[0].end.as_secs_f64()
        ));
    }
    let refusals = shared
        .refusals
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    for r in refusals.iter().take(20) {
        problems.push(format!(
            "definitive refusal of {}: HTTP {} {}",
            r.what, r.status, r.code
        ));
    }
    if refusals.len() > 20 {
        problems.push(format!("… and {} more refusals", refusals.len() - 20));
    }
    problems.extend(stack.exited());
    Ok((rows, problems))
}

/// Every answer (responses.csv: seconds from the start of the load) and every acknowledged
/// scan (acks.csv), for looking closer.
fn write_records(dir: &std::path::Path, records: &[Record], shared: &Shared) -> anyhow::Result<()> {
    let mut out = String::from("start_s,end_s,op,status,code\n");
    for r in records {
        let _ = writeln!(
            out,
            "{:.4},{:.4},{},{},{}",
            r.start.as_secs_f64(),
            r.end.as_secs_f64(),
            r.op,
            r.status,
            r.code
        );
    }
    std::fs::write(dir.join("responses.csv"), out)?;
    let mut out = String::from("parent_qr,child_qr,idempotency_key\n");
    for a in shared.acks.lock().map(|a| a.clone()).unwrap_or_default() {
        let _ = writeln!(
            out,
            "{},{},{}",
            a.parent,
            a.child.as_deref().unwrap_or(""),
            a.key
        );
    }
    std::fs::write(dir.join("acks.csv"), out)?;
    Ok(())
}

/// Imports `per` unlinked children per dispatcher, in the dispatcher's area (one ImportBags
/// call, as the admin).
async fn seed_children(stack: &Stack, token: &str, n: usize, per: u32) -> anyhow::Result<()> {
    if per == 0 {
        return Ok(());
    }
    let mut registry = BagRegistryServiceClient::new(open(
        &stack.grpc_url(Svc::Registry),
        Duration::from_secs(600),
    )?)
    .max_encoding_message_size(64 << 20);
    let mut batches = Vec::new();
    for k in 0..n {
        let area = DEFAULT_AREAS[k % DEFAULT_AREAS.len()];
        batches.push(ImportBagsRequest {
            bags: (0..per)
                .map(|i| ImportBag {
                    qr: Dispatcher::child_qr(k, i, per),
                    r#type: BagType::Child as i32,
                    area: area.to_owned(),
                    parent_qr: String::new(),
                })
                .collect(),
        });
    }
    let t = Instant::now();
    let resp = registry
        .import_bags(client::request(
            tokio_stream::iter(batches).map(|b| b),
            Some(token),
            None,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("ImportBags failed: {}", describe(&s)))?
        .into_inner();
    anyhow::ensure!(
        resp.rejected.is_empty(),
        "ImportBags rejected {} bags",
        resp.rejected.len()
    );
    say(&format!(
        "imported {} unlinked children in {}",
        resp.children_created,
        secs(t.elapsed())
    ));
    Ok(())
}

/// One victim: load, kill, restart, recover, drain, check.
async fn phase(
    v: Victim,
    stack: &mut Stack,
    shared: &Arc<Shared>,
    dispatchers: &[Arc<Dispatcher>],
    pool: &sqlx::PgPool,
    admin: &User,
    args: &Args,
) -> anyhow::Result<Row> {
    let acks_before = shared.acks.lock().map(|a| a.len()).unwrap_or(0);
    let t_start = shared.now();
    shared.producing.store(true, Ordering::Relaxed);
    let kill_after = Duration::from_secs(args.kill_after_secs);
    let mut notes = Vec::new();
    let mut info = Vec::new();
    let mut snapshot = Vec::new();
    if v == Victim::RedisStale {
        // Stats stops consuming, the snapshot is taken, more events are published after it,
        // then Redis dies and comes back from the snapshot while stats is still behind.
        let third = kill_after / 3;
        sleep(third).await;
        let pid = stack.pid(Svc::Stats).context("stats is not running")?;
        signal(pid, "STOP").await?;
        say("stats stopped (SIGSTOP)");
        sleep(third).await;
        stack.redis.save().await?;
        for service in ["bag-registry", "scan"] {
            snapshot.push((service, stack.redis.stream(service).await?));
        }
        say("Redis snapshot saved");
        sleep(kill_after.saturating_sub(third * 2)).await;
    } else {
        sleep(kill_after).await;
    }

    let t_kill = shared.now();
    match v {
        Victim::RedisEmpty | Victim::RedisStale => stack.redis.kill9().await?,
        Victim::Postgres => stack.pg.kill9().await?,
        _ => {
            if let Some(s) = v.service() {
                stack.kill9(s).await?;
            }
        }
    }
    say(&format!(
        "killed (SIGKILL) at {:.1} s",
        t_kill.as_secs_f64()
    ));
    for (service, (in_snapshot, delivered)) in &snapshot {
        let schema = if *service == "scan" {
            "scan"
        } else {
            "registry"
        };
        let sql = format!("SELECT last_seq FROM {schema}.outbox_sequence");
        let (seq,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        info.push(format!(
            "{service}: the snapshot held events up to {in_snapshot}, {} were published before \
             the kill ({} the snapshot lacked); stats had been delivered up to {} at the \
             snapshot ({} behind)",
            seq,
            seq - in_snapshot,
            delivered.map_or("-".into(), |d| d.to_string()),
            delivered.map_or("-".into(), |d| (in_snapshot - d).to_string()),
        ));
    }
    sleep(Duration::from_secs(args.down_secs)).await;

    let t_restart = shared.now();
    let pids = args.state_dir.join("pids");
    match v {
        Victim::RedisEmpty => stack.redis.start(true, &pids).await?,
        Victim::RedisStale => {
            stack.redis.start(false, &pids).await?;
            if let Some(pid) = stack.pid(Svc::Stats) {
                signal(pid, "CONT").await?;
                say("Redis back from the snapshot; stats continued (SIGCONT)");
            }
        }
        Victim::Postgres => stack.pg.start().await?,
        _ => {
            if let Some(s) = v.service() {
                stack.start(s).await?;
            }
        }
    }
    let t_ready = shared.now();
    say(&format!(
        "restarted; ready {} after the restart began",
        secs(t_ready - t_restart)
    ));

    // The first success of a request sent after the restart began.
    let give_up = Instant::now() + Duration::from_secs(args.recover_cap_secs);
    let recovered = loop {
        let first = shared.records.lock().ok().and_then(|r| {
            r.iter()
                .filter(|r| r.ok() && r.start >= t_restart)
                .map(|r| r.end)
                .min()
        });
        if let Some(at) = first {
            break Ok(at.saturating_sub(t_kill));
        }
        if Instant::now() > give_up {
            break Err(format!(
                "no success within {} s of the restart",
                args.recover_cap_secs
            ));
        }
        sleep(Duration::from_millis(50)).await;
    };
    let back = match &recovered {
        Ok(d) => t_kill + *d,
        Err(_) => shared.now(),
    };
    sleep(Duration::from_secs(args.settle_secs)).await;

    shared.producing.store(false, Ordering::Relaxed);
    let t_stop = shared.now();
    let give_up = Instant::now() + Duration::from_secs(args.drain_cap_secs);
    let drained = loop {
        let left: usize = dispatchers.iter().map(|d| d.queued()).sum();
        if left == 0 {
            break Ok(shared.now() - t_stop);
        }
        if Instant::now() > give_up {
            break Err(format!(
                "{left} scans still queued after {} s",
                args.drain_cap_secs
            ));
        }
        sleep(Duration::from_millis(50)).await;
    };
    let t_end = shared.now();
    let acks = shared.acks.lock().map(|a| a.clone()).unwrap_or_default();
    let acked = acks.len() - acks_before;
    if args.tamper_check {
        tamper(pool, &acks).await?;
    }
    let findings = checks::check(pool, &acks).await?;
    let converged = checks::converge(
        pool,
        &stack.redis,
        &shared.api,
        &admin.token(),
        Duration::from_secs(args.converge_cap_secs),
    )
    .await?;

    let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
    let mut errors_down = BTreeMap::new();
    let mut errors_down_by_op = BTreeMap::new();
    let mut errors_other = BTreeMap::new();
    let mut slowest: Option<(Duration, String)> = None;
    for r in records
        .iter()
        .filter(|r| r.end >= t_start && r.start <= t_end)
    {
        let down = r.end >= t_kill && r.start <= back;
        if !r.ok() && down {
            *errors_down_by_op
                .entry(format!("{} {}", r.op, error_key(r)))
                .or_insert(0) += 1;
        }
        if !r.ok() {
            let into = if down {
                &mut errors_down
            } else {
                &mut errors_other
            };
            *into.entry(error_key(r)).or_insert(0) += 1;
        }
        if down {
            let took = r.end - r.start;
            if slowest.as_ref().is_none_or(|(d, _)| took > *d) {
                let what = if r.ok() {
                    format!("{} {}", r.op, r.status)
                } else {
                    format!("{} {}", r.op, error_key(r))
                };
                slowest = Some((took, what));
            }
        }
    }
    notes.extend(stack.exited());
    Ok(Row {
        victim: v.name(),
        acked,
        scans_per_sec: acked as f64 / (t_end - t_start).as_secs_f64().max(0.001),
        missing: findings.missing,
        breaks: findings.breaks,
        errors_down,
        errors_down_by_op,
        errors_other,
        slowest,
        ready: Some(t_ready - t_restart),
        back_ready: t_ready - t_kill,
        recovered,
        drained,
        converged,
        notes,
        info,
    })
}

/// Unlinks the newest acknowledged child behind the services' backs (see `--tamper-check`).
async fn tamper(pool: &sqlx::PgPool, acks: &[load::Ack]) -> anyhow::Result<()> {
    if let Some(child) = acks.iter().rev().find_map(|a| a.child.clone()) {
        sqlx::query(
            "UPDATE registry.bags SET parent_qr = NULL, linked_at = NULL, linked_by = NULL \
             WHERE qr = $1",
        )
        .bind(&child)
        .execute(pool)
        .await?;
        say(&format!("tampered: unlinked {child} with raw SQL"));
    }
    Ok(())
}

fn render(rows: &[Row], problems: &[String], took: Duration, args: &Args) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Chaos report\n\n{} dispatchers through the gateway (one scan each per {} ms into a \
         retrying queue), SIGKILL {} s into the load, restart {} s later; checks in SQL after \
         the queues drained. Times are measured, not asserted.\n",
        args.dispatchers, args.scan_interval_ms, args.kill_after_secs, args.down_secs
    );
    let _ = writeln!(
        s,
        "| victim | acknowledged | missing | invariant breaks | errors while down (kill → first success after restart) | slowest request while down | recovered (kill → first success after restart) | ready (restart → healthy) | drained | dashboard converged (after drain) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---|---|---:|---:|---:|---:|");
    for r in rows {
        let breaks: i64 = r.breaks.iter().map(|(_, n)| *n).sum();
        let _ = writeln!(
            s,
            "| {} | {} ({:.0}/s) | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.victim,
            r.acked,
            r.scans_per_sec,
            r.missing.len(),
            breaks,
            errors_cell(&r.errors_down),
            r.slowest
                .as_ref()
                .map_or("-".into(), |(d, w)| format!("{} ({w})", secs(*d))),
            r.recovered.as_ref().map_or_else(
                |e| format!("FAILED: {e}"),
                |d| format!(
                    "{} ({} after ready)",
                    secs(*d),
                    secs(d.saturating_sub(r.back_ready))
                )
            ),
            r.ready.map_or("-".into(), secs),
            r.drained
                .as_ref()
                .map_or_else(|e| format!("FAILED: {e}"), |d| secs(*d)),
            r.converged
                .as_ref()
                .map_or_else(|_| "FAILED".into(), |d| secs(*d)),
        );
    }
    let mut details = Vec::new();
    for r in rows {
        for m in r.missing.iter().take(10) {
            details.push(format!("{}: MISSING {m}", r.victim));
        }
        for (what, n) in &r.breaks {
            details.push(format!("{}: INVARIANT {what}: {n}", r.victim));
        }
        if let Err(e) = &r.converged {
            details.push(format!("{}: dashboard did not converge: {e}", r.victim));
        }
        for n in &r.notes {
            details.push(format!("{}: {n}", r.victim));
        }
        for n in &r.info {
            details.push(format!("{}: {n}", r.victim));
        }
        if !r.errors_down_by_op.is_empty() {
            details.push(format!(
                "{}: errors while down by operation: {}",
                r.victim,
                errors_cell(&r.errors_down_by_op)
            ));
        }
        if !r.errors_other.is_empty() {
            details.push(format!(
                "{}: errors outside the outage (retried): {}",
                r.victim,
                errors_cell(&r.errors_other)
            ));
        }
    }
    let total: usize = rows.iter().map(|r| r.acked).sum();
    let failed = rows.iter().any(Row::failed) || !problems.is_empty();
    let _ = writeln!(
        s,
        "\n{total} scans acknowledged in all; {} HTTP 500; whole run {} — {}",
        if problems.iter().any(|p| p.starts_with("HTTP 500")) {
            "some"
        } else {
            "no"
        },
        secs(took),
        if failed { "FAILED" } else { "passed" }
    );
    for p in problems {
        let _ = writeln!(s, "- PROBLEM: {p}");
    }
    for d in details {
        let _ = writeln!(s, "- {d}");
    }
    s
}
