//! Traces (ARCHITECTURE.md §8; docs/observability.md, "Traces"): one order is one trace
//! across the HTTP ingress, the ring stages, the log append, the processor's apply and the
//! hand-off of its events to the projectors — across nodes too, because the W3C
//! `traceparent` of the log append rides on the order-log record as a Kafka header and any
//! node's processor that reads the record continues the trace from it.
//!
//! Off by default. Spans are `tracing` spans (target [`TARGET`]) turned into OpenTelemetry
//! spans by `tracing-opentelemetry`, exported over OTLP/HTTP (protobuf) by a batch processor
//! on its own thread ([`otlp`]). When off, nothing here allocates or locks on the hot path:
//! every call site first checks [`enabled`] (one relaxed atomic load) or finds the slot's
//! `Option<TraceParent>` empty, and a [`TraceParent`] is a `Copy` value of 25 bytes, so the
//! ring's slots, the durable hand-off and the Kafka record carry it without a heap.

pub mod http;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of every span of an order's trace (the only spans exported).
pub const TARGET: &str = "oms_trace";
/// The W3C Trace Context header, on HTTP requests and on Kafka records alike.
pub const TRACEPARENT: &str = "traceparent";
/// Length of a version-00 `traceparent` value: `00-{32 hex}-{16 hex}-{2 hex}`.
pub const TRACEPARENT_LEN: usize = 55;

/// The `traceparent` of each command of the batch the publish stage hands to the log, by
/// index (the same type as `oms_kafka::Traceparents`, which the Kafka log reads).
pub type RecordTraces = std::sync::Arc<parking_lot::Mutex<Vec<Option<[u8; TRACEPARENT_LEN]>>>>;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether order traces are recorded (set once at start by [`enable`]).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns order traces on for this process. Call after the subscriber with [`layer`] is
/// installed, or the spans go nowhere.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Errors of setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-endpoint: {0}")]
    Endpoint(String),
    #[error("--trace-sample-ratio must be within 0..=1, got {0}")]
    Ratio(f64),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("OTLP HTTP client: {0}")]
    Client(#[from] std::io::Error),
}

/// A span's W3C trace context, as carried beside a command (slot, hand-off, Kafka header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value (W3C Trace Context level 1). A future version's longer
    /// value is read by its first four fields, as the specification asks; version `ff`, an
    /// all-zero id and malformed values are refused (the caller then starts a new trace).
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        let v = std::str::from_utf8(v).ok()?.trim();
        if v.len() < TRACEPARENT_LEN || (v.len() > TRACEPARENT_LEN && v.as_bytes()[55] != b'-') {
            return None;
        }
        let (version, rest) = v.split_at(2);
        if version == "ff" || (version == "00" && v.len() != TRACEPARENT_LEN) {
            return None;
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let b = rest.as_bytes();
        if b[0] != b'-' || b[33] != b'-' || b[50] != b'-' {
            return None;
        }
        let (t, s, f) = (&rest[1..33], &rest[34..50], &rest[51..53]);
        if !(hex(version) && hex(t) && hex(s) && hex(f)) {
            return None;
        }
        let tp = TraceParent {
            trace_id: u128::from_str_radix(t, 16).ok()?,
            span_id: u64::from_str_radix(s, 16).ok()?,
            flags: u8::from_str_radix(f, 16).ok()?,
        };
        (tp.trace_id != 0 && tp.span_id != 0).then_some(tp)
    }

    /// The version-00 `traceparent` text, on the stack.
    pub fn to_text(self) -> [u8; TRACEPARENT_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0] = b'0';
        out[1] = b'0';
        let mut put = |at: usize, v: u128, digits: usize| {
            for i in 0..digits {
                out[at + i] = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
            }
        };
        put(3, self.trace_id, 32);
        put(36, u128::from(self.span_id), 16);
        put(53, u128::from(self.flags), 2);
        out
    }

    /// The context of `span` (`None` if the span is disabled or tracing is off).
    pub fn of(span: &tracing::Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| TraceParent {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        })
    }

    /// An OpenTelemetry context whose (remote) parent is this one.
    fn context(self) -> opentelemetry::Context {
        let sc = SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            TraceFlags::new(self.flags),
            true,
            TraceState::NONE,
        );
        opentelemetry::Context::new().with_remote_span_context(sc)
    }
}

