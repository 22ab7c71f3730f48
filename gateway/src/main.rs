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
    /// Ask a running gateway's `/readyz`; exit 0 when it answers 200 (for scripts and probes).
    Health {
        /// The gateway's HTTP listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

#[global_allocator]
static GLOBAL: tracetrack_base::MiMalloc = tracetrack_base::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        let (_, doc) = tracetrack_gateway::app::api();
        println!("{}", doc.to_pretty_json()?);
        return Ok(());
    }
    if let Some(Command::Health { addr }) = &cli.command {
        match tracetrack_gateway::health::check(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("gateway at {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let settings: Settings = tracetrack_base::config::load(DEFAULTS)?;
    let _telemetry = tracetrack_base::telemetry::init("gateway", &settings.telemetry)?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(tracetrack_base::shutdown::signal())
        .await
}
