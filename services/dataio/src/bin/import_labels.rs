//! `tracetrack-import-labels FILE.xlsx --area AREA`: imports a label-printing workbook (every
//! sheet) into bag-registry and prints what it created and every bad row with its sheet, row and
//! code. Safe to run twice: the second run reports everything unchanged. Exits non-zero only
//! when it cannot run (unreadable file, services unreachable, login refused).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tracetrack_dataio::import::{self, RegistryClient, DEFAULT_BATCH, MAX_BATCH};
use tracetrack_dataio::labels;
use tracetrack_dataio::session::{login, open, DEFAULT_GATEWAY_URL};
use tracetrack_domain::qr::ProductLine;

#[derive(Debug, Parser)]
#[command(
    name = "tracetrack-import-labels",
    about = "Import a label-printing workbook (.xlsx) into bag-registry"
)]
struct Args {
    /// The workbook (.xlsx): column A a serial number, column B the scanned text; 15 or 30 label
    /// rows, then the parent's row.
    file: PathBuf,
    /// The dispatch area every bag of the file goes into.
    #[arg(long)]
    area: String,
    /// bag-registry's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    registry_url: String,
    /// The gateway's HTTP address: the tool logs in through it.
    #[arg(long, default_value = DEFAULT_GATEWAY_URL)]
    gateway_url: String,
    /// An admin's username.
    #[arg(long, default_value = "admin")]
    username: String,
    /// The CA (PEM) that signed the services' and the gateway's certificates, when they speak
    /// TLS: gRPC URLs are then dialled as https:// and verified, and an https:// gateway too
    /// (the services' own variable, so the tool runs as it is inside a service's pod).
    #[arg(long, env = "TRACETRACK_TLS__GRPC__CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Defaults to $TRACETRACK_ADMIN_PASSWORD.
    #[arg(long, env = "TRACETRACK_ADMIN_PASSWORD", hide_env_values = true)]
    password: String,
    /// Bags per ImportBags message (each is one transaction).
    #[arg(long, default_value_t = DEFAULT_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    batch_size: u32,
    /// Parse and report only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(ca) = &args.ca_file {
        tracetrack_dataio::session::trust_ca(ca)?;
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let parsed = labels::parse_workbook(&bytes, &ProductLine::defaults())?;
    eprintln!(
        "{}: {} sheets, {} rows, {} parents and {} labels to import, {} rows with problems",
        args.file.display(),
        parsed.sheets.len(),
        parsed.rows,
        parsed.parents(),
        parsed.children(),
        parsed.problems.len()
    );
    let report = if args.dry_run {
        import::LabelReport::dry_run(&args.area, &parsed)
    } else {
        let token = login(&args.gateway_url, &args.username, &args.password).await?;
        let mut registry =
            RegistryClient::new(open(&args.registry_url, Duration::from_secs(3600))?)
                .max_encoding_message_size(64 << 20);
        let started = Instant::now();
        import::import_labels(
            &mut registry,
            &token,
            &parsed,
            &args.area,
            args.batch_size as usize,
            move |p| {
                eprintln!(
                    "sent {} / {} bags ({} batches, {:.0} s)",
                    p.sent,
                    p.total,
                    p.batches_sent,
                    started.elapsed().as_secs_f64()
                );
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("ImportBags failed: {e}"))?
    };
    print!("{}", report.render());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
