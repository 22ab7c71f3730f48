//! `scan-load`: C concurrent scanners, each filling fresh mustard parents through the scan
//! service (ScanParent, then ScanChild of N new children, then the next parent), for T seconds
//! after a warm-up; every ScanChild's latency goes into an HDR histogram.
//!
//! Parents are `SB` + 5 digits from `--first-parent` up (80000-99999 by default, a range `seed`
//! never uses), handed out one by one to whichever scanner asks next. Before starting, the
//! parents earlier runs registered are looked up through bag-registry's GetBags and the run
//! starts after the last of them; a parent that exists all the same (ScanParent answers
//! `created = false`) is skipped. So its children, `L` + the parent's number + the slot, are
//! always new too, and every run can be repeated on the same database until the range is used
//! up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use tracetrack_common::client;
use tracetrack_common::AppError;
use tracetrack_domain::DEFAULT_AREAS;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::GetBagsRequest;
use tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient;
use tracetrack_proto::scan::v1::{ScanChildRequest, ScanParentRequest};
use tracetrack_proto::stats::v1::stats_service_client::StatsServiceClient;
use tracetrack_proto::stats::v1::GetDashboardRequest;
use uuid::Uuid;

use crate::report::{count, latency_histogram, latency_table};
use crate::seed::SEED_PARENT_NUMBERS;
use crate::session::{describe, open, LoginArgs};

/// The highest 5-digit parent number.
const LAST_PARENT: u32 = 99_999;
/// A mustard parent's capacity.
const MUSTARD_CAPACITY: u32 = 30;
/// GetBags takes at most this many QRs.
const GET_BAGS_MAX: u32 = 500;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    login: LoginArgs,
    /// The scan service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    scan_url: String,
    /// bag-registry's gRPC endpoint (only to find the parents earlier runs used).
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    registry_url: String,
    /// Concurrent scanners (each waits for an answer before its next scan).
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds of load before measuring starts (connection set-up, caches, pool growth).
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Children scanned into each parent before moving to the next.
    #[arg(long, default_value_t = MUSTARD_CAPACITY, value_parser = clap::value_parser!(u32).range(1..=i64::from(MUSTARD_CAPACITY)))]
    children_per_parent: u32,
    /// First parent number (`SB` + 5 digits) to scan; numbers below 80000 are the seed's.
    #[arg(long, default_value_t = SEED_PARENT_NUMBERS, value_parser = clap::value_parser!(u32).range(0..=i64::from(LAST_PARENT)))]
    first_parent: u32,
    /// Area of new parents (admins and billers must name one; dispatchers scan in their own).
    /// Default: the default areas in turn.
    #[arg(long)]
    area: Option<String>,
    /// Send no idempotency-key (the web client sends one with every scan).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// A burst: stop after this many measured ScanChild calls (or at `--seconds`, whichever is
    /// first). With `--stats-url`, the usual way to measure consumer lag after 10,000 scans:
    /// `--scans 10000 --warmup-seconds 0 --seconds 600 --stats-url http://127.0.0.1:50055`.
    #[arg(long)]
    scans: Option<u64>,
    /// The stats service's gRPC endpoint: when given, the dashboard is sampled during the run
    /// (its `freshness_seconds`) and polled afterwards until it counts every successful scan of
    /// the run, which gives the consumer lag after the last acknowledged scan. Log in as an admin
    /// (dispatchers see only their area).
    #[arg(long)]
    stats_url: Option<String>,
}

/// What every scanner shares.
struct Shared {
    client: ScanServiceClient<Channel>,
    token: String,
    area: Option<String>,
    idempotency_key: bool,
    children_per_parent: u32,
    next_parent: AtomicU32,
    /// Child scans left in a `--scans` burst (unlimited: i64::MAX).
    budget: AtomicI64,
    measure_from: Instant,
    end: Instant,
}

/// One scanner's tally; merged at the end.
struct Tally {
    child: Histogram<u64>,
    parent: Histogram<u64>,
    ok: u64,
    already_linked: u64,
    errors: BTreeMap<String, u64>,
    parent_errors: BTreeMap<String, u64>,
    warmup_calls: u64,
    warmup_errors: u64,
    parents_scanned: u64,
    parents_skipped: u64,
    ran_out_of_parents: bool,
    last_answer: Instant,
}

impl Tally {
    fn new(now: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            child: latency_histogram()?,
            parent: latency_histogram()?,
            ok: 0,
            already_linked: 0,
            errors: BTreeMap::new(),
            parent_errors: BTreeMap::new(),
            warmup_calls: 0,
            warmup_errors: 0,
            parents_scanned: 0,
            parents_skipped: 0,
            ran_out_of_parents: false,
            last_answer: now,
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.child.add(&other.child)?;
        self.parent.add(&other.parent)?;
        self.ok += other.ok;
        self.already_linked += other.already_linked;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, n) in other.parent_errors {
            *self.parent_errors.entry(code).or_default() += n;
        }
        self.warmup_calls += other.warmup_calls;
        self.warmup_errors += other.warmup_errors;
        self.parents_scanned += other.parents_scanned;
        self.parents_skipped += other.parents_skipped;
        self.ran_out_of_parents |= other.ran_out_of_parents;
        self.last_answer = self.last_answer.max(other.last_answer);
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn code_of(status: &tonic::Status) -> String {
    AppError::from_status(status).code.as_str().to_owned()
}

impl Shared {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let key = self
            .idempotency_key
            .then(|| format!("bench-{}", Uuid::new_v4()));
        client::request(message, Some(&self.token), key.as_deref())
    }

