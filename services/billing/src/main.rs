use clap::Subcommand;
use tracetrack_billing::{reconcile, state::SCHEMA, Settings};
use tracetrack_common::cli::{self, Binary};
use tracetrack_common::client;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;

tracetrack_common::service_main!(tracetrack_billing, "billing", SCHEMA, cli::nothing, own: Own => own);

#[derive(Subcommand)]
enum Own {
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

async fn own(command: Own, binary: &Binary, settings: Settings) -> anyhow::Result<()> {
    let Own::Reconcile {
        registry_database_url,
        repair,
    } = command;
    let pool = binary.pool(&settings.common)?;
    let registry_pool = reconcile::registry_pool(&registry_database_url)?;
    let mut differences = reconcile::differences(&pool, &registry_pool).await?;
    if repair && !differences.is_empty() {
        // With gRPC TLS (tls.grpc), the repair calls bag-registry over it, as billing does.
        tracetrack_common::app_tls::set_client_tls_from(&settings.common.tls)?;
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
