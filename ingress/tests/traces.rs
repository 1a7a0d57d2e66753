//! Order traces end to end, in process: `oms serve` (embedded journal) runs on a thread of
//! this test with the OpenTelemetry layer exporting into an in-memory exporter, and the test
//! checks the span tree of one order — the request's root span continuing the caller's
//! `traceparent`, the ring stages and the log append under it, the processor's apply under
//! the append, the projection under the apply — all in the caller's trace.
//!
//! In process (not the black-box binary) because the exporter must be inspected; the
//! subscriber is process-global, so this is the only test of the binary that installs one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use oms_ingress::config::ServeArgs;
use oms_ingress::{backends, serve, telemetry};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The finished spans of `trace`, by name, once every name of `want` is there.
fn spans_of(
    exporter: &InMemorySpanExporter,
    trace: TraceId,
    want: &[&str],
) -> HashMap<String, SpanData> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans: HashMap<String, SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|s| (s.name.to_string(), s))
            .collect();
        if want.iter().all(|w| spans.contains_key(*w)) || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().to_str().unwrap().to_owned();
    let bind = format!("127.0.0.1:{port}");
    let args = Cli::parse_from(["oms", "--bind", &bind, "--data-dir", &data]).serve;
    let table = serve::instruments(None).unwrap();
    let auth = serve::authenticator(&args).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let (backends, metrics, store) = backends::build(&args, &table).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve::run_until(
            args,
            table,
            backends,
            metrics,
            store,
            auth,
            async {
                let _ = stop_rx.await;
            },
        ))
    });

    let base = format!("http://{bind}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client.get(format!("{base}/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let order = serde_json::json!({
        "symbol": "BTC/USD", "side": "BUY", "quantity": "0.1", "price": "45000", "orderType": "LIMIT"
    });
    let place = |traceparent: Option<String>, key: &'static str| {
        let mut rb = client
            .post(format!("{base}/api/orders"))
            .header("X-Account-Id", "trader-1")
            .header("X-Idempotency-Key", key)
            .json(&order);
        if let Some(t) = traceparent {
            rb = rb.header("traceparent", t);
        }
        rb.send()
    };

    // A caller's trace is continued.
    let r = place(
        Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
        "k-traced",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let trace = TraceId::from_hex(CALLER_TRACE).unwrap();
    let names = [
        "oms.request",
        "oms.validate",
        "oms.idempotency",
        "oms.risk",
        "oms.publish",
        "oms.apply",
        "oms.project",
    ];
    let spans = spans_of(&exporter, trace, &names);
    let mut got: Vec<&str> = spans.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "one span of each step, all in the caller's trace"
    );
    let id = |n: &str| spans[n].span_context.span_id();
    let parent = |n: &str| spans[n].parent_span_id;
    assert_eq!(
        parent("oms.request"),
        SpanId::from_hex(CALLER_SPAN).unwrap()
    );
    assert!(spans["oms.request"].parent_span_is_remote);
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
    let all: std::collections::HashSet<SpanId> =
        spans.values().map(|s| s.span_context.span_id()).collect();
    assert_eq!(all.len(), names.len(), "distinct span ids");

    // Without a `traceparent` the request starts a trace of its own, with a root span.
    let r = place(None, "k-new").await.unwrap();
    assert_eq!(r.status(), 201);
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
    let new_trace = spans_of(&exporter, second, &names);
    assert_eq!(new_trace.len(), names.len(), "{:?}", new_trace.keys());
    assert_eq!(new_trace["oms.request"].parent_span_id, SpanId::INVALID);
    assert_eq!(
        new_trace["oms.apply"].parent_span_id,
        new_trace["oms.publish"].span_context.span_id()
    );

    // The readiness probes polled above made no spans.
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

    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || server.join().unwrap().unwrap())
        .await
        .unwrap();
    let _ = provider.shutdown();
}
