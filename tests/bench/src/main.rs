//! `tracetrack-bench`: TraceTrack's benchmark tool. It talks to running services like any other
//! client: the gateway's HTTP API, and gRPC for the bulk import and the direct scan path.
//!
//! - `seed`: bulk-loads bag-registry through `ImportBags` (parents of both product lines, linked
//!   and unlinked children, spread over the default areas), then creates the benchmark users and
//!   bills through the HTTP API and verifies the counts there.
//! - `run`: V virtual users drive a scenario (`scan-storm`, `mixed`, `lookup`) through the
//!   gateway, closed-loop or at a fixed rate; latencies per operation, JSON and markdown.
//! - `scan-load`: C concurrent scanners straight to the scan service over gRPC (no gateway).
//! - `summary`: combines the JSON of several runs and pgbench's figure into one report, with SVG
//!   plots (`--plots-dir`).
//! - `chaos`: the whole-stack fault suite on a private stack (`make chaos`, `scripts/chaos.sh`).

mod accounts;
mod api;
mod chaos;
mod plots;
mod probe;
mod report;
mod run;
mod scan_load;
mod seed;
mod session;
mod summary;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tracetrack-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bulk-load bags through ImportBags, then users and bills through the HTTP API; verify.
    Seed(seed::Args),
    /// Drive a scenario through the gateway's HTTP API and report latencies per operation.
    Run(run::Args),
    /// Drive ScanParent/ScanChild load straight at the scan service over gRPC.
    ScanLoad(scan_load::Args),
    /// Combine run results and pgbench's TPS into one JSON document and a markdown section.
    Summary(summary::Args),
    /// The whole-stack fault suite: a private stack, retrying scanners, SIGKILL of each process,
    /// Redis and Postgres in turn, checks in SQL, a report per victim (`make chaos`).
    Chaos(chaos::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed(args) => seed::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::ScanLoad(args) => scan_load::run(args).await,
        Command::Summary(args) => summary::run(args),
        Command::Chaos(args) => chaos::run(args).await,
    }
}
