use clap::{Parser, Subcommand};
use tracetrack_gateway::config::DEFAULTS;
use tracetrack_gateway::{Application, Settings};

#[derive(Parser)]
#[command(
    name = "tracetrack-gateway",
    about = "TraceTrack HTTP gateway",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        let (_, doc) = tracetrack_gateway::app::api();
        println!("{}", doc.to_pretty_json()?);
        return Ok(());
    }
    let settings: Settings = tracetrack_common::config::load(DEFAULTS)?;
    let _telemetry = tracetrack_common::telemetry::init("gateway", &settings.telemetry)?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(tracetrack_common::shutdown::signal())
        .await
}
