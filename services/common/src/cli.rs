//! The commands every service binary has — `serve` (the default), `migrate` and `health` — run
//! one way for all five. A binary with commands of its own flattens [`Standard`] into its enum
//! and hands the standard ones to [`Binary::run`].

use std::future::Future;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::config::CommonSettings;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Standard {
    /// Serve gRPC (the default).
    Serve,
    /// Run the database migrations (and the service's own schema upkeep, such as partitions)
    /// and exit (a Kubernetes Job, with a DDL role).
    Migrate,
    /// Exit 0 when the running service reports SERVING (for scripts and probes).
    Health {
        /// Defaults to the configured gRPC address.
        #[arg(long)]
        addr: Option<String>,
    },
}

/// A service binary: its name (for telemetry), its schema and its migrations.
pub struct Binary {
    pub service: &'static str,
    pub schema: &'static str,
    pub migrator: &'static Migrator,
}

impl Binary {
    /// Runs a standard command: `serve` runs `serve` (build the application, run it until a
    /// shutdown signal); `migrate` migrates, then runs `after_migrate` on the pool; `health`
    /// probes and exits 0 (SERVING) or 1.
    pub async fn run<S, M>(
        &self,
        command: Standard,
        common: &CommonSettings,
        serve: impl FnOnce() -> S,
        after_migrate: impl FnOnce(PgPool) -> M,
    ) -> anyhow::Result<()>
    where
        S: Future<Output = anyhow::Result<()>>,
        M: Future<Output = anyhow::Result<()>>,
    {
        if let Standard::Health { addr } = &command {
            let addr = addr.as_deref().unwrap_or(&common.grpc_addr);
            // With gRPC TLS, over TLS, expecting the certificate this process's files hold
            // (the probe dials an address, not a name the certificate carries).
            let own = common
                .tls
                .grpc
                .as_ref()
                .and_then(|g| g.cert_file.as_deref())
                .map(crate::app_tls::OwnCert::new);
            let url = match own {
                Some(_) => format!("https://{addr}"),
                None => format!("http://{addr}"),
            };
            let own =
                own.map(|o| o as std::sync::Arc<dyn rustls::client::danger::ServerCertVerifier>);
            let serving = match crate::server::probe_with(&url, "", own).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("health: {url}: {e:#}");
                    false
                }
            };
            std::process::exit(if serving { 0 } else { 1 });
        }
        let _telemetry = self.telemetry(common)?;
        match command {
            Standard::Serve => serve().await,
            Standard::Health { .. } => Ok(()),
            Standard::Migrate => {
                let pool = self.pool(common)?;
                crate::db::wait_until_ready(&pool, Duration::from_secs(60)).await?;
                crate::db::migrate(&pool, self.schema, self.migrator).await?;
                after_migrate(pool).await?;
                tracing::info!(service = self.service, "migrations applied");
                Ok(())
            }
        }
    }

    /// Telemetry for a command of the binary's own (flushed when the guard drops).
    pub fn telemetry(
        &self,
        common: &CommonSettings,
    ) -> anyhow::Result<crate::telemetry::TelemetryGuard> {
        crate::telemetry::init(self.service, &common.telemetry)
    }

    /// The service's pool, for a command of the binary's own.
    pub fn pool(&self, common: &CommonSettings) -> anyhow::Result<PgPool> {
        crate::db::pool(&common.database, self.schema)
    }
}

/// For a binary with nothing to do after migrating.
pub async fn nothing(_: PgPool) -> anyhow::Result<()> {
    Ok(())
}

/// The whole `main` of a service binary: `serve` (the default), `migrate` and `health`, and the
/// binary's own commands if it has any.
///
/// - `tracetrack_common::service_main!(tracetrack_billing, "billing")`: the standard commands;
/// - `service_main!(tracetrack_scan, "scan", SCHEMA, |pool| async move { … })`: with the
///   service's own upkeep after migrating;
/// - `service_main!(tracetrack_stats, "stats", SCHEMA, after_migrate, own: Own => own)`: with
///   commands of its own, a `clap::Subcommand` enum `Own` flattened beside the standard ones and
///   run by `async fn own(command: Own, binary: &Binary, settings: Settings)` (telemetry is on).
///
/// The crate must export `Application`, `Settings`, `config::DEFAULTS` and `startup::MIGRATOR`,
/// and `state::SCHEMA` unless the longer forms name the schema.
#[macro_export]
macro_rules! service_main {
    ($krate:ident, $name:literal) => {
        $crate::service_main!($krate, $name, $krate::state::SCHEMA, $crate::cli::nothing);
    };
    ($krate:ident, $name:literal, $schema:path, $after_migrate:expr) => {
        $crate::service_main!(
            $krate,
            $name,
            $schema,
            $after_migrate,
            own: $crate::cli::NoCommands => $crate::cli::no_commands
        );
    };
    ($krate:ident, $name:literal, $schema:path, $after_migrate:expr, own: $own:ty => $run_own:path) => {
        #[derive(clap::Parser)]
        #[command(name = concat!("tracetrack-", $name))]
        #[command(about = concat!("TraceTrack ", $name, " service"))]
        #[command(version)]
        struct Cli {
            #[command(subcommand)]
            command: Option<Command>,
        }

        #[derive(clap::Subcommand)]
        enum Command {
            #[command(flatten)]
            Standard($crate::cli::Standard),
            #[command(flatten)]
            Own($own),
        }

        #[global_allocator]
        static GLOBAL: $crate::MiMalloc = $crate::MiMalloc;

        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            let command = <Cli as clap::Parser>::parse()
                .command
                .unwrap_or(Command::Standard($crate::cli::Standard::Serve));
            let settings: $krate::Settings = $crate::config::load($krate::config::DEFAULTS)?;
            let common = settings.common.clone();
            let binary = $crate::cli::Binary {
                service: $name,
                schema: $schema,
                migrator: &$krate::startup::MIGRATOR,
            };
            match command {
                Command::Standard(c) => {
                    $crate::run_standard!($krate, binary, c, &common, settings, $after_migrate)
                }
                Command::Own(own) => {
                    let _telemetry = binary.telemetry(&common)?;
                    $run_own(own, &binary, settings).await
                }
            }
        }
    };
}

/// The own commands of a binary that has none.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NoCommands {}

/// Runs a command of [`NoCommands`] (there is none).
pub async fn no_commands<S>(command: NoCommands, _: &Binary, _: S) -> anyhow::Result<()> {
    match command {}
}

/// Runs one of the [`Standard`] commands of service crate `$krate` (`serve`: its `Application`
/// until SIGTERM or ctrl-c), for binaries that have commands of their own beside them.
#[macro_export]
macro_rules! run_standard {
    ($krate:ident, $binary:expr, $command:expr, $common:expr, $settings:expr, $after_migrate:expr) => {
        $binary
            .run(
                $command,
                $common,
                || async {
                    let app = $krate::Application::build($settings).await?;
                    app.run_until_stopped($crate::shutdown::signal()).await
                },
                $after_migrate,
            )
            .await
    };
}
