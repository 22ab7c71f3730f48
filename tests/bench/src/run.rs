//! `run`: V virtual users drive one scenario through the gateway's HTTP API for T seconds (after a
//! warm-up that is not measured), closed-loop or at a fixed arrival rate, and every request's
//! latency goes into an HDR histogram per operation.
//!
//! Scenarios:
//! - `scan-storm`: dispatchers scan a new parent, then fill it (30 children of a mustard parent,
//!   15 of a moong one), with no think time.
//! - `mixed`: 60 % dispatchers doing the same with think times, 30 % billers creating bills and
//!   attaching full parents (then completing the bill and looking at the bill list), 10 % admins
//!   polling the dashboard, searching bags and listing bills, with think times.
//! - `lookup`: `GET /api/v1/bags/{qr}` of random bags of the seeded set, no think time.
//!
//! Each virtual user is its own user account (one session each) unless `--users` caps the
//! accounts per role; the gateway's per-user rate limit (30 requests/s by default) then applies
//! to each as it would to a person.
//!
//! Fixed rate (`--rate R`): virtual user i sends its requests at t0 + (i + kV)/R, ignoring think
//! times; a request's latency counts from its scheduled start, so a slow answer that delays the
//! next request shows up in the latencies (no coordinated omission). Closed loop: each answer is
//! followed by the scenario's think time, then the next request.
//!
//! New parents come from the numbers 80000-99999 of each line (mustard first, then moong), which
//! `seed` never uses; the ones registered already are found through the prefix search first and
//! skipped, so runs can be repeated on one database until the range is used up.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracetrack_domain::DEFAULT_AREAS;

