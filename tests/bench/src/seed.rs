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
//! Parent numbers 90000-99999 of each line are never used here: `scan-load` scans those.
//! The same `--bags` and `--rng-seed` give the same bags, so a re-run changes nothing (ImportBags
//! leaves existing bags alone and counts them as unchanged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracetrack_common::client;
use tracetrack_domain::qr::ProductLine;
use tracetrack_domain::DEFAULT_AREAS;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::{BagType, ImportBag, ImportBagsRequest};

use crate::report::{count, rate};
use crate::session::{describe, open, LoginArgs};

/// Parent numbers below this are the seed's; the ones from here up are `scan-load`'s.
pub const SEED_PARENT_NUMBERS: u32 = 90_000;
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
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2)]
    progress_secs: u64,
}

/// A product line as the seed writes its parents' QRs.
#[derive(Debug, Clone)]
struct Line {
    name: &'static str,
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
            name: "mustard",
            prefix: "SB",
            capacity: capacity("mustard", "SB")?,
        },
        Line {
            name: "moong",
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
}

impl Plan {
    fn new(bags: u64, lines: [Line; 2], rng: &mut StdRng) -> anyhow::Result<Self> {
        let mut left = [
            bags * MUSTARD_PER_MILLE / 1000,
            bags * MOONG_PER_MILLE / 1000,
        ];
        for (line, n) in lines.iter().zip(left) {
            anyhow::ensure!(
                n <= u64::from(SEED_PARENT_NUMBERS),
                "{bags} bags need {n} {} parents, but the seed has only {SEED_PARENT_NUMBERS} \
                 parent numbers per line (at most {} bags)",
                line.name,
                u64::from(SEED_PARENT_NUMBERS) * 1000 / MUSTARD_PER_MILLE
            );
        }
        let per_line = left;
        let mut next_number = [0u32; 2];
        let mut parents = Vec::with_capacity(usize::try_from(left[0] + left[1])?);
        while left[0] + left[1] > 0 {
            // Interleave the lines at random, in proportion to what is left of each.
            let line = usize::from(rng.gen_range(0..left[0] + left[1]) >= left[0]);
            left[line] -= 1;
            parents.push(ParentPlan {
                line,
                number: next_number[line],
                area: rng.gen_range(0..DEFAULT_AREAS.len()),
                children: rng.gen_range(0..=lines[line].capacity),
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
        })
    }

    fn total(&self) -> u64 {
        self.parents.len() as u64 + self.linked + self.unlinked
    }

    /// Calls `emit` with every bag, in stream order: each parent, its children, then its share
    /// of the unlinked children. Stops early (returning false) when `emit` does.
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
    let mut rng = StdRng::seed_from_u64(args.rng_seed);
    let plan = Plan::new(args.bags, lines()?, &mut rng)?;
    let total = plan.total();
    eprintln!(
        "seed: {} bags = {} mustard parents + {} moong parents + {} linked children + {} unlinked \
         children, over {} areas, in batches of {}",
        count(total),
        count(plan.per_line[0]),
        count(plan.per_line[1]),
        count(plan.linked),
        count(plan.unlinked),
        DEFAULT_AREAS.len(),
        count(u64::from(args.batch_size)),
    );

    let session = args.login.login().await?;
    eprintln!(
        "seed: logged in as {} ({})",
        args.login.username, session.role
    );
    let mut registry =
        BagRegistryServiceClient::new(open(&args.registry_url, Duration::from_secs(6 * 3600))?)
            .max_encoding_message_size(64 << 20);

    // The generator runs on a blocking thread; the bounded channel keeps it at most two
    // batches ahead of what gRPC has taken.
    let (tx, rx) = mpsc::channel::<ImportBagsRequest>(2);
    let batch_size = args.batch_size as usize;
    let generator = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_size);
        let complete = plan.generate(&mut rng, |bag| {
            batch.push(bag);
            if batch.len() < batch_size {
                return true;
            }
            let bags = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            tx.blocking_send(ImportBagsRequest { bags }).is_ok()
        });
        if complete && !batch.is_empty() {
            // A send error means the call ended; its status says why.
            let _ = tx.blocking_send(ImportBagsRequest { bags: batch });
        }
    });

    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let stream = ReceiverStream::new(rx).map(move |batch| {
        counted.fetch_add(batch.bags.len() as u64, Ordering::Relaxed);
        batch
    });

    let started = Instant::now();
    let progress = tokio::spawn(progress(
        sent.clone(),
        total,
        started,
        Duration::from_secs(args.progress_secs.max(1)),
    ));
    let result = registry
        .import_bags(client::request(stream, Some(&session.token), None))
        .await;
    let elapsed = started.elapsed();
    progress.abort();
    generator.await.context("the bag generator panicked")?;
    let resp = result
        .map_err(|s| anyhow::anyhow!("ImportBags failed: {}", describe(&s)))?
        .into_inner();

    let secs = elapsed.as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    println!("seed: done in {secs:.1} s");
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
    Ok(())
}

async fn progress(sent: Arc<AtomicU64>, total: u64, started: Instant, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let n = sent.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
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
        let share = plan.unlinked as f64 / 1e6;
        assert!((0.05..0.2).contains(&share), "unlinked share {share}");
        assert!(Plan::new(3_000_000, lines().unwrap(), &mut rng).is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_bags() {
        let (_, a) = all(5_000);
        let (_, b) = all(5_000);
        assert_eq!(a, b);
    }
}
