//! Metrics of the `/ws` fan-out, rendered into `/metrics` through [`Metrics::add_text_source`]
//! (kept in their own file so the HTTP metrics can evolve without touching these).
//!
//! [`Metrics::add_text_source`]: crate::metrics::Metrics::add_text_source

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::protocol::Channel;

/// Event→send latency bucket bounds in microseconds: 50 µs … 5 s.
const LATENCY_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Why a connection was closed by the server (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    Idle,
    MessageTooBig,
    ProtocolError,
}

impl CloseReason {
    const ALL: [CloseReason; 4] = [
        CloseReason::SlowConsumer,
        CloseReason::Idle,
        CloseReason::MessageTooBig,
        CloseReason::ProtocolError,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Idle => "idle",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::ProtocolError => "protocol_error",
        }
    }
}

/// The fan-out's counters and gauges (all relaxed atomics).
#[derive(Default)]
pub struct WsMetrics {
    pub connections: AtomicI64,
    subscriptions: [AtomicI64; Channel::ALL.len()],
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    closes: [AtomicU64; CloseReason::ALL.len()],
    pub error_replies: AtomicU64,
    pub hub_overflows: AtomicU64,
    pub coalesced_batches: AtomicU64,
    pub rebuilds: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_MICROS.len() + 1],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
}

impl WsMetrics {
    pub fn subscribed(&self, c: Channel, delta: i64) {
        self.subscriptions[c as usize].fetch_add(delta, Relaxed);
    }

    pub fn closed(&self, r: CloseReason) {
        self.closes[r as usize].fetch_add(1, Relaxed);
    }

    pub fn closes(&self, r: CloseReason) -> u64 {
        self.closes[r as usize].load(Relaxed)
    }

    /// One message written to a socket, `age` after its event left the processor.
    pub fn sent(&self, bytes: usize, age: Option<Duration>) {
        self.messages_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
        if let Some(age) = age {
            let us = age.as_micros().min(u128::from(u64::MAX)) as u64;
            let i = LATENCY_MICROS
                .iter()
                .position(|b| us <= *b)
                .unwrap_or(LATENCY_MICROS.len());
            self.latency_buckets[i].fetch_add(1, Relaxed);
            self.latency_sum_micros.fetch_add(us, Relaxed);
            self.latency_count.fetch_add(1, Relaxed);
        }
    }

    /// Prometheus text for the `oms_ws_*` families.
    pub fn render(&self, o: &mut String) {
        let _ = write!(
            o,
            "# HELP oms_ws_connections Open WebSocket connections.\n# TYPE oms_ws_connections gauge\noms_ws_connections {}\n",
            self.connections.load(Relaxed)
        );
        o.push_str("# HELP oms_ws_subscriptions WebSocket subscriptions by channel.\n# TYPE oms_ws_subscriptions gauge\n");
        for c in Channel::ALL {
            let _ = writeln!(
                o,
                "oms_ws_subscriptions{{channel=\"{}\"}} {}",
                c.as_str(),
                self.subscriptions[c as usize].load(Relaxed)
            );
        }
        let counters = [
            (
                "oms_ws_messages_sent_total",
                "WebSocket messages written to clients.",
                self.messages_sent.load(Relaxed),
            ),
            (
                "oms_ws_sent_bytes_total",
                "Bytes of WebSocket message payloads written to clients.",
                self.bytes_sent.load(Relaxed),
            ),
            (
                "oms_ws_error_replies_total",
                "WebSocket requests answered with an error.",
                self.error_replies.load(Relaxed),
            ),
            (
                "oms_ws_hub_overflows_total",
                "Event batches the fan-out could not take (its state was rebuilt).",
                self.hub_overflows.load(Relaxed),
            ),
            (
                "oms_ws_coalesced_total",
                "Times the fan-out merged event batches that queued up behind each other into one update.",
                self.coalesced_batches.load(Relaxed),
            ),
            (
                "oms_ws_rebuilds_total",
                "Times the fan-out loaded its state from the engine.",
                self.rebuilds.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        o.push_str("# HELP oms_ws_server_closes_total Connections closed by the server, by reason (slow_consumer = outbound queue full, 1008).\n# TYPE oms_ws_server_closes_total counter\n");
        for r in CloseReason::ALL {
            let _ = writeln!(
                o,
                "oms_ws_server_closes_total{{reason=\"{}\"}} {}",
                r.label(),
                self.closes(r)
            );
        }
        o.push_str("# HELP oms_ws_event_to_send_seconds Time from the processor publishing an event to its message being written to a client socket.\n# TYPE oms_ws_event_to_send_seconds histogram\n");
        let mut cum = 0;
        for (i, c) in self.latency_buckets.iter().enumerate() {
            cum += c.load(Relaxed);
            match LATENCY_MICROS.get(i) {
                Some(b) => {
                    let _ = writeln!(
                        o,
                        "oms_ws_event_to_send_seconds_bucket{{le=\"{}\"}} {cum}",
                        *b as f64 / 1e6
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "oms_ws_event_to_send_seconds_bucket{{le=\"+Inf\"}} {cum}"
                    );
                }
            }
        }
        let _ = write!(
            o,
            "oms_ws_event_to_send_seconds_sum {}\noms_ws_event_to_send_seconds_count {}\n",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6,
            self.latency_count.load(Relaxed)
        );
    }
}
