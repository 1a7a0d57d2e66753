//! # oms-core
//!
//! The pure, deterministic domain of oms: instruments and fixed-point numbers, order
//! validation (stage 1), the order model and its status machine, the commands the order log
//! records, the matching engine, the risk engine (R1 pre-trade, R2 settlement), candles, and
//! the [`Engine`](engine) that applies a command log to produce events.
//!
//! No I/O, no async runtime, no wall clock: time and ids are injected ([`ids::Clock`],
//! [`ids::IdGen`]) and recorded in the log, so the same log in gives the same events out.
//! Storage is reached only through the traits in [`ports`], implemented in `adapters/`.

pub mod book;
pub mod candles;
pub mod codec;
pub mod codes;
pub mod command;
pub mod engine;
pub mod event;
pub mod idempotency;
pub mod ids;
pub mod instrument;
pub mod num;
pub mod order;
pub mod ports;
pub mod risk;
pub mod time;
pub mod validate;

pub use codes::{RejectCode, ValidationCode};
pub use command::{
    AmendOrder, CancelOrder, Command, CorrelationId, HaltScope, PlaceOrder, RiskDecision, SetHalt,
    VoidOrder,
};
pub use engine::{Capture, Engine, EngineConfig, SnapshotError};
pub use event::{Candle, CandleInterval, Event, ExecutionReport, Liquidity, RiskEvent, Trade};
pub use ids::{AccountId, ClientOrderId, IdempotencyKey, OrderId, OrderKey, ShortStr, SymbolId};
pub use instrument::{Instrument, InstrumentTable};
pub use num::{Money, Price, Qty};
pub use order::{Order, OrderStatus, OrderType, Side, TimeInForce};
pub use risk::{AccountView, PositionView, RiskConfig, RiskEngine};
pub use validate::{OrderRequest, ValidatedOrder, ValidationError, validate};