use crate::accounts::{Accounts, Role, Session};
use crate::api::{enc, Answer, Api};
use crate::probe;
use crate::report::{count, latency_histogram, micros, Latency, OpStats, RunReport};
use crate::seed::SEED_PARENT_NUMBERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    ScanStorm,
    Mixed,
    Lookup,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ScanStorm => "scan-storm",
            Scenario::Mixed => "mixed",
            Scenario::Lookup => "lookup",
        }
    }

    /// The operations `--check` expects to have succeeded at least once.
    fn essential_ops(self) -> &'static [&'static str] {
        match self {
            Scenario::ScanStorm => &["scan_parent", "scan_child"],
            // A mixed dispatcher takes half a minute per parent: its parent scans may all fall
            // in the warm-up of a short run.
            Scenario::Mixed => &[
                "scan_child",
                "dashboard",
                "search",
                "bill_create",
                "bill_attach",
            ],
            Scenario::Lookup => &["lookup"],
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Virtual users.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    vus: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Fixed arrival rate, requests per second over all virtual users (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load before measuring (connections, caches, pools).
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// The gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// The admin who creates the benchmark users.
    #[arg(long, default_value = "admin")]
    username: String,
    /// Defaults to $TRACETRACK_ADMIN_PASSWORD (`make run` keeps it in .local/run/secrets.env).
    #[arg(long, env = "TRACETRACK_ADMIN_PASSWORD", hide_env_values = true)]
    password: String,
    /// Where sessions are cached between runs (mode 0600).
    #[arg(long, default_value = ".local/bench/sessions.json")]
    session_cache: PathBuf,
    /// At most this many distinct accounts per role (default: one per virtual user).
    #[arg(long)]
    users: Option<u32>,
    /// Multiplies the mixed scenario's think times (dispatchers 1 s, billers 3 s, admins 3 s).
    #[arg(long, default_value_t = 1.0)]
    think_scale: f64,
    /// Timeout of each request, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// This run's name in reports (default: the scenario, with the rate).
    #[arg(long)]
    label: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as a markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// The database the services write to: rows written per table inside the measured window
    /// (`pg_stat_user_tables`) go into the report, with the CPU time of each local process
    /// group, both per scan.
    #[arg(long, env = "TT_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Exit non-zero unless every essential operation succeeded at least once and no request
    /// got a 5xx or no answer (for CI smoke runs; not a speed check).
    #[arg(long)]
    check: bool,
}

/// Mean think times (ms) of the mixed scenario, before `--think-scale`.
const DISPATCHER_THINK_MS: f64 = 1000.0;
const BILLER_THINK_MS: f64 = 3000.0;
const ADMIN_THINK_MS: f64 = 3000.0;
/// How many full, unbilled parents the billers look for before a mixed run.
const PREFETCH_FULL_PARENTS: usize = 4000;

/// A product line as the scanners fill it.
#[derive(Debug)]
struct ScanLine {
    prefix: &'static str,
    child_prefix: char,
    capacity: u32,
}

const SCAN_LINES: [ScanLine; 2] = [
    ScanLine {
        prefix: "SB",
        child_prefix: 'L',
        capacity: 30,
    },
    ScanLine {
        prefix: "M444-",
        child_prefix: 'K',
        capacity: 15,
    },
];

/// Unregistered parent numbers (80000-99999 of each line), handed out once each.
struct ParentPool {
    free: Vec<(usize, u32)>,
    next: AtomicUsize,
}

struct NewParent {
    qr: String,
    line: &'static ScanLine,
    number: u32,
}

impl NewParent {
    fn child(&self, slot: u32) -> String {
        format!("{}{:05}{slot:02}", self.line.child_prefix, self.number)
    }
}

impl ParentPool {
    fn take(&self) -> Option<NewParent> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let (line, number) = *self.free.get(i)?;
        let line = &SCAN_LINES[line];
        Some(NewParent {
            qr: format!("{}{number:05}", line.prefix),
            line,
            number,
        })
    }

    fn left(&self) -> usize {
        self.free
            .len()
            .saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

/// The seeded bags, as `seed` numbers them: `SB00000…`, `M444-00000…`, `C000000000…`.
#[derive(Debug, Clone, Copy)]
struct Seeded {
    mustard: u64,
    moong: u64,
    children: u64,
}

impl Seeded {
    fn total(&self) -> u64 {
        self.mustard + self.moong + self.children
    }

    fn random(&self, rng: &mut StdRng) -> String {
        let i = rng.gen_range(0..self.total());
        if i < self.mustard {
            format!("SB{i:05}")
        } else if i < self.mustard + self.moong {
            format!("M444-{:05}", i - self.mustard)
        } else {
            format!("C{:09}", i - self.mustard - self.moong)
        }
    }
}

/// What every virtual user shares.
struct Shared {
    api: Api,
    measure_from: Instant,
    end: Instant,
    think_scale: f64,
    pool: Option<ParentPool>,
    out_of_parents: AtomicBool,
    full_parents: Mutex<VecDeque<String>>,
    seeded: Option<Seeded>,
    run_tag: String,
    bill_seq: AtomicU64,
    requests: AtomicU64,
}

/// One virtual user's tally; merged at the end.
struct Tally {
    ops: BTreeMap<&'static str, OpStats>,
    warmup_requests: u64,
    freshness: Histogram<u64>,
    parents_filled: u64,
    parents_skipped: u64,
    parent_waits: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ops: BTreeMap::new(),
            warmup_requests: 0,
            freshness: latency_histogram()?,
            parents_filled: 0,
            parents_skipped: 0,
            parent_waits: 0,
        })
    }

    fn record(&mut self, op: &'static str, took: Duration, a: &Answer) -> anyhow::Result<()> {
        let s = match self.ops.get_mut(op) {
            Some(s) => s,
            None => self.ops.entry(op).or_insert(OpStats::new()?),
        };
        s.hist.saturating_record(micros(took).max(1));
        if a.ok() {
            s.ok += 1;
            s.ok_hist.saturating_record(micros(took).max(1));
        } else {
            *s.errors.entry(a.code()).or_default() += 1;
            if a.is_5xx() {
                s.status_5xx += 1;
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        for (op, s) in other.ops {
            match self.ops.get_mut(op) {
                Some(mine) => mine.merge(&s)?,
                None => {
                    self.ops.insert(op, s);
                }
            }
        }
        self.warmup_requests += other.warmup_requests;
        self.freshness.add(&other.freshness)?;
        self.parents_filled += other.parents_filled;
        self.parents_skipped += other.parents_skipped;
        self.parent_waits += other.parent_waits;
        Ok(())
    }
}

struct Vu {
    shared: Arc<Shared>,
    token: String,
    rng: StdRng,
    /// Fixed rate: this user's next scheduled start, and the time between its requests.
    schedule: Option<(Instant, Duration)>,
    tally: Tally,
}

impl Vu {
    /// One measured request; `None` once the run is over.
    async fn call(
        &mut self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<Answer>> {
        let start = match &mut self.schedule {
            None => Instant::now(),
            Some((next, every)) => {
                let at = *next;
                *next += *every;
                if at >= self.shared.end {
                    return Ok(None);
                }
                tokio::time::sleep_until(at).await;
                at
            }
        };
        if start >= self.shared.end {
            return Ok(None);
        }
        let a = self
            .shared
            .api
            .send(method, path, Some(&self.token), body.as_ref())
            .await;
        let took = start.elapsed();
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        if start >= self.shared.measure_from {
            self.tally.record(op, took, &a)?;
        } else {
            self.tally.warmup_requests += 1;
        }
        Ok(Some(a))
    }

    /// Waits about `mean_ms` (uniformly 0.5-1.5 ×, times `--think-scale`) in closed-loop mode;
    /// false once the run is over.
    async fn think(&mut self, mean_ms: f64) -> bool {
        let now = Instant::now();
        if self.schedule.is_none() && mean_ms > 0.0 && self.shared.think_scale > 0.0 {
            let ms = mean_ms * self.shared.think_scale * self.rng.gen_range(0.5..1.5);
            let until = (now + Duration::from_secs_f64(ms / 1000.0)).min(self.shared.end);
            tokio::time::sleep_until(until).await;
        }
        Instant::now() < self.shared.end
    }

    /// One bodiless request and the think time after it; false when the run is over (the call
    /// found the run ended, or the think time ran past its end).
    async fn step(
        &mut self,
        op: &'static str,
        method: Method,
        path: &str,
        think_ms: f64,
    ) -> anyhow::Result<bool> {
        Ok(self.call(op, method, path, None).await?.is_some() && self.think(think_ms).await)
    }

    /// Scans new parents and fills them, until the run ends.
    async fn dispatcher(mut self, think_ms: f64, hand_over: bool) -> anyhow::Result<Tally> {
        let shared = self.shared.clone();
        let Some(pool) = shared.pool.as_ref() else {
            anyhow::bail!("no parent pool");
        };
        'parents: loop {
            let Some(parent) = pool.take() else {
                shared.out_of_parents.store(true, Ordering::Relaxed);
                break;
            };
            let Some(a) = self
                .call(
                    "scan_parent",
                    Method::POST,
                    "/api/v1/scans/parent",
                    Some(json!({ "qr": parent.qr })),
                )
                .await?
            else {
                break;
            };
            if !a.ok() || a.value().get("created").and_then(Value::as_bool) != Some(true) {
                if a.ok() {
                    self.tally.parents_skipped += 1;
                }
                if !self.think(think_ms).await {
                    break;
                }
                continue;
            }
            if !self.think(think_ms).await {
                break;
            }
            let mut linked = 0;
            for slot in 0..parent.line.capacity {
                let Some(a) = self
                    .call(
                        "scan_child",
                        Method::POST,
                        "/api/v1/scans/child",
                        Some(json!({ "parent_qr": parent.qr, "child_qr": parent.child(slot) })),
                    )
                    .await?
                else {
                    break 'parents;
                };
                linked += u32::from(a.ok());
                if !self.think(think_ms).await {
                    break 'parents;
                }
            }
            if linked == parent.line.capacity {
                self.tally.parents_filled += 1;
                if hand_over {
                    if let Ok(mut q) = shared.full_parents.lock() {
                        q.push_back(parent.qr);
                    }
                }
            }
        }
        Ok(self.tally)
    }

    /// A full parent for a bill, waiting for one when none is left; `None` once the run is over.
    async fn full_parent(&mut self) -> Option<String> {
        loop {
            let next = self
                .shared
                .full_parents
                .lock()
                .ok()
                .and_then(|mut q| q.pop_front());
            if next.is_some() {
                return next;
            }
            self.tally.parent_waits += 1;
            let until = (Instant::now() + Duration::from_millis(500)).min(self.shared.end);
            tokio::time::sleep_until(until).await;
            if Instant::now() >= self.shared.end {
                return None;
            }
        }
    }

    /// Creates bills of 3-10 parents, attaches full parents one by one, completes the bill and
    /// looks at the bill list.
    async fn biller(mut self, think_ms: f64) -> anyhow::Result<Tally> {
        let shared = self.shared.clone();
        'bills: loop {
            let n = shared.bill_seq.fetch_add(1, Ordering::Relaxed);
            let bill_id = format!("BENCH-{}-{n:06}", shared.run_tag);
            let capacity: u32 = self.rng.gen_range(3..=10);
            let destination = DEFAULT_AREAS[self.rng.gen_range(0..DEFAULT_AREAS.len())];
            let body = json!({
                "bill_id": bill_id,
                "capacity": capacity,
                "destination": destination,
                "vehicle_number": format!("RJ14-GA-{:04}", n % 10_000),
                "description": "benchmark",
            });
            let Some(a) = self
                .call("bill_create", Method::POST, "/api/v1/bills", Some(body))
                .await?
            else {
                break;
            };
            if !self.think(think_ms).await {
                break;
            }
            if !a.ok() {
                continue;
            }
            let path = format!("/api/v1/bills/{}/parents", enc(&bill_id));
            let mut attached = 0;
            while attached < capacity {
                let Some(parent) = self.full_parent().await else {
                    break 'bills;
                };
                let Some(a) = self
                    .call(
                        "bill_attach",
                        Method::POST,
                        &path,
                        Some(json!({ "parent_qr": parent })),
                    )
                    .await?
                else {
                    break 'bills;
                };
                attached += u32::from(a.ok());
                if !self.think(think_ms).await {
                    break 'bills;
                }
            }
            let path = format!("/api/v1/bills/{}/complete", enc(&bill_id));
            if !self
                .step("bill_complete", Method::POST, &path, think_ms)
                .await?
            {
                break;
            }
            if !self
                .step(
                    "bill_list",
                    Method::GET,
                    "/api/v1/bills?page_size=20",
                    think_ms,
                )
                .await?
            {
                break;
            }
        }
        Ok(self.tally)
    }

    /// Polls the dashboard, searches bags by QR prefix and by area, lists bills.
    async fn admin(mut self, think_ms: f64) -> anyhow::Result<Tally> {
        loop {
            let Some(a) = self
                .call("dashboard", Method::GET, "/api/v1/stats/dashboard", None)
                .await?
            else {
                break;
            };
            if let Some(f) = a.value().get("freshness_seconds").and_then(Value::as_f64) {
                self.tally
                    .freshness
                    .saturating_record((f.max(0.0) * 1_000_000.0) as u64);
            }
            if !self.think(think_ms).await {
                break;
            }
            let prefix = if self.rng.gen_bool(0.7) {
                format!("SB{:03}", self.rng.gen_range(0..800))
            } else {
                format!("M444-{:03}", self.rng.gen_range(0..800))
            };
            let path = format!("/api/v1/bags?q={}&page_size=50", enc(&prefix));
            if !self.step("search", Method::GET, &path, think_ms).await? {
                break;
            }
            let area = DEFAULT_AREAS[self.rng.gen_range(0..DEFAULT_AREAS.len())];
            let path = format!("/api/v1/bags?type=parent&area={area}&page_size=50");
            if !self.step("search", Method::GET, &path, think_ms).await? {
                break;
            }
            if !self
                .step(
                    "bill_list",
                    Method::GET,
                    "/api/v1/bills?page_size=50",
                    think_ms,
                )
                .await?
            {
                break;
            }
        }
        Ok(self.tally)
    }

    /// Looks up random seeded bags.
    async fn lookup(mut self) -> anyhow::Result<Tally> {
        let Some(seeded) = self.shared.seeded else {
            anyhow::bail!("no seeded bags to look up");
        };
        loop {
            let qr = seeded.random(&mut self.rng);
            let path = format!("/api/v1/bags/{}", enc(&qr));
            if self
                .call("lookup", Method::GET, &path, None)
                .await?
                .is_none()
            {
                break;
            }
        }
        Ok(self.tally)
    }

    async fn drive(self, role: Role, scenario: Scenario) -> anyhow::Result<Tally> {
        match (scenario, role) {
            (Scenario::ScanStorm, _) => self.dispatcher(0.0, false).await,
            (Scenario::Lookup, _) => self.lookup().await,
            (Scenario::Mixed, Role::Dispatcher) => self.dispatcher(DISPATCHER_THINK_MS, true).await,
            (Scenario::Mixed, Role::Biller) => self.biller(BILLER_THINK_MS).await,
            (Scenario::Mixed, Role::Admin) => self.admin(ADMIN_THINK_MS).await,
        }
    }
}

/// Virtual users per role: mixed is 60 % dispatchers, 30 % billers, 10 % admins (each at least
/// one when there are three or more VUs); the others are dispatchers only.
fn roles(scenario: Scenario, vus: u32) -> Vec<(Role, u32)> {
    if scenario != Scenario::Mixed {
        return vec![(Role::Dispatcher, vus)];
    }
    let mut billers = (f64::from(vus) * 0.3).round() as u32;
    let mut admins = (f64::from(vus) * 0.1).round() as u32;
    if vus >= 3 {
        billers = billers.max(1);
        admins = admins.max(1);
    }
    let admins = admins.min(vus);
    let billers = billers.min(vus - admins);
    vec![
        (Role::Dispatcher, vus - billers - admins),
        (Role::Biller, billers),
        (Role::Admin, admins),
    ]
}

/// The registered numbers among 80000-99999 of a line, through the prefix search.
async fn registered_numbers(
    api: &Api,
    token: &str,
    line: &ScanLine,
) -> anyhow::Result<HashSet<u32>> {
    let mut used = HashSet::new();
    let first_digit = SEED_PARENT_NUMBERS / 10_000;
    for digit in first_digit..=9 {
        let query = format!("q={}&type=parent", enc(&format!("{}{digit}", line.prefix)));
        let what = "searching registered parents";
        search_pages(api, token, &query, what, usize::MAX, |bags| {
            for b in bags {
                if let Some(n) = b
                    .get("qr")
                    .and_then(Value::as_str)
                    .and_then(|q| q.strip_prefix(line.prefix))
                    .and_then(|d| d.parse::<u32>().ok())
                {
                    used.insert(n);
                }
            }
            true
        })
        .await?;
    }
    Ok(used)
}

/// Pages through the bag search `query` (200 bags a page, at most `max_pages` pages), giving
/// each page's bags to `page` until it answers false (enough) or the pages end.
async fn search_pages(
    api: &Api,
    token: &str,
    query: &str,
    what: &str,
    max_pages: usize,
    mut page: impl FnMut(&[Value]) -> bool,
) -> anyhow::Result<()> {
    let mut page_token = String::new();
    for _ in 0..max_pages {
        let path = format!(
            "/api/v1/bags?{query}&page_size=200&page_token={}",
            enc(&page_token)
        );
        let v = api
            .get_patiently(&path, Some(token))
            .await
            .check(what)?
            .value();
        let bags = v.get("items").and_then(Value::as_array);
        if !page(bags.map(Vec::as_slice).unwrap_or_default()) {
            break;
        }
        match v.get("next_page_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => page_token = t.to_owned(),
            _ => break,
        }
    }
    Ok(())
}

async fn parent_pool(api: &Api, token: &str) -> anyhow::Result<ParentPool> {
    let mut free = Vec::new();
    for (i, line) in SCAN_LINES.iter().enumerate() {
        let used = registered_numbers(api, token, line).await?;
        free.extend(
            (SEED_PARENT_NUMBERS..=99_999)
                .filter(|n| !used.contains(n))
                .map(|n| (i, n)),
        );
    }
    Ok(ParentPool {
        free,
        next: AtomicUsize::new(0),
    })
}

async fn exists(api: &Api, token: &str, qr: &str) -> anyhow::Result<bool> {
    let a = api
        .get_patiently(&format!("/api/v1/bags/{}", enc(qr)), Some(token))
        .await;
    match a.status {
        200 => Ok(true),
        404 => Ok(false),
        _ => anyhow::bail!("looking up {qr}: HTTP {} {}", a.status, a.code()),
    }
}

/// How many of `qr(0), qr(1), …` exist, assuming they were created as a prefix of that sequence
/// (as `seed` numbers its bags): a doubling search, then a binary search.
async fn prefix_count(
    api: &Api,
    token: &str,
    limit: u64,
    qr: impl Fn(u64) -> String,
) -> anyhow::Result<u64> {
    if !exists(api, token, &qr(0)).await? {
        return Ok(0);
    }
    let (mut lo, mut hi) = (0u64, 1u64); // qr(lo) exists; qr(hi) is unknown
    while hi < limit && exists(api, token, &qr(hi)).await? {
        lo = hi;
        hi = (hi * 2).min(limit);
    }
    if hi >= limit && exists(api, token, &qr(limit - 1)).await? {
        return Ok(limit);
    }
    // qr(lo) exists, qr(hi) does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if exists(api, token, &qr(mid)).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo + 1)
}

async fn seeded_bags(api: &Api, token: &str) -> anyhow::Result<Seeded> {
    let lines = u64::from(SEED_PARENT_NUMBERS);
    let seeded = Seeded {
        mustard: prefix_count(api, token, lines, |n| format!("SB{n:05}")).await?,
        moong: prefix_count(api, token, lines, |n| format!("M444-{n:05}")).await?,
        children: prefix_count(api, token, 1_000_000_000, |n| format!("C{n:09}")).await?,
    };
    anyhow::ensure!(
        seeded.total() > 0,
        "no seeded bags found (SB00000, M444-00000, C000000000): run `tracetrack-bench seed` first"
    );
    Ok(seeded)
}

/// Full parents without a bill, newest first, for the billers.
async fn prefetch_full_parents(api: &Api, token: &str, want: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let query = "type=parent&billed=false";
    search_pages(api, token, query, "searching full parents", 60, |bags| {
        for b in bags {
            let full = b.get("status").and_then(Value::as_str) == Some("full");
            let billed = b.get("bill_id").is_some_and(|x| !x.is_null());
            let frozen = b.get("frozen").and_then(Value::as_bool) == Some(true);
            if full && !billed && !frozen {
                if let Some(qr) = b.get("qr").and_then(Value::as_str) {
                    out.push(qr.to_owned());
                }
            }
        }
        out.len() < want
    })
    .await?;
    out.truncate(want);
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds > 0, "--seconds must be positive");
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
    }
    let label = args.label.clone().unwrap_or_else(|| match args.rate {
        Some(r) => format!("{}@{r:.0}/s", args.scenario.name()),
        None => args.scenario.name().to_owned(),
    });
    let api = Api::new(&args.base_url, Duration::from_millis(args.timeout_ms))?;
    anyhow::ensure!(
        api.healthy().await,
        "the gateway at {} does not answer /healthz",
        args.base_url
    );
    let accounts =
        Arc::new(Accounts::open(&api, &args.username, &args.password, &args.session_cache).await?);
    let admin = accounts.admin_token().to_owned();

    // Accounts: one per virtual user (or --users per role), created when missing.
    let roles = roles(args.scenario, args.vus);
    let mut sessions: BTreeMap<Role, Vec<Session>> = BTreeMap::new();
    let mut users_by_role = BTreeMap::new();
    let mut vus_by_role = BTreeMap::new();
    for (role, vus) in &roles {
        if *vus == 0 {
            continue;
        }
        let n = (*vus).min(args.users.unwrap_or(u32::MAX)).max(1);
        accounts.ensure(*role, n as usize).await?;
        sessions.insert(*role, accounts.sessions(*role, n as usize).await?);
        users_by_role.insert(role.name().to_owned(), n);
        vus_by_role.insert(role.name().to_owned(), *vus);
    }

    let mut notes = Vec::new();
    let pool = match args.scenario {
        Scenario::ScanStorm | Scenario::Mixed => {
            let pool = parent_pool(&api, &admin).await?;
            eprintln!(
                "run: {} unregistered parent numbers left (80000-99999 of each line)",
                count(pool.free.len() as u64)
            );
            anyhow::ensure!(
                !pool.free.is_empty(),
                "no parent numbers left to scan (80000-99999 of both lines are registered): use a \
                 fresh database"
            );
            Some(pool)
        }
        Scenario::Lookup => None,
    };
    let mut full = VecDeque::new();
    if args.scenario == Scenario::Mixed {
        let found = prefetch_full_parents(&api, &admin, PREFETCH_FULL_PARENTS).await?;
        eprintln!(
            "run: {} full parents without a bill found for the billers",
            count(found.len() as u64)
        );
        notes.push(format!(
            "billers start with {} full unbilled parents found by search, then take the parents \
             the dispatchers fill",
            found.len()
        ));
        full.extend(found);
    }
    let seeded = if args.scenario == Scenario::Lookup {
        let s = seeded_bags(&api, &admin).await?;
        eprintln!(
            "run: looking up {} seeded bags ({} mustard parents, {} moong parents, {} children)",
            count(s.total()),
            count(s.mustard),
            count(s.moong),
            count(s.children)
        );
        Some(s)
    } else {
        None
    };

    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup_seconds);
    let end = measure_from + Duration::from_secs(args.seconds);
    let started_at = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let shared = Arc::new(Shared {
        api: api.clone(),
        measure_from,
        end,
        think_scale: args.think_scale,
        pool,
        out_of_parents: AtomicBool::new(false),
        full_parents: Mutex::new(full),
        seeded,
        run_tag: format!("{:X}", started_at.timestamp_millis()),
        bill_seq: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    eprintln!(
        "run: {label}: {} VUs against {}, {} s warm-up + {} s measured, {}",
        args.vus,
        args.base_url,
        args.warmup_seconds,
        args.seconds,
        match args.rate {
            Some(r) => format!("fixed rate {r} req/s"),
            None => "closed loop".to_owned(),
        }
    );

    // The cost of the measured window: snapshots when it opens and when it closes.
    let probe = match &args.database_url {
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("--database-url")?;
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(measure_from).await;
                let (rows, cpu) = (probe::table_writes(&pool).await?, probe::cpu_seconds());
                tokio::time::sleep_until(end).await;
                let (rows_after, cpu_after) =
                    (probe::table_writes(&pool).await?, probe::cpu_seconds());
                anyhow::Ok(probe::Cost {
                    rows_written: probe::writes_between(&rows, &rows_after),
                    cpu_seconds: probe::cpu_between(&cpu, &cpu_after),
                })
            }))
        }
        None => None,
    };
    let cpu_before = own_cpu_seconds();
    let wall_before = Instant::now();
    let mut handles = Vec::new();
    let mut vu_index = 0u32;
    for (role, vus) in &roles {
        let Some(role_sessions) = sessions.get(role) else {
            continue;
        };
        for j in 0..*vus {
            let session = &role_sessions[j as usize % role_sessions.len()];
            let schedule = args.rate.map(|r| {
                let first = start + Duration::from_secs_f64(f64::from(vu_index) / r);
                (first, Duration::from_secs_f64(f64::from(args.vus) / r))
            });
            let vu = Vu {
                shared: shared.clone(),
                token: session.token.clone(),
                rng: StdRng::seed_from_u64(u64::from(vu_index) ^ 0x5eed),
                schedule,
                tally: Tally::new()?,
            };
            let (role, scenario) = (*role, args.scenario);
            handles.push(tokio::spawn(async move {
                if let Some((_, _)) = vu.schedule {
                    tokio::time::sleep_until(start).await;
                } else {
                    // Closed loop: spread the first requests over the first 100 ms.
                    let offset = Duration::from_micros(u64::from(vu_index % 1000) * 100);
                    tokio::time::sleep_until(start + offset).await;
                }
                vu.drive(role, scenario).await
            }));
            vu_index += 1;
        }
    }

    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(5), Duration::from_secs(5));
            loop {
                tick.tick().await;
                let n = shared.requests.load(Ordering::Relaxed);
                let left = shared.pool.as_ref().map(ParentPool::left);
                eprintln!(
                    "run: {:>4.0} s  {:>10} requests  {:>7} req/s{}",
                    start.elapsed().as_secs_f64(),
                    count(n),
                    count((n - last) / 5),
                    left.map(|l| format!("  ({} parent numbers left)", count(l as u64)))
                        .unwrap_or_default()
                );
                last = n;
            }
        })
    };

    let mut total = Tally::new()?;
    for h in handles {
        total.merge(h.await.context("a virtual user panicked")??)?;
    }
    progress.abort();
    let cost = match probe {
        Some(p) => Some(p.await.context("the cost probe panicked")??),
        None => None,
    };
    let generator_cpu_cores = match (cpu_before, own_cpu_seconds()) {
        (Some(a), Some(b)) => {
            let wall = wall_before.elapsed().as_secs_f64();
            (wall > 0.0).then(|| ((b - a) / wall * 100.0).round() / 100.0)
        }
        _ => None,
    };

    let window = args.seconds as f64;
    let operations: Vec<_> = total
        .ops
        .iter()
        .map(|(op, s)| s.report(op, window))
        .collect();
    let mut all = OpStats::new()?;
    for s in total.ops.values() {
        all.merge(s)?;
    }
    if total.parents_filled > 0 || total.parents_skipped > 0 {
        notes.push(format!(
            "{} parents filled; {} skipped (registered meanwhile)",
            count(total.parents_filled),
            count(total.parents_skipped)
        ));
    }
    if total.parent_waits > 0 {
        notes.push(format!(
            "billers waited {} times (500 ms each) for a full parent to attach",
            count(total.parent_waits)
        ));
    }
    if shared.out_of_parents.load(Ordering::Relaxed) {
        notes.push(
            "ran out of parent numbers (80000-99999 of both lines): use a fresh database".into(),
        );
    }
    if args
        .users
        .is_some_and(|u| roles.iter().any(|(_, v)| *v > u))
    {
        notes.push("several virtual users share an account (--users)".into());
    }
    notes.push(format!(
        "{} warm-up requests not counted",
        count(total.warmup_requests)
    ));
    let report = RunReport {
        scenario: args.scenario.name().to_owned(),
        label,
        base_url: args.base_url.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        mode: if args.rate.is_some() {
            "fixed-rate".into()
        } else {
            "closed-loop".into()
        },
        rate_per_s: args.rate,
        vus: args.vus,
        vus_by_role,
        users_by_role,
        warmup_seconds: args.warmup_seconds,
        window_seconds: window,
        think_scale: args.think_scale,
        operations,
        total: all.report("all", window),
        dashboard_freshness_ms: Latency::of(&total.freshness),
        generator_cpu_cores,
        cost,
        notes,
    };

    let md = report.markdown();
    println!("{md}");
    if let Some(p) = &args.json {
        write(p, &serde_json::to_vec_pretty(&report)?)?;
    }
    if let Some(p) = &args.markdown {
        write(p, md.as_bytes())?;
    }
    if args.check {
        let failures = check(&report, args.scenario);
        for f in &failures {
            eprintln!("check failed: {f}");
        }
        anyhow::ensure!(
            failures.is_empty(),
            "{}: {} checks failed",
            report.label,
            failures.len()
        );
        eprintln!("check: {} passed", report.label);
    }
    Ok(())
}

