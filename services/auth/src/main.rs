use clap::Subcommand;
use secrecy::SecretString;
use tracetrack_auth::{startup, state::SCHEMA, Settings};
use tracetrack_common::cli::{self, Binary};

tracetrack_common::service_main!(tracetrack_auth, "auth", SCHEMA, cli::nothing, own: Own => own);

#[derive(Subcommand)]
enum Own {
    /// Create an admin user if none of that name exists; the password is read from the
    /// environment variable TRACETRACK_NEW_ADMIN_PASSWORD. The admin must change it at first login.
    CreateAdmin {
        #[arg(long, default_value = "admin")]
        username: String,
    },
}

async fn own(command: Own, binary: &Binary, settings: Settings) -> anyhow::Result<()> {
    let Own::CreateAdmin { username } = command;
    let password = std::env::var("TRACETRACK_NEW_ADMIN_PASSWORD")
        .map_err(|_| anyhow::anyhow!("set TRACETRACK_NEW_ADMIN_PASSWORD"))?;
    let pool = binary.pool(&settings.common)?;
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
