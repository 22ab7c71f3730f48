use clap::{Parser, Subcommand};
use tracetrack_billing::config::DEFAULTS;
use tracetrack_billing::{Application, Settings};

#[derive(Parser)]
#[command(
    name = "tracetrack-billing",
    about = "TraceTrack billing service",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Run the database migrations and exit (a Kubernetes Job, with a DDL role).
    Migrate,
    /// Exit 0 when the running service reports SERVING (for scripts and probes).
    Health {
        /// Defaults to the configured gRPC address.
        #[arg(long)]
        addr: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    if let Some(Command::Health { addr }) = &cli.command {
        let url = format!(
            "http://{}",
            addr.as_deref().unwrap_or(&settings.common.grpc_addr)
        );
        let serving = tracetrack_common::server::probe(&url, "")
            .await
            .unwrap_or(false);
        std::process::exit(if serving { 0 } else { 1 });
    }
    let _telemetry = tracetrack_common::telemetry::init("billing", &settings.common.telemetry)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(tracetrack_common::shutdown::signal())
                .await
        }
        Command::Health { .. } => Ok(()),
        Command::Migrate => {
            let pool = tracetrack_common::db::pool(
                &settings.common.database,
                tracetrack_billing::state::SCHEMA,
            )?;
            tracetrack_common::db::wait_until_ready(&pool, std::time::Duration::from_secs(60))
                .await?;
            tracetrack_common::db::migrate(
                &pool,
                tracetrack_billing::state::SCHEMA,
                &tracetrack_billing::startup::MIGRATOR,
            )
            .await?;
            tracing::info!("billing migrations applied");
            Ok(())
        }
    }
}
