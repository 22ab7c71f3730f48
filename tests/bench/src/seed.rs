//! `seed`: streams a deterministic, realistic population of bags to bag-registry's ImportBags.
//!
//! The population, for `--bags N` (N = 1,000,000 shown):
//! - 4.5 % mustard parents (`SB` + 5 digits, 45,000) and 2 % moong parents (`M444-` + 5 digits,
//!   20,000), each filled with a uniformly drawn 0..=capacity children (so some are full, some
//!   empty, most partly filled), in a random area among the default ones;
//! - the rest are children `C` + 9 digits: linked ones follow their parent in the stream (so a
//!   parent is always in an earlier batch than, or the same batch as, its children); the unlinked
//!   ones (about 11 %) are spread evenly through the stream, each in a random area.
//!
//! A line's parent QRs have only 5 digits, and numbers 80000-99999 are kept for the load runs,
//! so each line has at most 80,000 seeded parents. Past about 1.8 million bags that cap binds:
//! then a share of the parents is drawn full (the rest still uniformly) so that about 88 % of the
//! children stay linked, as at 1 M. At 4,000,000 bags: 80,000 parents of each line, 88 % of them
//! full, 3.38 M linked and 0.46 M unlinked children. Below the cap nothing changes (the same
//! random draws), so a database seeded before keeps matching.
//!
//! The same `--bags` and `--rng-seed` give the same bags, so a re-run changes nothing (ImportBags
//! leaves existing bags alone and counts them as unchanged); when the last parent and the last
//! child of the plan exist already, the import is skipped altogether.
//!
//! Then, through the gateway's HTTP API: the benchmark users (dispatchers, billers, admins; see
//! `accounts`), logged in once so that `run` finds their sessions cached; bills of full seeded
//! parents (half of them completed), when the gateway has billing; and a check of the seeded
//! counts on the dashboard and of sample bags.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracetrack_common::client;
use tracetrack_domain::qr::ProductLine;
use tracetrack_domain::DEFAULT_AREAS;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::{BagType, GetBagsRequest, ImportBag, ImportBagsRequest};

use crate::accounts::{concurrently, Accounts, Role, Session};
use crate::api::{enc, Api};
use crate::report::{count, errors_cell, rate};
use crate::session::{describe, open, LoginArgs};

/// Parent numbers below this are the seed's; the ones from here up are for `run` and `scan-load`.
pub const SEED_PARENT_NUMBERS: u32 = 80_000;
/// When the parent cap binds, parents are drawn full often enough that this share of the
/// children is linked (about what uniform filling gives at 1 M bags).
const TARGET_LINKED_SHARE: f64 = 0.88;
/// bag-registry's limit on one ImportBags message.
const MAX_BATCH: usize = 50_000;
/// Parents per 1,000 bags, per line.
const MUSTARD_PER_MILLE: u64 = 45;
const MOONG_PER_MILLE: u64 = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    login: LoginArgs,
    /// bag-registry's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    registry_url: String,
    /// How many bags (parents and children) to import.
    #[arg(long, default_value_t = 1_000_000)]
    bags: u64,
    /// Bags per ImportBags message (each is one transaction on the server).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    batch_size: u32,
    /// Seed of the generator: the same seed and --bags give the same bags.
    #[arg(long, default_value_t = 42)]
    rng_seed: u64,
    /// Concurrent ImportBags calls. Batches end at a parent's boundary (a parent and its
    /// children are always in the same batch), so the streams never depend on each other.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    import_streams: u32,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2)]
    progress_secs: u64,
    /// Import even when the plan's last bags exist already.
    #[arg(long)]
    force: bool,
    /// Only import bags (no users, bills or API verification; the login still goes through the
    /// gateway, `--base-url`).
    #[arg(long)]
    no_http: bool,
    /// Where the benchmark users' sessions are cached for `run` (mode 0600).
    #[arg(long, default_value = ".local/bench/sessions.json")]
    session_cache: std::path::PathBuf,
    /// Benchmark dispatchers to create (bench-d0001…, over the areas in turn).
    #[arg(long, default_value_t = 600)]
    dispatchers: u32,
    /// Benchmark billers to create (bench-b0001…).
    #[arg(long, default_value_t = 300)]
    billers: u32,
    /// Benchmark admins to create (bench-a0001…).
    #[arg(long, default_value_t = 100)]
    admins: u32,
    /// Bills to create of full seeded parents (every other one completed).
    #[arg(long, default_value_t = 200)]
    bills: u32,
    /// Parents per seeded bill.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=500))]
    bill_size: u32,
    /// How long to wait for the dashboard to show the seeded totals.
    #[arg(long, default_value_t = 180)]
    verify_timeout_secs: u64,
}

