//! `oms serve` flags of the WebSocket endpoint `/ws` (docs/websocket.md "Limits").
//!
//! Kept apart from the HTTP flags and flattened into `ServeArgs`, so every limit of the
//! fan-out is visible (with its default) in `oms serve --help` and settable by `OMS_WS_*`.

use clap::Args;

/// Book depths a client may subscribe to (each is its own stream with its own `seq`).
pub const BOOK_DEPTHS: [u32; 7] = [1, 10, 25, 50, 100, 500, 1000];

/// WebSocket limits and intervals.
#[derive(Clone, Debug, Args)]
pub struct WsArgs {
    /// Most WebSocket connections at once (the upgrade answers 503 beyond).
    #[arg(long, env = "OMS_WS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub ws_max_connections: usize,

    /// Most authenticated connections per account (429 / `TOO_MANY_CONNECTIONS` beyond).
    #[arg(long, env = "OMS_WS_MAX_CONNECTIONS_PER_ACCOUNT", default_value_t = 32)]
    pub ws_max_connections_per_account: usize,

    /// Most subscriptions per connection.
    #[arg(long, env = "OMS_WS_MAX_SUBSCRIPTIONS", default_value_t = 64)]
    pub ws_max_subscriptions: usize,

    /// Largest inbound message (and frame) in bytes; larger ones close the connection (1009).
    #[arg(long, env = "OMS_WS_MAX_MESSAGE_BYTES", default_value_t = 16_384)]
    pub ws_max_message_bytes: usize,

    /// Outbound queue per connection, in messages; a connection whose queue is full is a slow
    /// consumer and is closed with 1008.
    #[arg(long, env = "OMS_WS_SEND_QUEUE", default_value_t = 4096)]
    pub ws_send_queue: usize,

    /// Event batches buffered between the processor and the fan-out thread; on overflow the
    /// fan-out rebuilds its state and sends fresh snapshots (the processor never waits).
    #[arg(long, env = "OMS_WS_HUB_QUEUE", default_value_t = 65_536)]
    pub ws_hub_queue: usize,

    /// Interval of the server's WebSocket pings.
    #[arg(long, env = "OMS_WS_PING_INTERVAL_MS", default_value_t = 15_000)]
    pub ws_ping_interval_ms: u64,

    /// A connection that sent nothing (not even a pong) for this long is closed (1001).
    #[arg(long, env = "OMS_WS_IDLE_TIMEOUT_MS", default_value_t = 45_000)]
    pub ws_idle_timeout_ms: u64,

    /// `heartbeat` channel: a heartbeat after this long without any other message.
    #[arg(long, env = "OMS_WS_HEARTBEAT_MS", default_value_t = 5_000)]
    pub ws_heartbeat_ms: u64,

    /// How long a closing connection may take to flush its close frame before it is dropped.
    #[arg(long, env = "OMS_WS_CLOSE_TIMEOUT_MS", default_value_t = 5_000)]
    pub ws_close_timeout_ms: u64,

    /// Top levels per side covered by the book `checksum` (0 = no checksum).
    #[arg(long, env = "OMS_WS_BOOK_CHECKSUM_LEVELS", default_value_t = 10)]
    pub ws_book_checksum_levels: usize,

    /// Candles sent as history when a `candles` subscription starts (and kept per series).
    #[arg(long, env = "OMS_WS_CANDLE_HISTORY", default_value_t = 300)]
    pub ws_candle_history: usize,

    /// Recent trades sent as the snapshot of a `trades` subscription.
    #[arg(long, env = "OMS_WS_TRADES_SNAPSHOT", default_value_t = 50)]
    pub ws_trades_snapshot: usize,
}
