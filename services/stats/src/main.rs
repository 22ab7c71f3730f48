use clap::{Parser, Subcommand};
use tracetrack_common::cli::{Binary, Standard};
use tracetrack_stats::config::DEFAULTS;
use tracetrack_stats::{startup, state::SCHEMA, Settings};

#[derive(Parser)]
#[command(name = "tracetrack-stats", about = "TraceTrack stats service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Standard(Standard),
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
    let command = Cli::parse()
        .command
        .unwrap_or(Command::Standard(Standard::Serve));
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    let common = settings.common.clone();
    let binary = Binary {
        service: "stats",
        schema: SCHEMA,
        migrator: &startup::MIGRATOR,
    };
    let command = match command {
        Command::Standard(c) => {
            // After migrations: the audit trail's monthly partitions.
            let partitions = |pool| async move { startup::ensure_partitions(&pool).await };
            return tracetrack_common::run_standard!(
                tracetrack_stats,
                binary,
                c,
                &common,
                settings,
                partitions
            );
        }
        own => own,
    };
    let _telemetry = binary.telemetry(&common)?;
    let pool = binary.pool(&common)?;
    match command {
        Command::Standard(_) => Ok(()),
        Command::Parked => {
            for (id, event_type, reason, at) in
                tracetrack_common::consumer::list_parked(&pool, SCHEMA).await?
            {
                println!("{id}\t{}\t{event_type}\t{reason}", at.to_rfc3339());
            }
            Ok(())
        }
        Command::Replay { id } => {
            let (handler, _) = startup::handler(&settings);
            let (ok, still) =
                tracetrack_common::consumer::replay_parked(&pool, SCHEMA, handler.as_ref(), id)
                    .await?;
            println!("replayed {ok}, still parked {still}");
            Ok(())
        }
        Command::Rebuild => {
            let (handler, _) = startup::handler(&settings);
            let n = startup::rebuild(&pool, &handler).await?;
            println!("rebuilt the read models from {n} events");
            Ok(())
        }
    }
}
