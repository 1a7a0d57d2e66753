//! `oms`: the order management system binary.

use clap::{Parser, Subcommand};
use oms_ingress::config::{LogFormat, ServeArgs, apply_config_file};
use oms_ingress::serve;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Low-latency crypto order management system.
#[derive(Parser)]
#[command(name = "oms", version, about)]
struct Cli {
    /// Optional TOML config file; its keys are flag names and act as defaults under env vars.
    #[arg(long, env = "OMS_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP ingress, the pipeline and the processor.
    Serve(Box<ServeArgs>),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> anyhow::Result<()> {
    // The config file must become env defaults before clap reads the environment.
    let pre = std::env::args().collect::<Vec<_>>();
    let file = pre
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| pre.get(i + 1).cloned())
        .or_else(|| {
            pre.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_owned))
        })
        .or_else(|| std::env::var("OMS_CONFIG").ok());
    if let Some(f) = file {
        apply_config_file(std::path::Path::new(&f))?;
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let table = serve::instruments(args.instruments.as_deref())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("oms-http")
                .build()?;
            rt.block_on(async move {
                let backends = serve::embedded(&args)?;
                serve::run(*args, table, backends).await
            })
        }
    }
}
