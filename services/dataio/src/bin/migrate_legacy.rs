//! `tracetrack-migrate-legacy --legacy-url postgres://… [--dry-run]`: reads the old Flask
//! system's tables and moves users, bags, links and bills into TraceTrack through the services,
//! after printing what it will import and every row it repairs, rejects or reports, and why.
//! Run it with --dry-run first. A second run changes nothing (what exists is left alone and
//! reported as already present).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use tracetrack_dataio::import::{DEFAULT_BATCH, MAX_BATCH};
use tracetrack_dataio::legacy::{self, PlanOptions, Targets};
use tracetrack_dataio::session::{login, DEFAULT_GATEWAY_URL};

#[derive(Debug, Parser)]
#[command(
    name = "tracetrack-migrate-legacy",
    about = "Move users, bags, links and bills off the old system"
)]
struct Args {
    /// The old system's database (read only).
    #[arg(long, env = "TRACETRACK_LEGACY_URL", hide_env_values = true)]
    legacy_url: String,
    /// Report only: nothing is written anywhere.
    #[arg(long)]
    dry_run: bool,
    /// auth's gRPC endpoint (users are created through UserAdminService).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    auth_url: String,
    /// The gateway's HTTP address: the tool logs in through it.
    #[arg(long, default_value = DEFAULT_GATEWAY_URL)]
    gateway_url: String,
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    registry_url: String,
    /// billing's gRPC endpoint; an empty value skips bills (reported as not migrated).
    #[arg(long, default_value = "http://127.0.0.1:50054")]
    billing_url: String,
    /// An admin's username.
    #[arg(long, default_value = "admin")]
    username: String,
    /// The CA (PEM) that signed the services' and the gateway's certificates, when they speak
    /// TLS: gRPC URLs are then dialled as https:// and verified, and an https:// gateway too
    /// (the services' own variable, so the tool runs as it is inside a service's pod).
    #[arg(long, env = "TRACETRACK_TLS__GRPC__CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Defaults to $TRACETRACK_ADMIN_PASSWORD (not needed for --dry-run).
    #[arg(long, env = "TRACETRACK_ADMIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Area for bags whose old area is missing or unknown and whose creator has none.
    #[arg(long)]
    default_area: Option<String>,
    /// The areas TraceTrack is configured with (comma-separated); defaults to the SPEC's.
    #[arg(long, value_delimiter = ',')]
    areas: Vec<String>,
    /// Bags per ImportBags message.
    #[arg(long, default_value_t = DEFAULT_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    batch_size: u32,
    /// Write the full report (every finding) as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Findings of each kind printed (the JSON report has them all).
    #[arg(long, default_value_t = 20)]
    examples: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(ca) = &args.ca_file {
        tracetrack_dataio::session::trust_ca(ca)?;
    }
    let mut opts = PlanOptions::default();
    if !args.areas.is_empty() {
        opts.areas = args.areas.iter().map(|a| a.trim().to_lowercase()).collect();
    }
    if let Some(a) = &args.default_area {
        let a = a.trim().to_lowercase();
        anyhow::ensure!(
            opts.areas.contains(&a),
            "--default-area {a} is not a known area ({})",
            opts.areas.join(", ")
        );
        opts.default_area = Some(a);
    }
    let targets = if args.dry_run {
        None
    } else {
        let password = args
            .password
            .as_deref()
            .context("a password is needed (--password or TRACETRACK_ADMIN_PASSWORD); use --dry-run to only report")?;
        Some(Targets {
            auth_url: args.auth_url.clone(),
            registry_url: args.registry_url.clone(),
            billing_url: Some(args.billing_url.clone()).filter(|u| !u.trim().is_empty()),
            token: login(&args.gateway_url, &args.username, password).await?,
            batch_size: args.batch_size as usize,
        })
    };
    let started = Instant::now();
    let report = legacy::run(&args.legacy_url, &opts, targets.as_ref(), move |p| {
        eprintln!(
            "bags: sent {} / {} ({} batches, {:.0} s)",
            p.sent,
            p.total,
            p.batches_sent,
            started.elapsed().as_secs_f64()
        );
    })
    .await?;
    print!("{}", report.render(args.examples));
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("full report: {}", path.display());
    }
    Ok(())
}
