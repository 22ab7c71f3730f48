use clap::Parser;
use tracetrack_common::cli::{Binary, Standard};
use tracetrack_scan::config::DEFAULTS;
use tracetrack_scan::{grpc::SCHEMA, startup::MIGRATOR, Application, Settings};

#[derive(Parser)]
#[command(name = "tracetrack-scan", about = "TraceTrack scan service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Standard>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Standard::Serve);
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    let common = settings.common.clone();
    let binary = Binary {
        service: "scan",
        schema: SCHEMA,
        migrator: &MIGRATOR,
    };
    binary
        .run(
            command,
            &common,
            || async {
                let app = Application::build(settings).await?;
                app.run_until_stopped(tracetrack_common::shutdown::signal())
                    .await
            },
            // The scan log's monthly partitions.
            |pool| async move {
                let created =
                    tracetrack_scan::store::ensure_partitions(&pool, chrono::Utc::now()).await?;
                tracing::info!(partitions_created = created, "scan partitions");
                Ok(())
            },
        )
        .await
}
