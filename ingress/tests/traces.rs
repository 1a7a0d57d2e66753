//! Order traces end to end, in process: `oms serve` runs on a thread of this test with the
//! OpenTelemetry layer exporting into an in-memory exporter, and the test checks the span
//! tree of one order — the request's root span continuing the caller's `traceparent`, the
//! ring stages and the log append under it, the processor's apply under the append, the
//! projection under the apply — all in the caller's trace.
//!
//! Two phases in one test (the subscriber is process-global, so this is the only test of the
//! binary that installs one): the embedded journal (the processor gets the command in
//! process), then cluster mode on the real broker, where the apply runs in the replica from
//! the order-log record and so continues the trace from the record's `traceparent` header
//! only — as any other node's would — and the order's event records carry the projection's.
//!
//! In process (not the black-box binary) because the exporter must be inspected.

use crate::sys;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::Parser;
use oms_ingress::config::{QueryStore, ServeArgs};
use oms_ingress::{backends, serve, telemetry};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

const NAMES: [&str; 7] = [
    "oms.request",
    "oms.validate",
    "oms.idempotency",
    "oms.risk",
    "oms.publish",
    "oms.apply",
    "oms.project",
];

/// An in-process `oms serve`, stopped (and waited for) by [`Served::stop`].
struct Served {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// `brokers`: cluster mode on that Kafka, else the embedded journal; no Redis, no
    /// MongoDB whatever the environment says (clap also reads `OMS_*`).
    async fn start(brokers: Option<&str>, prefix: &str, data: &std::path::Path) -> Served {
        let bind = format!("127.0.0.1:{}", sys::free_port());
        let data = data.to_str().unwrap();
        let mut argv = vec!["oms", "--bind", &bind, "--data-dir", data, "--log"];
        match brokers {
            None => argv.push("embedded"),
            Some(_) => argv.extend([
                "kafka",
                "--cluster",
                "--kafka-topic-prefix",
                prefix,
                "--kafka-partitions",
                "2",
                "--node-id",
                "7",
                // The other ring layout than phase 1's default (`threads`).
                "--stages",
                "fused",
            ]),
        }
        let mut args = Cli::parse_from(argv).serve;
        args.kafka_brokers = brokers.map(str::to_owned);
        args.redis_url = None;
        args.mongo_url = None;
        args.query_store = QueryStore::Memory;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let table = serve::instruments(None)?;
            let auth = serve::authenticator(&args)?;
            let (backends, metrics, store) = backends::build(&args, &table)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let stopped = async {
                let _ = stop_rx.await;
            };
            rt.block_on(serve::run_until(
                args, table, backends, metrics, store, auth, stopped,
            ))
        });
        let base = format!("http://{bind}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{base}/ready")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            if thread.is_finished() {
                panic!("the server stopped at start: {:?}", thread.join());
            }
            assert!(Instant::now() < deadline, "the server did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Served { base, stop, thread }
    }

    async fn place(&self, traceparent: Option<&str>, key: &str) {
        let mut rb = reqwest::Client::new()
            .post(format!("{}/api/orders", self.base))
            .header("X-Account-Id", "trader-1")
            .header("X-Idempotency-Key", key)
            .json(&serde_json::json!({
                "symbol": "BTC/USD", "side": "BUY", "quantity": "0.1", "price": "45000",
                "orderType": "LIMIT"
            }));
        if let Some(t) = traceparent {
            rb = rb.header("traceparent", t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// Places an order in the caller's trace `trace` (its span `span`) and returns the
    /// order's spans, checked to form the documented tree under the caller's span.
    async fn place_traced(
        &self,
        exporter: &InMemorySpanExporter,
        trace: &str,
        span: &str,
    ) -> HashMap<String, SpanData> {
        let traceparent = format!("00-{trace}-{span}-01");
        self.place(Some(&traceparent), &sys::uniq("k-traced")).await;
        let spans = spans_of(exporter, TraceId::from_hex(trace).unwrap());
        assert_tree(&spans, SpanId::from_hex(span).unwrap());
        spans
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::task::spawn_blocking(move || self.thread.join().unwrap().unwrap())
            .await
            .unwrap();
    }
}

/// The finished spans of `trace`, by name, once every step has one (or after 15 s).
fn spans_of(exporter: &InMemorySpanExporter, trace: TraceId) -> HashMap<String, SpanData> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans: HashMap<String, SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|s| (s.name.to_string(), s))
            .collect();
        if NAMES.iter().all(|w| spans.contains_key(*w)) {
            return spans;
        }
        if Instant::now() > deadline {
            for s in exporter.get_finished_spans().unwrap() {
                eprintln!(
                    "finished: {} trace {} span {} parent {}",
                    s.name,
                    s.span_context.trace_id(),
                    s.span_context.span_id(),
                    s.parent_span_id
                );
            }
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One span per step, all of `trace`, in the documented tree under `root_parent`.
#[track_caller]
fn assert_tree(spans: &HashMap<String, SpanData>, root_parent: SpanId) {
    let mut got: Vec<&str> = spans.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = NAMES.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "one span of each step in the trace");
    let id = |n: &str| spans[n].span_context.span_id();
    let parent = |n: &str| spans[n].parent_span_id;
    assert_eq!(parent("oms.request"), root_parent);
    for stage in ["oms.validate", "oms.idempotency", "oms.risk", "oms.publish"] {
        assert_eq!(
            parent(stage),
            id("oms.request"),
            "{stage} under the request"
        );
    }
    assert_eq!(
        parent("oms.apply"),
        id("oms.publish"),
        "apply under the log append"
    );
    assert_eq!(
        parent("oms.project"),
        id("oms.apply"),
        "projection under the apply"
    );
    let ids: HashSet<SpanId> = spans.values().map(|s| s.span_context.span_id()).collect();
    assert_eq!(ids.len(), NAMES.len(), "distinct span ids");
}

/// The `traceparent` headers of the records of `topic` (every partition, from the start).
fn traceparents_on(brokers: &str, topic: &str, want: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while out.len() < want && Instant::now() < end {
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let tp = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        out.push(tp.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_from_the_request_to_the_projection() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(telemetry::layer(&provider));
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    telemetry::enable();

    // Phase 1: the embedded journal.
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(None, "", dir.path()).await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let spans = node
        .place_traced(&exporter, caller_trace, "00f067aa0ba902b7")
        .await;
    let trace = TraceId::from_hex(caller_trace).unwrap();
    assert!(spans["oms.request"].parent_span_is_remote);

    // Without a `traceparent` the request starts a trace of its own, with a root span.
    node.place(None, &sys::uniq("k-new")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let found = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| s.name == "oms.publish" && s.span_context.trace_id() != trace);
        if let Some(s) = found {
            break s.span_context.trace_id();
        }
        assert!(Instant::now() < deadline, "no trace for the second order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_tree(&spans_of(&exporter, second), SpanId::INVALID);

    // The readiness probes polled at start made no spans.
    let paths: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .flat_map(|s| s.attributes.iter())
        .filter(|kv| kv.key.as_str() == "url.path")
        .map(|kv| kv.value.to_string())
        .collect();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p == "/api/orders"),
        "{paths:?}"
    );
    node.stop().await;

    // Phase 2: cluster mode on the real broker. The replica applies the command from the
    // order-log record, so its apply span can only find its parent in the record's header.
    let Some(svc) = sys::services() else { return };
    let prefix = format!("{}.", sys::uniq("traces"));
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(Some(&svc.brokers), &prefix, dir.path()).await;
    let cluster_trace = "0af7651916cd43dd8448eb211c80319c";
    let spans = node
        .place_traced(&exporter, cluster_trace, "b7ad6b7169203331")
        .await;
    let text = |n: &str| format!("00-{cluster_trace}-{}-01", spans[n].span_context.span_id());
    // The record carries the log-append span, the order's event the projection span.
    let orders = traceparents_on(&svc.brokers, &format!("{prefix}orders"), 1);
    assert_eq!(orders, [text("oms.publish")]);
    let updates = traceparents_on(&svc.brokers, &format!("{prefix}order-updates"), 1);
    assert_eq!(updates, [text("oms.project")]);
    node.stop().await;
    let _ = provider.shutdown();
}