/// This process's CPU time (user + system) in seconds, from /proc (Linux; 100 ticks a second).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn write(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The smoke checks: it works, not how fast.
fn check(report: &RunReport, scenario: Scenario) -> Vec<String> {
    let mut failures = Vec::new();
    for op in scenario.essential_ops() {
        match report.op(op) {
            Some(o) if o.ok > 0 => {}
            Some(o) => failures.push(format!("{op}: no success in {} requests", o.count)),
            None => failures.push(format!("{op}: never ran")),
        }
    }
    for o in &report.operations {
        if o.status_5xx > 0 {
            failures.push(format!(
                "{}: {} answers with a 5xx status",
                o.op, o.status_5xx
            ));
        }
        let unanswered: u64 = ["timeout", "transport"]
            .iter()
            .filter_map(|c| o.errors.get(*c))
            .sum();
        if unanswered > 0 {
            failures.push(format!("{}: {unanswered} requests got no answer", o.op));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let a = own_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(own_cpu_seconds().unwrap() >= a);
    }

    #[test]
    fn mixed_is_60_30_10() {
        let r = roles(Scenario::Mixed, 1000);
        assert_eq!(
            r,
            vec![
                (Role::Dispatcher, 600),
                (Role::Biller, 300),
                (Role::Admin, 100)
            ]
        );
        let r = roles(Scenario::Mixed, 4);
        assert_eq!(r.iter().map(|(_, n)| n).sum::<u32>(), 4);
        assert!(r.iter().all(|(_, n)| *n >= 1));
        assert_eq!(roles(Scenario::Lookup, 7), vec![(Role::Dispatcher, 7)]);
    }

    #[test]
    fn new_parents_and_children_are_valid_qrs() {
        let pool = ParentPool {
            free: vec![(0, 80_000), (1, 99_999)],
            next: AtomicUsize::new(0),
        };
        let a = pool.take().unwrap();
        assert_eq!(a.qr, "SB80000");
        assert_eq!(a.child(29), "L8000029");
        let b = pool.take().unwrap();
        assert_eq!(b.qr, "M444-99999");
        assert_eq!(b.child(0), "K9999900");
        assert!(pool.take().is_none());
        for qr in [a.child(0), b.child(14)] {
            assert!(tracetrack_domain::qr::normalize(&qr).is_ok(), "{qr}");
        }
    }

    #[test]
    fn random_seeded_bags_stay_in_range() {
        let s = Seeded {
            mustard: 3,
            moong: 2,
            children: 5,
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let qr = s.random(&mut rng);
            assert!(
                ["SB00000", "SB00001", "SB00002", "M444-00000", "M444-00001"]
                    .contains(&qr.as_str())
                    || (qr.starts_with('C') && qr[1..].parse::<u64>().unwrap() < 5),
                "{qr}"
            );
        }
    }
}