    async fn scanner(self: Arc<Self>, worker: u32) -> anyhow::Result<Tally> {
        let mut client = self.client.clone();
        let mut tally = Tally::new(self.measure_from)?;
        'parents: while Instant::now() < self.end {
            let number = self.next_parent.fetch_add(1, Ordering::Relaxed);
            if number > LAST_PARENT {
                tally.ran_out_of_parents = true;
                break;
            }
            let parent_qr = format!("SB{number:05}");
            let area = match &self.area {
                Some(a) => a.clone(),
                None => DEFAULT_AREAS[(number as usize + worker as usize) % DEFAULT_AREAS.len()]
                    .to_owned(),
            };
            let started = Instant::now();
            let answer = client
                .scan_parent(self.request(ScanParentRequest {
                    qr: parent_qr.clone(),
                    area,
                }))
                .await;
            let took = started.elapsed();
            match answer {
                Ok(r) if r.get_ref().created => {
                    tally.parents_scanned += 1;
                    if started >= self.measure_from {
                        tally.parent.saturating_record(micros(took));
                    }
                }
                Ok(_) => {
                    tally.parents_skipped += 1;
                    continue;
                }
                Err(status) => {
                    *tally.parent_errors.entry(code_of(&status)).or_default() += 1;
                    continue;
                }
            }
            for slot in 0..self.children_per_parent {
                let started = Instant::now();
                if started >= self.end {
                    break 'parents;
                }
                if started >= self.measure_from && self.budget.fetch_sub(1, Ordering::Relaxed) <= 0
                {
                    break 'parents;
                }
                let answer = client
                    .scan_child(self.request(ScanChildRequest {
                        parent_qr: parent_qr.clone(),
                        child_qr: format!("L{number:05}{slot:02}"),
                    }))
                    .await;
                let answered = Instant::now();
                if started < self.measure_from {
                    tally.warmup_calls += 1;
                    tally.warmup_errors += u64::from(answer.is_err());
                    continue;
                }
                tally.last_answer = answered;
                tally.child.saturating_record(micros(answered - started));
                match answer {
                    Ok(r) if r.get_ref().already_linked => tally.already_linked += 1,
                    Ok(_) => tally.ok += 1,
                    Err(status) => *tally.errors.entry(code_of(&status)).or_default() += 1,
                }
            }
        }
        Ok(tally)
    }
}

/// The first parent number from `from` on after the last one already registered, looked up
/// 500 at a time until a block has none.
async fn first_unused_parent(url: &str, token: &str, from: u32) -> anyhow::Result<u32> {
    let mut registry = BagRegistryServiceClient::new(open(url, Duration::from_secs(10))?);
    let mut first_unused = from;
    let mut block = from;
    while block <= LAST_PARENT {
        let last = (block + GET_BAGS_MAX - 1).min(LAST_PARENT);
        let qrs = (block..=last).map(|n| format!("SB{n:05}")).collect();
        let found = registry
            .get_bags(client::request(GetBagsRequest { qrs }, Some(token), None))
            .await
            .map_err(|s| anyhow::anyhow!("GetBags at {url}: {}", describe(&s)))?
            .into_inner()
            .bags;
        if found.is_empty() {
            break;
        }
        for bag in found {
            if let Some(n) = bag
                .qr
                .strip_prefix("SB")
                .and_then(|d| d.parse::<u32>().ok())
            {
                first_unused = first_unused.max(n + 1);
            }
        }
        block = last + 1;
    }
    Ok(first_unused)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let session = args.login.login().await?;
    let first_parent =
        first_unused_parent(&args.registry_url, &session.token, args.first_parent).await?;
    let channel = open(&args.scan_url, Duration::from_millis(args.timeout_ms))?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup_seconds);
    let shared = Arc::new(Shared {
        client: ScanServiceClient::new(channel),
        token: session.token,
        area: args.area.clone(),
        idempotency_key: !args.no_idempotency_key,
        children_per_parent: args.children_per_parent,
        next_parent: AtomicU32::new(first_parent),
        budget: AtomicI64::new(
            args.scans
                .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        ),
        measure_from,
        end: measure_from + Duration::from_secs(args.seconds),
    });
    eprintln!(
        "scan-load: {} scanners as {} ({}, user {}) against {}, {} s warm-up + {} s measured, {} \
         children per parent from SB{:05}, idempotency keys {}",
        args.concurrency,
        args.login.username,
        session.role,
        session.user_id,
        args.scan_url,
        args.warmup_seconds,
        args.seconds,
        args.children_per_parent,
        first_parent,
        if args.no_idempotency_key { "off" } else { "on" },
    );

    let watcher = match &args.stats_url {
        Some(url) => Some(LagWatcher::start(url, &shared.token, args.timeout_ms).await?),
        None => None,
    };
    let scanners: Vec<_> = (0..args.concurrency)
        .map(|w| tokio::spawn(shared.clone().scanner(w)))
        .collect();
    let mut total = Tally::new(measure_from)?;
    for s in scanners {
        total.merge(s.await.context("a scanner panicked")??)?;
    }

    let window = total
        .last_answer
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let measured = total.child.len();
    let errors: u64 = total.errors.values().sum();
    println!(
        "scan-load: concurrency {}, measured window {window:.1} s (after {} s warm-up), scan \
         service {}",
        args.concurrency, args.warmup_seconds, args.scan_url
    );
    println!(
        "  ScanChild   {} calls: {} ok, {} already_linked, {} errors; {:.1} calls/s",
        count(measured),
        count(total.ok),
        count(total.already_linked),
        count(errors),
        if window > 0.0 {
            measured as f64 / window
        } else {
            0.0
        },
    );
    println!("{}", latency_table("ScanChild", &total.child));
    println!("{}", latency_table("ScanParent", &total.parent));
    println!(
        "  parents     {} created and filled, {} skipped (already existed); warm-up: {} \
         ScanChild calls ({} errors), not counted",
        count(total.parents_scanned),
        count(total.parents_skipped),
        count(total.warmup_calls),
        count(total.warmup_errors),
    );
    if total.errors.is_empty() && total.parent_errors.is_empty() {
        println!("  errors by code: none");
    } else {
        println!("  errors by code:");
        for (code, n) in &total.errors {
            println!("    ScanChild   {code:<28} {:>9}", count(*n));
        }
        for (code, n) in &total.parent_errors {
            println!("    ScanParent  {code:<28} {:>9}", count(*n));
        }
    }
    if let Some(w) = watcher {
        w.finish(total.ok, total.last_answer).await?;
    }
    if total.ran_out_of_parents {
        println!(
            "  warning: ran out of parent numbers (up to SB{LAST_PARENT}); pass a lower \
             --first-parent or use a fresh database"
        );
    }
    Ok(())
}

