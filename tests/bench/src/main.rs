//! `tracetrack-bench`: TraceTrack's benchmark tool. It talks to running services over gRPC only,
//! like any other client.
//!
//! - `seed`: bulk-loads bag-registry through `ImportBags` (parents of both product lines, linked
//!   and unlinked children, spread over the default areas) to get a realistic table size.
//! - `scan-load`: C concurrent scanners fill fresh parents through the scan service and report
//!   the `ScanChild` latency distribution.

mod report;
mod scan_load;
mod seed;
mod session;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tracetrack-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bulk-load bags into bag-registry through ImportBags.
    Seed(seed::Args),
    /// Drive ScanParent/ScanChild load through the scan service and report latencies.
    ScanLoad(scan_load::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed(args) => seed::run(args).await,
        Command::ScanLoad(args) => scan_load::run(args).await,
    }
}
