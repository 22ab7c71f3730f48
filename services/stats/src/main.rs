use clap::Subcommand;
use sqlx::PgPool;
use tracetrack_common::cli::Binary;
use tracetrack_stats::{startup, state::SCHEMA, Settings};

tracetrack_common::service_main!(tracetrack_stats, "stats", SCHEMA, after_migrate, own: Own => own);

/// After migrations: the audit trail's monthly partitions.
async fn after_migrate(pool: PgPool) -> anyhow::Result<()> {
    startup::ensure_partitions(&pool).await
}

#[derive(Subcommand)]
enum Own {
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

async fn own(command: Own, binary: &Binary, settings: Settings) -> anyhow::Result<()> {
    let pool = binary.pool(&settings.common)?;
    match command {
        Own::Parked => {
            for (id, event_type, reason, at) in
                tracetrack_common::consumer::list_parked(&pool, SCHEMA).await?
            {
                println!("{id}\t{}\t{event_type}\t{reason}", at.to_rfc3339());
            }
        }
        Own::Replay { id } => {
            let (handler, _) = startup::handler(&settings);
            let (ok, still) =
                tracetrack_common::consumer::replay_parked(&pool, SCHEMA, handler.as_ref(), id)
                    .await?;
            println!("replayed {ok}, still parked {still}");
        }
        Own::Rebuild => {
            let (handler, _) = startup::handler(&settings);
            let n = startup::rebuild(&pool, &handler).await?;
            println!("rebuilt the read models from {n} events");
        }
    }
    Ok(())
}
