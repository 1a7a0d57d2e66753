//! `oms`: the order management system binary.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use oms_ingress::config::{LogFormat, ServeArgs, apply_defaults, config_file_values};
use oms_ingress::{backends, serve};

// mimalloc unless built with `--features system-alloc`: heap profilers (heaptrack, valgrind)
// see only the system allocator's calls, so that build is the one to profile memory with.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Low-latency crypto order management system.
#[derive(Parser)]
#[command(name = "oms", version, about)]
struct Cli {
    /// Optional TOML config file; its keys are `serve` flag names and act as defaults under
    /// env vars and flags.
    #[arg(long, env = "OMS_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP ingress, the pipeline and the processor.
    Serve(Box<ServeArgs>),
    /// Operator tasks.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Create the Kafka topics (orders, executions, order-updates, prices, risk-events).
    CreateTopics {
        #[arg(long, env = "OMS_KAFKA_BROKERS")]
        kafka_brokers: String,
        #[arg(long, env = "OMS_KAFKA_TOPIC_PREFIX", default_value = "")]
        kafka_topic_prefix: String,
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication_factor: i32,
        #[arg(long, default_value_t = 2)]
        min_insync_replicas: i32,
    },
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
    // The config file's values become the `serve` flags' defaults before clap parses.
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
    let mut cmd = Cli::command();
    if let Some(f) = file {
        let values = config_file_values(std::path::Path::new(&f))?;
        let serve = cmd
            .find_subcommand("serve")
            .cloned()
            .expect("the serve subcommand exists");
        let serve = apply_defaults(serve, &values)?;
        cmd = cmd.mut_subcommand("serve", move |_| serve);
    }
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let table = serve::instruments(args.instruments.as_deref())?;
            // Settings that can refuse to start are checked before any adapter runs.
            serve::check_settings(&args)?;
            let auth = serve::authenticator(&args)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("oms-http")
                .build()?;
            // Adapters block on runtimes of their own: build them before entering ours.
            let (backends, metrics, store) = backends::build(&args, &table)?;
            rt.block_on(serve::run(*args, table, backends, metrics, store, auth))
        }
        Command::Admin(Admin::CreateTopics {
            kafka_brokers,
            kafka_topic_prefix,
            partitions,
            replication_factor,
            min_insync_replicas,
        }) => {
            init_logging(LogFormat::Text);
            let created = oms_kafka::create_topics(
                &kafka_brokers,
                &kafka_topic_prefix,
                partitions,
                replication_factor,
                min_insync_replicas,
            )?;
            let all = oms_kafka::Topics::new(&kafka_topic_prefix);
            for t in all.all() {
                let state = if created.iter().any(|c| c == t) {
                    "created"
                } else {
                    "exists"
                };
                println!("{t}\t{state}");
            }
            Ok(())
        }
    }
}
