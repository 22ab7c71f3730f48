use clap::Parser;
use tracetrack_billing::config::DEFAULTS;
use tracetrack_billing::{startup::MIGRATOR, state::SCHEMA, Application, Settings};
use tracetrack_common::cli::{self, Binary, Standard};

#[derive(Parser)]
#[command(
    name = "tracetrack-billing",
    about = "TraceTrack billing service",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Standard>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Standard::Serve);
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    let common = settings.common.clone();
    let binary = Binary {
        service: "billing",
        schema: SCHEMA,
        migrator: &MIGRATOR,
    };
    binary
        .run(
            command,
            &common,
            || async {
                let app = Application::build(settings).await?;
                app.run_until_stopped(tracetrack_common::shutdown::signal())
                    .await
            },
            cli::nothing,
        )
        .await
}