/// A product line as the seed writes its parents' QRs.
#[derive(Debug, Clone)]
struct Line {
    prefix: &'static str,
    capacity: u16,
}

impl Line {
    fn parent_qr(&self, number: u32) -> String {
        format!("{}{number:05}", self.prefix)
    }
}

/// The default product lines, with their capacity taken from `tracetrack-domain` (and each QR
/// shape checked against the line's pattern there).
fn lines() -> anyhow::Result<[Line; 2]> {
    let defaults = ProductLine::defaults();
    let capacity = |name: &str, prefix: &str| -> anyhow::Result<u16> {
        let line = defaults
            .iter()
            .find(|l| l.name == name)
            .with_context(|| format!("no default product line {name}"))?;
        let sample = format!("{prefix}{:05}", 0);
        anyhow::ensure!(
            line.parent_pattern.is_match(&sample),
            "{sample} does not match the {name} parent pattern {}",
            line.parent_pattern
        );
        Ok(u16::try_from(line.capacity)?)
    };
    Ok([
        Line {
            prefix: "SB",
            capacity: capacity("mustard", "SB")?,
        },
        Line {
            prefix: "M444-",
            capacity: capacity("moong", "M444-")?,
        },
    ])
}

#[derive(Debug, Clone)]
struct ParentPlan {
    line: usize,
    number: u32,
    area: usize,
    children: u16,
}

/// What will be imported, before any QR is written.
#[derive(Debug)]
struct Plan {
    lines: [Line; 2],
    parents: Vec<ParentPlan>,
    per_line: [u64; 2],
    linked: u64,
    unlinked: u64,
    /// Share of parents drawn full (0 unless the parent cap binds).
    full_share: f64,
}

impl Plan {
    fn new(bags: u64, lines: [Line; 2], rng: &mut StdRng) -> anyhow::Result<Self> {
        let cap = u64::from(SEED_PARENT_NUMBERS);
        let mut left = [
            (bags * MUSTARD_PER_MILLE / 1000).min(cap),
            (bags * MOONG_PER_MILLE / 1000).min(cap),
        ];
        let per_line = left;
        let capacity: f64 = per_line
            .iter()
            .zip(&lines)
            .map(|(n, l)| *n as f64 * f64::from(l.capacity))
            .sum();
        let children = (bags - per_line[0] - per_line[1]) as f64;
        let uniform = capacity / 2.0;
        let target = TARGET_LINKED_SHARE * children;
        let full_share = if uniform >= target || capacity <= uniform {
            0.0
        } else {
            ((target - uniform) / (capacity - uniform)).min(1.0)
        };
        let mut next_number = [0u32; 2];
        let mut parents = Vec::with_capacity(usize::try_from(left[0] + left[1])?);
        while left[0] + left[1] > 0 {
            // Interleave the lines at random, in proportion to what is left of each.
            let line = usize::from(rng.gen_range(0..left[0] + left[1]) >= left[0]);
            left[line] -= 1;
            let area = rng.gen_range(0..DEFAULT_AREAS.len());
            let cap = lines[line].capacity;
            // No extra draw while the cap does not bind: the same bags as before it existed.
            let children = if full_share > 0.0 && rng.gen_bool(full_share) {
                cap
            } else {
                rng.gen_range(0..=cap)
            };
            parents.push(ParentPlan {
                line,
                number: next_number[line],
                area,
                children,
            });
            next_number[line] += 1;
        }
        let budget = bags - parents.len() as u64;
        let mut linked: u64 = parents.iter().map(|p| u64::from(p.children)).sum();
        // Small runs may draw more children than fit in --bags: empty the last parents first.
        for p in parents.iter_mut().rev() {
            if linked <= budget {
                break;
            }
            let cut = u64::from(p.children).min(linked - budget);
            p.children -= u16::try_from(cut)?;
            linked -= cut;
        }
        Ok(Self {
            lines,
            parents,
            per_line,
            linked,
            unlinked: budget - linked,
            full_share,
        })
    }

