use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tracetrack_auth::config::DEFAULTS;
use tracetrack_auth::{Application, Settings};

#[derive(Parser)]
#[command(name = "tracetrack-auth", about = "TraceTrack auth service", version)]
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
    /// Create an admin user if none of that name exists; the password is read from the
    /// environment variable TRACETRACK_NEW_ADMIN_PASSWORD. The admin must change it at first login.
    CreateAdmin {
        #[arg(long, default_value = "admin")]
        username: String,
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
    let _telemetry = tracetrack_common::telemetry::init("auth", &settings.common.telemetry)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(tracetrack_common::shutdown::signal())
                .await
        }
        Command::Health { .. } => Ok(()),
        Command::Migrate => {
            let pool = tracetrack_common::db::pool(&settings.common.database, "auth")?;
            tracetrack_common::db::wait_until_ready(&pool, std::time::Duration::from_secs(60))
                .await?;
            tracetrack_common::db::migrate(&pool, "auth", &tracetrack_auth::startup::MIGRATOR)
                .await?;
            tracing::info!("auth migrations applied");
            Ok(())
        }
        Command::CreateAdmin { username } => {
            let password = std::env::var("TRACETRACK_NEW_ADMIN_PASSWORD")
                .map_err(|_| anyhow::anyhow!("set TRACETRACK_NEW_ADMIN_PASSWORD"))?;
            let pool = tracetrack_common::db::pool(&settings.common.database, "auth")?;
            let hasher = tracetrack_auth::password::Hasher::new(&settings.argon2)?;
            let created = tracetrack_auth::startup::create_admin(
                &pool,
                &hasher,
                &username,
                &SecretString::from(password),
                true,
            )
            .await?;
            println!(
                "{}",
                if created {
                    "created"
                } else {
                    "exists already; left unchanged"
                }
            );
            Ok(())
        }
    }
}