/// Samples the dashboard's freshness during a run, then waits for the dashboard to count the
/// run's scans: the consumer lag after the last acknowledged scan.
struct LagWatcher {
    client: StatsServiceClient<Channel>,
    token: String,
    baseline: i64,
    stop: tokio::sync::watch::Sender<bool>,
    sampler: tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>,
}

async fn scans_today(
    client: &mut StatsServiceClient<Channel>,
    token: &str,
) -> anyhow::Result<(i64, f64)> {
    let d = client
        .get_dashboard(client::request(
            GetDashboardRequest::default(),
            Some(token),
            None,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("GetDashboard: {}", describe(&s)))?
        .into_inner();
    Ok((d.scans_today, d.freshness_seconds))
}

impl LagWatcher {
    async fn start(url: &str, token: &str, timeout_ms: u64) -> anyhow::Result<Self> {
        let mut client = StatsServiceClient::new(open(url, Duration::from_millis(timeout_ms))?);
        let (baseline, _) = scans_today(&mut client, token).await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let mut sampling = client.clone();
        let sample_token = token.to_owned();
        let sampler = tokio::spawn(async move {
            let mut freshness = latency_histogram()?;
            loop {
                if let Ok((_, f)) = scans_today(&mut sampling, &sample_token).await {
                    freshness.saturating_record((f * 1000.0) as u64);
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            Ok(freshness)
        });
        Ok(Self {
            client,
            token: token.to_owned(),
            baseline,
            stop,
            sampler,
        })
    }

    /// Polls every 20 ms, for at most 10 minutes, until the dashboard counts `ok` more scans.
    async fn finish(mut self, ok: u64, last_answer: Instant) -> anyhow::Result<()> {
        let want = self.baseline + i64::try_from(ok).unwrap_or(i64::MAX);
        let deadline = Instant::now() + Duration::from_secs(600);
        let (seen, freshness) = loop {
            let (n, f) = scans_today(&mut self.client, &self.token).await?;
            if n >= want || Instant::now() > deadline {
                break (n, f);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let lag = last_answer.elapsed();
        let _ = self.stop.send(true);
        let during = self.sampler.await.context("the sampler panicked")??;
        if seen < want {
            println!(
                "  stats: the dashboard counts {} of the run's {} scans after 10 minutes",
                count(u64::try_from(seen - self.baseline).unwrap_or(0)),
                count(ok)
            );
        } else {
            println!(
                "  stats: the dashboard counted all {} scans {:.0} ms after the last one was \
                 acknowledged (polled every 20 ms); freshness then {:.0} ms",
                count(ok),
                lag.as_secs_f64() * 1000.0,
                freshness * 1000.0
            );
        }
        if !during.is_empty() {
            println!(
                "  stats: dashboard freshness during the run ({} samples, every 250 ms): p50 {} \
                 ms, p99 {} ms, max {} ms",
                during.len(),
                during.value_at_quantile(0.5),
                during.value_at_quantile(0.99),
                during.max()
            );
        }
        Ok(())
    }
}
