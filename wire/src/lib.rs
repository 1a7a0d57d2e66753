//! # oms-wire
//!
//! The public JSON schema of oms in one place: one serde type per object a client or a
//! downstream consumer sees — order, execution, trade, candle, position, account, book,
//! instrument, the error body — used by the REST API, the Kafka event topics and the
//! WebSocket channels, so the three can never drift apart.
//!
//! It sits just above `oms-core` and below everything that speaks JSON: the ingress pipeline
//! and processor produce answers (and [`ApiError`]s) through it without knowing HTTP.
//! Numbers are exact decimals as strings in the instrument's decimals, timestamps RFC 3339
//! UTC with microseconds, names camelCase (docs/api.md). Answers stored for idempotency are
//! the serialized bytes these types produce.

pub mod account;
pub mod error;
pub mod event;
pub mod market;
pub mod order;
pub mod text;

pub use account::{AccountJson, PositionJson, PositionsJson};
pub use error::{API_CODES, ApiError, ErrorBody, ErrorDetail, reject_message};
pub use event::{CommandRejectedJson, OrderUpdateJson, RiskRejectedJson, Tagged};
pub use market::{
    BookJson, BookLevelJson, CandleJson, CandlesJson, ExecutionJson, PublicTradeJson,
    SymbolCandleJson, SymbolJson, SymbolsJson, TradeJson, TradesJson,
};
pub use order::{CancelAllJson, HaltJson, OrderJson, OrderPageJson, acked_order, place_ack};
pub use text::{Decimal, Id, Timestamp, push_json_str, push_timestamp};

/// Serializes `v` into a new buffer of `capacity` bytes.
///
/// The wire types hold only strings, integers, booleans and the text scalars of [`text`],
/// none of which can fail to serialize, so a failure here is a bug in this crate.
pub fn to_vec<T: serde::Serialize + ?Sized>(v: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, v).expect("wire types always serialize");
    out
}
