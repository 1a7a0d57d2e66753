//! `oms`: the order management system binary.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use oms_ingress::config::{LogFormat, ServeArgs, apply_defaults, config_file_values};
use oms_ingress::{backends, serve, telemetry};
use opentelemetry_sdk::trace::SdkTracerProvider;

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

/// JSON or text logs on stderr (filtered by `RUST_LOG`, default `info`), and, when
/// `traces` is given, the OpenTelemetry layer that exports order traces (its own filter:
/// the order spans only, whatever `RUST_LOG` says).
fn init_logging(format: LogFormat, traces: Option<&SdkTracerProvider>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let otel = traces.map(telemetry::layer);
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if traces.is_some() {
        telemetry::enable();
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
            let traces = match &args.otlp_endpoint {
                Some(url) => Some(telemetry::otlp(
                    url,
                    args.trace_sample_ratio,
                    &args.node_name(),
                )?),
                None => None,
            };
            init_logging(args.log_format, traces.as_ref());
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
            let served = rt.block_on(serve::run(*args, table, backends, metrics, store, auth));
            if let Some(p) = traces {
                // Export what the batch processor still holds.
                if let Err(e) = p.shutdown() {
                    tracing::warn!(error = %e, "trace exporter shutdown");
                }
            }
            served
        }
        Command::Admin(Admin::CreateTopics {
            kafka_brokers,
            kafka_topic_prefix,
            partitions,
            replication_factor,
            min_insync_replicas,
        }) => {
            init_logging(LogFormat::Text, None);
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
