use clap::{Parser, Subcommand};
use tracetrack_billing::config::DEFAULTS;
use tracetrack_billing::{reconcile, startup, state::SCHEMA, Settings};
use tracetrack_common::cli::{Binary, Standard};
use tracetrack_common::client;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;

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
    #[command(flatten)]
    Standard(Standard),
    /// Compare billing's attachments with bag-registry's bills (after a restore of one of them):
    /// one tab-separated line per difference; exit status 2 when there are any.
    Reconcile {
        /// bag-registry's database URL (its runtime role reads enough).
        #[arg(long, env = "TRACETRACK_RECONCILE_REGISTRY_DATABASE_URL")]
        registry_database_url: String,
        /// Make bag-registry agree with billing (release, claim, freeze or unfreeze through its
        /// RPCs), then report what is left.
        #[arg(long)]
        repair: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse()
        .command
        .unwrap_or(Command::Standard(Standard::Serve));
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    let common = settings.common.clone();
    let binary = Binary {
        service: "billing",
        schema: SCHEMA,
        migrator: &startup::MIGRATOR,
    };
    let (registry_database_url, repair) = match command {
        Command::Standard(c) => {
            return tracetrack_common::run_standard!(
                tracetrack_billing,
                binary,
                c,
                &common,
                settings,
                tracetrack_common::cli::nothing
            );
        }
        Command::Reconcile {
            registry_database_url,
            repair,
        } => (registry_database_url, repair),
    };
    let _telemetry = binary.telemetry(&common)?;
    let pool = binary.pool(&common)?;
    let registry_pool = reconcile::registry_pool(&registry_database_url)?;
    let mut differences = reconcile::differences(&pool, &registry_pool).await?;
    if repair && !differences.is_empty() {
        // With gRPC TLS (tls.grpc), the repair calls bag-registry over it, as billing does.
        tracetrack_common::app_tls::set_client_tls_from(&common.tls)?;
        let registry = BagRegistryServiceClient::new(client::upstream(
            &settings.registry_url,
            settings.registry_timeout_ms,
            &settings.common.auth,
        )?);
        for r in reconcile::repair(&registry, &differences).await {
            println!("repair\t{}\t{}", r.outcome, r.difference);
        }
        differences = reconcile::differences(&pool, &registry_pool).await?;
    }
    for d in &differences {
        println!("{d}");
    }
    println!("{} differences", differences.len());
    if !differences.is_empty() {
        std::process::exit(2);
    }
    Ok(())
}