    fn parent_qr(&self, p: &ParentPlan) -> String {
        self.lines[p.line].parent_qr(p.number)
    }

    /// The first `n` parents that the plan fills to capacity, in stream order.
    fn full_parents(&self, n: usize) -> Vec<String> {
        self.parents
            .iter()
            .filter(|p| p.children == self.lines[p.line].capacity)
            .take(n)
            .map(|p| self.parent_qr(p))
            .collect()
    }

    fn children(&self) -> u64 {
        self.linked + self.unlinked
    }

    /// The QRs that exist once the whole plan was imported: its last parent and last child.
    fn last_qrs(&self) -> Vec<String> {
        let mut qrs: Vec<String> = self
            .parents
            .last()
            .map(|p| self.parent_qr(p))
            .into_iter()
            .collect();
        if self.children() > 0 {
            qrs.push(format!("C{:09}", self.children() - 1));
        }
        qrs
    }

    fn total(&self) -> u64 {
        self.parents.len() as u64 + self.linked + self.unlinked
    }

    /// Calls `emit` with every bag, in stream order: each parent, its children, then its share
    /// of the unlinked children. Stops early (returning false) when `emit` does.
    /// The population in batches of about `batch_size`: a batch ends before a parent (so a
    /// parent's children are in its batch, and concurrent streams never wait for each other), or
    /// at the server's limit. False when `send` refused a batch.
    fn batches(
        &self,
        rng: &mut StdRng,
        batch_size: usize,
        mut send: impl FnMut(Vec<ImportBag>) -> bool,
    ) -> bool {
        let mut batch: Vec<ImportBag> = Vec::with_capacity(batch_size + 1_000);
        let complete = self.generate(rng, |bag| {
            let full = (bag.r#type == BagType::Parent as i32 && batch.len() >= batch_size)
                || batch.len() >= MAX_BATCH;
            if full {
                let bags = std::mem::replace(&mut batch, Vec::with_capacity(batch_size + 1_000));
                if !send(bags) {
                    return false;
                }
            }
            batch.push(bag);
            true
        });
        complete && (batch.is_empty() || send(batch))
    }

    fn generate(&self, rng: &mut StdRng, mut emit: impl FnMut(ImportBag) -> bool) -> bool {
        let parents = self.parents.len() as u64;
        let mut children = Children::default();
        for (i, p) in self.parents.iter().enumerate() {
            let parent_qr = self.lines[p.line].parent_qr(p.number);
            let area = DEFAULT_AREAS[p.area];
            if !emit(ImportBag {
                qr: parent_qr.clone(),
                r#type: BagType::Parent as i32,
                area: area.to_owned(),
                parent_qr: String::new(),
            }) {
                return false;
            }
            for _ in 0..p.children {
                if !emit(children.next(area, &parent_qr)) {
                    return false;
                }
            }
            if !children.unlinked_upto(self.unlinked * (i as u64 + 1) / parents, rng, &mut emit) {
                return false;
            }
        }
        children.unlinked_upto(self.unlinked, rng, &mut emit)
    }
}

/// Numbers the children (`C` + 9 digits) and counts the unlinked ones sent.
#[derive(Debug, Default)]
struct Children {
    next_number: u64,
    unlinked_sent: u64,
}

impl Children {
    fn next(&mut self, area: &str, parent_qr: &str) -> ImportBag {
        let qr = format!("C{:09}", self.next_number);
        self.next_number += 1;
        ImportBag {
            qr,
            r#type: BagType::Child as i32,
            area: area.to_owned(),
            parent_qr: parent_qr.to_owned(),
        }
    }

