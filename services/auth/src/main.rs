use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tracetrack_auth::config::DEFAULTS;
use tracetrack_auth::{startup, state::SCHEMA, Settings};
use tracetrack_common::cli::{self, Binary, Standard};

#[derive(Parser)]
#[command(name = "tracetrack-auth", about = "TraceTrack auth service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Standard(Standard),
    /// Create an admin user if none of that name exists; the password is read from the
    /// environment variable TRACETRACK_NEW_ADMIN_PASSWORD. The admin must change it at first login.
    CreateAdmin {
        #[arg(long, default_value = "admin")]
        username: String,
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
        service: "auth",
        schema: SCHEMA,
        migrator: &startup::MIGRATOR,
    };
    match command {
        Command::Standard(c) => {
            tracetrack_common::run_standard!(
                tracetrack_auth,
                binary,
                c,
                &common,
                settings,
                cli::nothing
            )
        }
        Command::CreateAdmin { username } => {
            let _telemetry = binary.telemetry(&common)?;
            let password = std::env::var("TRACETRACK_NEW_ADMIN_PASSWORD")
                .map_err(|_| anyhow::anyhow!("set TRACETRACK_NEW_ADMIN_PASSWORD"))?;
            let pool = binary.pool(&common)?;
            let hasher = tracetrack_auth::password::Hasher::new(&settings.argon2)?;
            let created = startup::create_admin(
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