/// The spans of an order's trace below its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ring stage 1.
    Validate,
    /// Ring stage 2.
    Idempotency,
    /// Ring stage 3 (R1).
    Risk,
    /// Ring stage 4 to the log's outcome: the order-log append.
    Publish,
    /// The processor applying the command (any node, from the order-log record).
    Apply,
    /// Handing the command's events to the projectors (Kafka event topics, MongoDB, WS).
    Project,
}

/// A span for `step`, child of `parent`. Call only with a context from a traced request.
pub fn child(step: Step, parent: TraceParent) -> tracing::Span {
    let span = match step {
        Step::Validate => tracing::info_span!(target: TARGET, "oms.validate"),
        Step::Idempotency => tracing::info_span!(target: TARGET, "oms.idempotency"),
        Step::Risk => tracing::info_span!(target: TARGET, "oms.risk"),
        Step::Publish => tracing::info_span!(target: TARGET, "oms.publish"),
        Step::Apply => tracing::info_span!(target: TARGET, "oms.apply"),
        Step::Project => tracing::info_span!(target: TARGET, "oms.project"),
    };
    // Fails only for a span already started elsewhere or disabled: then it is not exported.
    let _ = span.set_parent(parent.context());
    span
}

/// The root span of a request (`oms.request`), continuing the caller's trace when the
/// request has a valid `traceparent` header, else starting a new one. Only when [`enabled`].
pub fn request_span(
    method: &str,
    path: &str,
    correlation_id: &str,
    traceparent: Option<&[u8]>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "oms.request",
        http.request.method = method,
        url.path = path,
        correlation_id = correlation_id,
    );
    if let Some(p) = traceparent.and_then(TraceParent::parse) {
        let _ = span.set_parent(p.context());
    }
    span
}

/// The subscriber layer that turns this module's spans (and only them) into OpenTelemetry
/// spans of `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("oms"))
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() == TARGET
        }))
}

/// A tracer provider exporting over OTLP/HTTP (protobuf) to `endpoint` (a collector's base
/// URL such as `http://collector:4318`; `/v1/traces` is appended when it has no path),
/// sampling `ratio` of the traces that start here and following the caller's decision for
/// the others (parent-based).
pub fn otlp(endpoint: &str, ratio: f64, node: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
    if !(0.0..=1.0).contains(&ratio) {
        return Err(TelemetryError::Ratio(ratio));
    }
    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http::OtlpClient::new()?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("oms")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node.to_owned(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// `endpoint` with `/v1/traces` when it names no path; only `http://` (see [`http`]).
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let uri: ::http::Uri = endpoint
        .parse()
        .map_err(|e| TelemetryError::Endpoint(format!("'{endpoint}': {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(TelemetryError::Endpoint(format!(
            "'{endpoint}': expected http://HOST:PORT[/PATH] (send to a local collector; https is not supported)"
        )));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

thread_local! {
    /// The `oms.project` span's context while the processor hands one traced command's
    /// events to the sinks, so the Kafka sink can put it on the event records.
    static PROJECTING: std::cell::Cell<Option<TraceParent>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (which publishes one traced command's events to the sinks) inside an
/// `oms.project` span, child of `parent`, with [`projecting`] answering its context.
pub fn project<R>(parent: TraceParent, f: impl FnOnce() -> R) -> R {
    let span = child(Step::Project, parent);
    let _entered = span.enter();
    PROJECTING.set(TraceParent::of(&span));
    let r = f();
    PROJECTING.set(None);
    r
}

/// Inside [`project`]: the context to write on the event records (`None` elsewhere).
pub fn projecting() -> Option<TraceParent> {
    PROJECTING.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_bad_values() {
        let s = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(s).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
        assert_eq!(&p.to_text(), s);
        // A later version with more fields is read by its first four.
        assert!(
            TraceParent::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(
                TraceParent::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_and_must_be_http() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/custom/traces").unwrap(),
            "http://c:4318/custom/traces"
        );
        assert!(traces_url("https://c:4318").is_err());
        assert!(traces_url("collector:4318").is_err());
        assert!(otlp("http://127.0.0.1:4318", 1.5, "n").is_err());
    }
}
