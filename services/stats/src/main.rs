use clap::{Parser, Subcommand};
use tracetrack_stats::config::DEFAULTS;
use tracetrack_stats::{Application, Settings};

#[derive(Parser)]
#[command(name = "tracetrack-stats", about = "TraceTrack stats service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC and consume events (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Exit 0 when the running service reports SERVING.
    Health {
        #[arg(long)]
        addr: Option<String>,
    },
    /// List parked (poison) events.
    Parked,
    /// Replay parked events (all, or one by id) after a fix.
    Replay {
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
    /// Rebuild every read model from the stored events.
    Rebuild,
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
    let _telemetry = tracetrack_common::telemetry::init("stats", &settings.common.telemetry)?;
    let pool = || tracetrack_common::db::pool(&settings.common.database, "stats");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(tracetrack_common::shutdown::signal())
                .await
        }
        Command::Health { .. } => Ok(()),
        Command::Migrate => {
            let pool = pool()?;
            tracetrack_common::db::wait_until_ready(&pool, std::time::Duration::from_secs(60))
                .await?;
            tracetrack_common::db::migrate(&pool, "stats", &tracetrack_stats::startup::MIGRATOR)
                .await?;
            tracetrack_stats::startup::ensure_partitions(&pool).await?;
            Ok(())
        }
        Command::Parked => {
            for (id, event_type, reason, at) in
                tracetrack_common::consumer::list_parked(&pool()?, "stats").await?
            {
                println!("{id}\t{}\t{event_type}\t{reason}", at.to_rfc3339());
            }
            Ok(())
        }
        Command::Replay { id } => {
            let (handler, _) = tracetrack_stats::startup::handler(&settings);
            let (ok, still) =
                tracetrack_common::consumer::replay_parked(&pool()?, "stats", handler.as_ref(), id)
                    .await?;
            println!("replayed {ok}, still parked {still}");
            Ok(())
        }
        Command::Rebuild => {
            let (handler, _) = tracetrack_stats::startup::handler(&settings);
            let n = tracetrack_stats::startup::rebuild(&pool()?, &handler).await?;
            println!("rebuilt the read models from {n} events");
            Ok(())
        }
    }
}