    /// Sends unlinked children, each in a random area, until `upto` were sent in all.
    fn unlinked_upto(
        &mut self,
        upto: u64,
        rng: &mut StdRng,
        emit: &mut impl FnMut(ImportBag) -> bool,
    ) -> bool {
        while self.unlinked_sent < upto {
            self.unlinked_sent += 1;
            let area = DEFAULT_AREAS[rng.gen_range(0..DEFAULT_AREAS.len())];
            if !emit(self.next(area, "")) {
                return false;
            }
        }
        true
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.rng_seed);
    let plan = Arc::new(Plan::new(args.bags, lines()?, &mut rng)?);
    eprintln!(
        "seed: {} bags = {} mustard parents + {} moong parents + {} linked children + {} unlinked \
         children, over {} areas ({:.0} % of parents drawn full before the uniform fill)",
        count(plan.total()),
        count(plan.per_line[0]),
        count(plan.per_line[1]),
        count(plan.linked),
        count(plan.unlinked),
        DEFAULT_AREAS.len(),
        plan.full_share * 100.0,
    );

    let session = args.login.login().await?;
    eprintln!(
        "seed: logged in as {} ({})",
        args.login.username, session.role
    );
    let mut registry =
        BagRegistryServiceClient::new(open(&args.registry_url, Duration::from_secs(6 * 3600))?)
            .max_encoding_message_size(64 << 20);
    let last = plan.last_qrs();
    let found = registry
        .get_bags(client::request(
            GetBagsRequest { qrs: last.clone() },
            Some(&session.token),
            None,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("GetBags failed: {}", describe(&s)))?
        .into_inner()
        .bags
        .len();
    let skip = found == last.len() && !last.is_empty() && !args.force;
    if skip {
        println!(
            "seed: the plan's last bags ({}) exist already: the import is skipped (--force \
             re-sends it)",
            last.join(", ")
        );
    }
    // The users do not depend on the bags: they are created (and logged in) while the import
    // runs, so the gateway's per-user and login rate limits cost no time of their own.
    let importing = async {
        if !skip {
            import(&args, plan.clone(), rng, &registry, &session.token).await?;
        }
        anyhow::Ok(())
    };
    let users = async {
        if args.no_http {
            return Ok(None);
        }
        users(&args).await.map(Some)
    };
    let phases = Instant::now();
    let ((), users) = tokio::try_join!(importing, users)?;
    eprintln!(
        "seed: import and users done in {:.1} s",
        phases.elapsed().as_secs_f64()
    );
    let Some((api, accounts, sessions)) = users else {
        return Ok(());
    };

    let billers: Vec<String> = match sessions.get(&Role::Biller) {
        Some(s) if !s.is_empty() => s.iter().map(|s| s.token.clone()).collect(),
        _ => vec![accounts.admin_token().to_owned()],
    };
    let bills = seed_bills(&api, &billers, &plan, &args).await?;
    verify(&api, accounts.admin_token(), &plan, bills, &args).await?;
    println!("seed: all done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

type Users = (Api, Arc<Accounts>, BTreeMap<Role, Vec<Session>>);

/// The benchmark users, created when missing and logged in (sessions cached).
async fn users(args: &Args) -> anyhow::Result<Users> {
    let started = Instant::now();
    let api = Api::new(&args.login.base_url, Duration::from_secs(60))?;
    anyhow::ensure!(
        api.healthy().await,
        "the gateway at {} does not answer /healthz",
        args.login.base_url
    );
    let accounts = Arc::new(
        Accounts::open(
            &api,
            &args.login.username,
            &args.login.password,
            &args.session_cache,
        )
        .await?,
    );
    let mut sessions: BTreeMap<Role, Vec<Session>> = BTreeMap::new();
    for (role, n) in [
        (Role::Dispatcher, args.dispatchers),
        (Role::Biller, args.billers),
        (Role::Admin, args.admins),
    ] {
        let created = accounts.ensure(role, n as usize).await?;
        sessions.insert(role, accounts.sessions(role, n as usize).await?);
        println!(
            "seed: {} {}s ({} created now), sessions cached in {}",
            count(u64::from(n)),
            role.name(),
            count(created as u64),
            args.session_cache.display()
        );
    }
    eprintln!(
        "seed: users and sessions ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((api, accounts, sessions))
}

/// Streams the plan to ImportBags, with progress lines.
async fn import(
    args: &Args,
    plan: Arc<Plan>,
    mut rng: StdRng,
    registry: &BagRegistryServiceClient<tonic::transport::Channel>,
    token: &str,
) -> anyhow::Result<()> {
    let total = plan.total();
    let streams = args.import_streams as usize;
    eprintln!(
        "seed: importing {} bags in batches of about {} over {} concurrent streams",
        count(total),
        count(u64::from(args.batch_size)),
        streams
    );
    // The generator runs on a blocking thread; the bounded channel keeps it at most two
    // batches ahead of what gRPC has taken.
    let (tx, rx) = mpsc::channel::<ImportBagsRequest>(2 * streams);
    let batch_size = args.batch_size as usize;
    let generator = tokio::task::spawn_blocking(move || {
        plan.batches(&mut rng, batch_size, |bags| {
            // A send error means the call ended; its status says why.
            tx.blocking_send(ImportBagsRequest { bags }).is_ok()
        })
    });

    let sent = Arc::new(AtomicU64::new(0));
    // Each stream takes the next batch when it has room for one: the busy ones take fewer.
    let shared = Arc::new(tokio::sync::Mutex::new(rx));
    let mut calls = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (own_tx, own_rx) = mpsc::channel::<ImportBagsRequest>(1);
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let Some(batch) = shared.lock().await.recv().await else {
                    break;
                };
                if own_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let counted = sent.clone();
        let stream = ReceiverStream::new(own_rx).map(move |batch| {
            counted.fetch_add(batch.bags.len() as u64, Ordering::Relaxed);
            batch
        });
        let mut registry = registry.clone();
        let request = client::request(stream, Some(token), None);
        calls.push(tokio::spawn(
            async move { registry.import_bags(request).await },
        ));
    }

    let started = Instant::now();
    let progress = tokio::spawn(progress(
        sent.clone(),
        total,
        started,
        Duration::from_secs(args.progress_secs.max(1)),
    ));
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        results.push(call.await.context("an import stream panicked")?);
    }
    let elapsed = started.elapsed();
    progress.abort();
    generator.await.context("the bag generator panicked")?;
    let mut resp = tracetrack_proto::registry::v1::ImportBagsResponse::default();
    for result in results {
        let part = result
            .map_err(|s| anyhow::anyhow!("ImportBags failed: {}", describe(&s)))?
            .into_inner();
        resp.parents_created += part.parents_created;
        resp.children_created += part.children_created;
        resp.links_created += part.links_created;
        resp.unchanged += part.unchanged;
        resp.rejected.extend(part.rejected);
    }

    let secs = elapsed.as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    println!("seed: imported in {secs:.1} s");
    println!(
        "  bags sent          {:>12}  ({} bags/s)",
        count(sent),
        rate(sent, secs)
    );
    println!("  parents created    {:>12}", count(resp.parents_created));
    println!("  children created   {:>12}", count(resp.children_created));
    println!("  links created      {:>12}", count(resp.links_created));
    println!("  unchanged          {:>12}", count(resp.unchanged));
    println!(
        "  rejected           {:>12}",
        count(resp.rejected.len() as u64)
    );
    for r in resp.rejected.iter().take(10) {
        println!(
            "    batch {} #{} {}: {} ({})",
            r.batch, r.index, r.qr, r.code, r.message
        );
    }
    let created = resp.parents_created + resp.children_created;
    println!(
        "  created            {:>12}  ({} bags/s)",
        count(created),
        rate(created, secs)
    );
    anyhow::ensure!(
        resp.rejected.is_empty(),
        "ImportBags rejected {} bags",
        resp.rejected.len()
    );
    Ok(())
}

/// What `seed_bills` did.
#[derive(Debug, Default)]
struct BillsDone {
    /// Bills of the seed that exist (created now or before).
    bills: u64,
    attached: u64,
    completed: u64,
    problems: BTreeMap<String, u64>,
    skipped: Option<String>,
}

/// Bills `SEED-<rng seed>-00001…` of `--bill-size` full seeded parents each, every other one
/// completed; re-runs find them and change nothing.
async fn seed_bills(
    api: &Api,
    billers: &[String],
    plan: &Plan,
    args: &Args,
) -> anyhow::Result<BillsDone> {
    let size = args.bill_size.max(1) as usize;
    let parents = plan.full_parents(args.bills as usize * size);
    let n = (parents.len() / size).min(args.bills as usize);
    if n == 0 {
        return Ok(BillsDone::default());
    }
    // Old builds have no billing: a missing route or a missing upstream.
    let probe = api
        .get_patiently(
            "/api/v1/bills?page_size=1",
            billers.first().map(String::as_str),
        )
        .await;
    if matches!(probe.status, 404 | 405 | 501 | 503) {
        let why = format!(
            "bills skipped: GET /api/v1/bills answered {} {} (no billing in this build?)",
            probe.status,
            probe.code()
        );
        println!("seed: {why}");
        return Ok(BillsDone {
            skipped: Some(why),
            ..BillsDone::default()
        });
    }
    let started = Instant::now();
    let parents = Arc::new(parents);
    let billers = Arc::new(billers.to_vec());
    let done = Arc::new(AtomicU64::new(0));
    let api2 = api.clone();
    let seed = args.rng_seed;
    let results = concurrently(n, billers.len().min(16), move |k| {
        let api = api2.clone();
        let parents = parents.clone();
        let billers = billers.clone();
        let done = done.clone();
        async move {
            let token = &billers[k % billers.len()];
            let patience = Duration::from_secs(120);
            let bill_id = format!("SEED-{seed}-{:05}", k + 1);
            let mut out = BillsDone::default();
            let mut problem = |a: &crate::api::Answer| {
                *out.problems.entry(a.code()).or_default() += 1;
            };
            let body = json!({
                "bill_id": bill_id,
                "capacity": size,
                "destination": DEFAULT_AREAS[k % DEFAULT_AREAS.len()],
                "vehicle_number": format!("MH12-SD-{:04}", k % 10_000),
                "description": "seeded by tracetrack-bench",
            });
            let a = api
                .send_patiently(
                    Method::POST,
                    "/api/v1/bills",
                    Some(token),
                    Some(&body),
                    patience,
                )
                .await;
            if !a.ok() && a.code() != "bill_exists" {
                problem(&a);
                return out;
            }
            let mut bill = BillsDone {
                bills: 1,
                ..BillsDone::default()
            };
            let path = format!("/api/v1/bills/{}/parents", enc(&bill_id));
            for qr in &parents[k * size..(k + 1) * size] {
                let a = api
                    .send_patiently(
                        Method::POST,
                        &path,
                        Some(token),
                        Some(&json!({ "parent_qr": qr })),
                        patience,
                    )
                    .await;
                if a.ok() {
                    bill.attached += 1;
                } else if a.code() != "bill_completed" {
                    problem(&a);
                }
            }
            if k % 2 == 0 {
                let path = format!("/api/v1/bills/{}/complete", enc(&bill_id));
                let a = api
                    .send_patiently(Method::POST, &path, Some(token), None, patience)
                    .await;
                if a.ok() || a.code() == "bill_completed" {
                    bill.completed += 1;
                } else {
                    problem(&a);
                }
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d % 50 == 0 {
                eprintln!("seed: {d} / {n} bills");
            }
            bill.problems = out.problems;
            bill
        }
    })
    .await;
    let mut total = BillsDone::default();
    for r in results {
        total.bills += r.bills;
        total.attached += r.attached;
        total.completed += r.completed;
        for (c, k) in r.problems {
            *total.problems.entry(c).or_default() += k;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seed: {} bills of {size} full parents ({} attachments now, {} completed) in {secs:.1} s \
         ({} requests/s){}",
        count(total.bills),
        count(total.attached),
        count(total.completed),
        rate(total.bills * (size as u64 + 2), secs),
        if total.problems.is_empty() {
            String::new()
        } else {
            format!("; refused: {}", errors_cell(&total.problems))
        }
    );
    Ok(total)
}

/// Checks the seeded counts through the API: the dashboard's totals (once the stats consumer has
/// caught up) and sample bags against the plan.
async fn verify(
    api: &Api,
    token: &str,
    plan: &Plan,
    bills: BillsDone,
    args: &Args,
) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    // Sample bags: the first and last parents and some in between, with their planned fill.
    let n = plan.parents.len();
    let mut picks: Vec<usize> = vec![0, n.saturating_sub(1)];
    let mut rng = StdRng::seed_from_u64(args.rng_seed ^ 0xbeef);
    picks.extend((0..18).map(|_| rng.gen_range(0..n.max(1))));
    let mut checked = 0;
    for i in picks.into_iter().filter(|i| *i < n) {
        let p = &plan.parents[i];
        let qr = plan.parent_qr(p);
        let a = api
            .get_patiently(&format!("/api/v1/bags/{}", enc(&qr)), Some(token))
            .await;
        let v = a.value();
        let got = (
            v.get("type").and_then(Value::as_str).unwrap_or(""),
            v.get("child_count").and_then(Value::as_i64).unwrap_or(-1),
            v.get("area").and_then(Value::as_str).unwrap_or(""),
        );
        let want = ("parent", i64::from(p.children), DEFAULT_AREAS[p.area]);
        if !a.ok() || got != want {
            failures.push(format!(
                "{qr}: expected {want:?}, the API says {got:?} (HTTP {})",
                a.status
            ));
        }
        checked += 1;
    }
    for qr in plan.last_qrs().iter().chain([format!("C{:09}", 0)].iter()) {
        if plan.children() == 0 && qr.starts_with('C') {
            continue;
        }
        let a = api
            .get_patiently(&format!("/api/v1/bags/{}", enc(qr)), Some(token))
            .await;
        if !a.ok() {
            failures.push(format!("{qr}: HTTP {} {}", a.status, a.code()));
        }
        checked += 1;
    }
    println!(
        "seed: verify: {checked} sample bags looked up, {} mismatches",
        failures.len()
    );

    // The dashboard's totals, once the stats consumer has applied the import events.
    let want_parents = plan.per_line[0] + plan.per_line[1];
    let want_children = plan.children();
    let deadline = Instant::now() + Duration::from_secs(args.verify_timeout_secs);
    loop {
        let a = api
            .get_patiently("/api/v1/stats/dashboard", Some(token))
            .await;
        if matches!(a.status, 404 | 501 | 503) {
            println!(
                "seed: verify: dashboard unavailable ({} {}): totals not checked",
                a.status,
                a.code()
            );
            break;
        }
        let v = a.check("GET /api/v1/stats/dashboard")?.value();
        let g = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        let bills_seen: u64 = v
            .get("bills_by_status")
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter_map(Value::as_i64)
                    .map(|x| x.max(0) as u64)
                    .sum()
            })
            .unwrap_or(0);
        let ok = g("parents") >= want_parents
            && g("children") >= want_children
            && g("unlinked_children") >= plan.unlinked
            && bills_seen >= bills.bills;
        if ok || Instant::now() >= deadline {
            println!(
                "seed: verify: dashboard parents {} (seeded {}), children {} (seeded {}), \
                 unlinked children {} (seeded {}), bills {} (seeded {}){}",
                count(g("parents")),
                count(want_parents),
                count(g("children")),
                count(want_children),
                count(g("unlinked_children")),
                count(plan.unlinked),
                count(bills_seen),
                count(bills.bills),
                if ok { "" } else { "  <- short" }
            );
            if !ok {
                failures.push(format!(
                    "the dashboard did not reach the seeded totals within {} s (a database seeded \
                     by an older build may lack the per-area import figures the stats service \
                     counts: seed a fresh one, e.g. BENCH_FRESH=1 make bench)",
                    args.verify_timeout_secs
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Some(why) = &bills.skipped {
        println!("seed: verify: {why}");
    }
    for f in &failures {
        eprintln!("seed: verify failed: {f}");
    }
    anyhow::ensure!(
        failures.is_empty(),
        "seed verification failed ({} problems)",
        failures.len()
    );
    println!("seed: verify: ok");
    Ok(())
}

async fn progress(sent: Arc<AtomicU64>, total: u64, started: Instant, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let n = sent.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        if n >= total {
            eprintln!(
                "seed: all {} bags sent, waiting for the last batches to commit, {secs:.0} s",
                count(total)
            );
            continue;
        }
        eprintln!(
            "seed: {:>9} / {} bags sent ({:5.1} %), {} bags/s, {secs:.0} s",
            count(n),
            count(total),
            n as f64 * 100.0 / total.max(1) as f64,
            rate(n, secs),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_each_parent_with_its_children() {
        let mut rng = StdRng::seed_from_u64(7);
        let plan = Plan::new(60_000, lines().unwrap(), &mut rng).unwrap();
        let mut batches: Vec<Vec<ImportBag>> = Vec::new();
        assert!(plan.batches(&mut rng, 1_000, |b| {
            batches.push(b);
            true
        }));
        let total: usize = batches.iter().map(Vec::len).sum();
        assert_eq!(total as u64, plan.total());
        assert!(batches.len() > 20, "{} batches", batches.len());
        for batch in &batches {
            assert!(batch.len() <= MAX_BATCH);
            let parents: std::collections::HashSet<&str> = batch
                .iter()
                .filter(|b| b.r#type == BagType::Parent as i32)
                .map(|b| b.qr.as_str())
                .collect();
            for child in batch.iter().filter(|b| !b.parent_qr.is_empty()) {
                assert!(
                    parents.contains(child.parent_qr.as_str()),
                    "{} without its parent {} in its batch",
                    child.qr,
                    child.parent_qr
                );
            }
        }
        // The same bags, in the same order, as without batches.
        let (_, whole) = all(60_000);
        assert!(batches.concat() == whole);
    }

    fn all(bags: u64) -> (Plan, Vec<ImportBag>) {
        let mut rng = StdRng::seed_from_u64(7);
        let plan = Plan::new(bags, lines().unwrap(), &mut rng).unwrap();
        let mut out = Vec::new();
        assert!(plan.generate(&mut rng, |b| {
            out.push(b);
            true
        }));
        (plan, out)
    }

    #[test]
    fn exactly_the_requested_bags_with_parents_before_children() {
        for bags in [0, 1, 10, 999, 20_000] {
            let (plan, out) = all(bags);
            assert_eq!(out.len() as u64, bags);
            assert_eq!(plan.total(), bags);
            let mut seen = std::collections::HashSet::new();
            let mut per_parent = std::collections::HashMap::<String, u16>::new();
            for b in &out {
                assert!(seen.insert(b.qr.clone()), "duplicate {}", b.qr);
                if !b.parent_qr.is_empty() {
                    assert!(seen.contains(&b.parent_qr), "child before its parent");
                    *per_parent.entry(b.parent_qr.clone()).or_default() += 1;
                }
            }
            for (parent, n) in per_parent {
                let cap = if parent.starts_with("SB") { 30 } else { 15 };
                assert!(n <= cap, "{parent} has {n} children");
            }
        }
    }

    #[test]
    fn a_million_bags_fit_the_parent_ranges() {
        let mut rng = StdRng::seed_from_u64(42);
        let plan = Plan::new(1_000_000, lines().unwrap(), &mut rng).unwrap();
        assert_eq!(plan.per_line, [45_000, 20_000]);
        assert_eq!(plan.total(), 1_000_000);
        assert_eq!(plan.full_share, 0.0);
        let share = plan.unlinked as f64 / 1e6;
        assert!((0.05..0.2).contains(&share), "unlinked share {share}");
    }

    #[test]
    fn four_million_bags_fill_most_parents() {
        let mut rng = StdRng::seed_from_u64(42);
        let plan = Plan::new(4_000_000, lines().unwrap(), &mut rng).unwrap();
        assert_eq!(plan.per_line, [80_000, 80_000]);
        assert_eq!(plan.total(), 4_000_000);
        assert!(
            (0.8..0.95).contains(&plan.full_share),
            "{}",
            plan.full_share
        );
        let share = plan.unlinked as f64 / plan.children() as f64;
        assert!((0.08..0.16).contains(&share), "unlinked share {share}");
        let last = plan.last_qrs();
        assert_eq!(last.len(), 2);
        assert_eq!(last[1], format!("C{:09}", plan.children() - 1));
        assert_eq!(plan.full_parents(5).len(), 5);
    }

    #[test]
    fn below_the_cap_the_bags_do_not_change() {
        // The 1 M plan as it was before the cap existed: uniform fills, no extra draws.
        let mut rng = StdRng::seed_from_u64(42);
        let plan = Plan::new(1_000_000, lines().unwrap(), &mut rng).unwrap();
        assert_eq!(plan.linked, 825_947);
        assert_eq!(plan.unlinked, 109_053);
    }

    #[test]
    fn the_same_seed_gives_the_same_bags() {
        let (_, a) = all(5_000);
        let (_, b) = all(5_000);
        assert_eq!(a, b);
    }
}
