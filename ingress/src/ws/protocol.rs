//! The `/ws` wire protocol: client operations, subscription arguments, replies and error
//! codes (docs/websocket.md). Parsing is pure so every malformed input has one answer, a
//! reply with a stable code, and never a panic.

use std::fmt::Write as _;

use oms_core::{AccountId, CandleInterval, InstrumentTable, SymbolId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::ws::BOOK_DEPTHS;
use oms_wire::push_json_str as json_str;

/// Default depth of a `book` subscription without `depth`.
pub const DEFAULT_BOOK_DEPTH: u32 = 10;

/// Channels a client can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Orders,
    Executions,
    Positions,
    Trades,
    Book,
    Candles,
    Heartbeat,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Orders,
        Channel::Executions,
        Channel::Positions,
        Channel::Trades,
        Channel::Book,
        Channel::Candles,
        Channel::Heartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Orders => "orders",
            Channel::Executions => "executions",
            Channel::Positions => "positions",
            Channel::Trades => "trades",
            Channel::Book => "book",
            Channel::Candles => "candles",
            Channel::Heartbeat => "heartbeat",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the channel carries one account's data (needs authentication).
    pub fn is_private(self) -> bool {
        matches!(
            self,
            Channel::Orders | Channel::Executions | Channel::Positions
        )
    }
}

/// One subscription of one connection. Private topics mean the connection's own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Orders,
    Executions,
    Positions,
    Trades(SymbolId),
    Book(SymbolId, u32),
    Candles(SymbolId, CandleInterval),
    Heartbeat,
}

impl Topic {
    pub fn channel(self) -> Channel {
        match self {
            Topic::Orders => Channel::Orders,
            Topic::Executions => Channel::Executions,
            Topic::Positions => Channel::Positions,
            Topic::Trades(_) => Channel::Trades,
            Topic::Book(..) => Channel::Book,
            Topic::Candles(..) => Channel::Candles,
            Topic::Heartbeat => Channel::Heartbeat,
        }
    }
}

/// A client message as sent (fields checked by [`parse`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound<'a> {
    op: String,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    account: Option<String>,
    /// `auth` only: cancel the account's open orders when this connection closes.
    #[serde(default, rename = "cancelOnDisconnect")]
    cancel_on_disconnect: Option<bool>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    interval: Option<String>,
}

/// One subscription argument.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arg {
    channel: String,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    interval: Option<String>,
}

/// A parsed operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// JWT (`token`) or, with auth off, a plain `account`.
    Auth {
        token: Option<String>,
        account: Option<String>,
        /// Opt-in: the account's open orders are canceled when the connection closes.
        cancel_on_disconnect: bool,
    },
    Subscribe(Vec<Topic>),
    Unsubscribe(Vec<Topic>),
    Resync(Vec<Topic>),
    Ping,
}

/// An error reply: stable code and a message.
#[derive(Debug, PartialEq, Eq)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

impl WsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        WsError {
            code,
            message: message.into(),
        }
    }
}

/// Every code a `/ws` error reply can carry (docs/errors.md "WebSocket").
pub const WS_CODES: [&str; 10] = [
    "INVALID_MESSAGE",
    "UNKNOWN_OP",
    "UNKNOWN_CHANNEL",
    "UNKNOWN_SYMBOL",
    "INVALID_PARAMETER",
    "UNAUTHORIZED",
    "ALREADY_AUTHENTICATED",
    "TOO_MANY_SUBSCRIPTIONS",
    "TOO_MANY_CONNECTIONS",
    "NOT_SUBSCRIBED",
];

/// A request as far as it could be read: its `op` and raw `id` (for the reply) and either
/// the operation or the error to answer.
pub struct Request {
    pub op: String,
    pub id: Option<String>,
    pub parsed: Result<Op, WsError>,
}

/// Parses one text message.
pub fn parse(text: &str, table: &InstrumentTable) -> Request {
    let msg: Inbound<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            // Salvage `op` and `id` for the reply when the message is JSON but misshapen.
            #[derive(Deserialize)]
            struct Loose<'a> {
                #[serde(default)]
                op: Option<String>,
                #[serde(borrow, default)]
                id: Option<&'a RawValue>,
            }
            let loose: Option<Loose<'_>> = serde_json::from_str(text).ok();
            let (op, id) = loose.map_or((String::new(), None), |l| {
                (l.op.unwrap_or_default(), l.id.map(|r| r.get().to_owned()))
            });
            let code = if e.is_data() {
                "INVALID_PARAMETER"
            } else {
                "INVALID_MESSAGE"
            };
            return Request {
                op,
                id,
                parsed: Err(WsError::new(code, format!("{e}"))),
            };
        }
    };
    let id = msg.id.map(|r| r.get().to_owned());
    let parsed = match msg.op.as_str() {
        "auth" => Ok(Op::Auth {
            token: msg.token,
            account: msg.account,
            cancel_on_disconnect: msg.cancel_on_disconnect.unwrap_or(false),
        }),
        _ if msg.cancel_on_disconnect.is_some() => Err(WsError::new(
            "INVALID_PARAMETER",
            "cancelOnDisconnect belongs to the auth op",
        )),
        "ping" => Ok(Op::Ping),
        "subscribe" | "unsubscribe" | "resync" => {
            let mut args = msg.args.unwrap_or_default();
            if let Some(channel) = msg.channel {
                args.push(Arg {
                    channel,
                    symbol: msg.symbol,
                    depth: msg.depth,
                    interval: msg.interval,
                });
            }
            if args.is_empty() {
                Err(WsError::new(
                    "INVALID_PARAMETER",
                    "args must name at least one channel",
                ))
            } else {
                args.iter()
                    .map(|a| topic(a, table))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|topics| match msg.op.as_str() {
                        "subscribe" => Op::Subscribe(topics),
                        "unsubscribe" => Op::Unsubscribe(topics),
                        _ => Op::Resync(topics),
                    })
            }
        }
        other => Err(WsError::new(
            "UNKNOWN_OP",
            format!("unknown op '{other}' (auth, subscribe, unsubscribe, resync, ping)"),
        )),
    };
    Request {
        op: msg.op,
        id,
        parsed,
    }
}

fn symbol(arg: &Arg, table: &InstrumentTable) -> Result<SymbolId, WsError> {
    let name = arg.symbol.as_deref().ok_or_else(|| {
        WsError::new(
            "INVALID_PARAMETER",
            format!("channel {} needs a symbol", arg.channel),
        )
    })?;
    table
        .lookup(&name.replace('-', "/"))
        .map(|i| i.id)
        .ok_or_else(|| WsError::new("UNKNOWN_SYMBOL", format!("unknown symbol '{name}'")))
}

fn topic(arg: &Arg, table: &InstrumentTable) -> Result<Topic, WsError> {
    let channel = Channel::parse(&arg.channel).ok_or_else(|| {
        WsError::new(
            "UNKNOWN_CHANNEL",
            format!(
                "unknown channel '{}' (orders, executions, positions, trades, book, candles, heartbeat)",
                arg.channel
            ),
        )
    })?;
    let no = |what: &str, present: bool| {
        if present {
            Err(WsError::new(
                "INVALID_PARAMETER",
                format!("channel {} takes no {what}", channel.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    if channel != Channel::Book {
        no("depth", arg.depth.is_some())?;
    }
    if channel != Channel::Candles {
        no("interval", arg.interval.is_some())?;
    }
    if channel.is_private() || channel == Channel::Heartbeat {
        no("symbol", arg.symbol.is_some())?;
    }
    Ok(match channel {
        Channel::Orders => Topic::Orders,
        Channel::Executions => Topic::Executions,
        Channel::Positions => Topic::Positions,
        Channel::Heartbeat => Topic::Heartbeat,
        Channel::Trades => Topic::Trades(symbol(arg, table)?),
        Channel::Book => {
            let depth = arg.depth.unwrap_or(DEFAULT_BOOK_DEPTH);
            if !BOOK_DEPTHS.contains(&depth) {
                return Err(WsError::new(
                    "INVALID_PARAMETER",
                    format!("depth must be one of {BOOK_DEPTHS:?}"),
                ));
            }
            Topic::Book(symbol(arg, table)?, depth)
        }
        Channel::Candles => {
            let raw = arg.interval.as_deref().unwrap_or("1m");
            let interval = CandleInterval::parse(raw)
                .filter(|i| *i != CandleInterval::S1)
                .ok_or_else(|| {
                    WsError::new(
                        "INVALID_PARAMETER",
                        format!("interval '{raw}' is not one of 1m, 5m, 1h, 1d"),
                    )
                })?;
            Topic::Candles(symbol(arg, table)?, interval)
        }
    })
}

/// `{"op":…,"id":…,"ok":true[,extra]}`; `extra` is raw JSON members after a comma.
pub fn ok_reply(op: &str, id: Option<&str>, extra: &str) -> String {
    let mut s = String::with_capacity(64 + extra.len());
    s.push_str("{\"op\":");
    json_str(&mut s, op);
    s.push_str(",\"id\":");
    s.push_str(id.unwrap_or("null"));
    s.push_str(",\"ok\":true");
    if !extra.is_empty() {
        s.push(',');
        s.push_str(extra);
    }
    s.push('}');
    s
}

/// `{"op":…,"id":…,"ok":false,"error":{"code":…,"message":…}}`.
pub fn error_reply(op: &str, id: Option<&str>, e: &WsError) -> String {
    let mut s = String::with_capacity(128 + e.message.len());
    s.push_str("{\"op\":");
    if op.is_empty() {
        s.push_str("null");
    } else {
        json_str(&mut s, op);
    }
    let _ = write!(
        s,
        ",\"id\":{},\"ok\":false,\"error\":{{\"code\":",
        id.unwrap_or("null")
    );
    json_str(&mut s, e.code);
    s.push_str(",\"message\":");
    json_str(&mut s, &e.message);
    s.push_str("}}");
    s
}

/// The account named by an `auth` op with auth off.
pub fn dev_account(raw: &str) -> Result<AccountId, WsError> {
    AccountId::new(raw).map_err(|e| WsError::new("UNAUTHORIZED", format!("account {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Request {
        parse(text, &InstrumentTable::demo())
    }

    #[test]
    fn subscriptions_parse_into_topics() {
        let t = InstrumentTable::demo();
        let btc = t.lookup("BTC/USD").unwrap().id;
        let r = p(
            r#"{"op":"subscribe","id":7,"args":[{"channel":"book","symbol":"BTC-USD","depth":50},{"channel":"candles","symbol":"BTC/USD","interval":"1d"},{"channel":"orders"}]}"#,
        );
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(
            r.parsed.unwrap(),
            Op::Subscribe(vec![
                Topic::Book(btc, 50),
                Topic::Candles(btc, CandleInterval::D1),
                Topic::Orders
            ])
        );
        let r = p(r#"{"op":"resync","channel":"book","symbol":"BTC/USD"}"#);
        assert_eq!(
            r.parsed.unwrap(),
            Op::Resync(vec![Topic::Book(btc, DEFAULT_BOOK_DEPTH)])
        );
    }

    #[test]
    fn bad_input_gets_a_stable_code() {
        let code = |s: &str| p(s).parsed.unwrap_err().code;
        assert_eq!(code("{nope"), "INVALID_MESSAGE");
        assert_eq!(code(r#"{"op":"dance"}"#), "UNKNOWN_OP");
        assert_eq!(
            code(r#"{"op":"subscribe","args":[{"channel":"news"}]}"#),
            "UNKNOWN_CHANNEL"
        );
        assert_eq!(
            code(r#"{"op":"subscribe","args":[{"channel":"trades","symbol":"XX/YY"}]}"#),
            "UNKNOWN_SYMBOL"
        );
        assert_eq!(
            code(r#"{"op":"subscribe","args":[{"channel":"book","symbol":"BTC/USD","depth":7}]}"#),
            "INVALID_PARAMETER"
        );
        assert_eq!(
            code(r#"{"op":"subscribe","args":[{"channel":"orders","account":"bob"}]}"#),
            "INVALID_PARAMETER"
        );
        assert_eq!(code(r#"{"op":"subscribe","args":[]}"#), "INVALID_PARAMETER");
        let r = p(r#"{"op":"subscribe","id":"a","args":5}"#);
        assert_eq!(
            (r.op.as_str(), r.id.as_deref()),
            ("subscribe", Some("\"a\""))
        );
    }

    #[test]
    fn every_ws_code_is_documented_and_nothing_else() {
        let doc = include_str!("../../../docs/errors.md");
        let ws = doc
            .split("\n## WebSocket")
            .nth(1)
            .expect("a WebSocket section");
        let table: Vec<&str> = ws
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        let mut want = WS_CODES.to_vec();
        want.sort_unstable();
        let mut got = table.clone();
        got.sort_unstable();
        assert_eq!(got, want, "docs/errors.md's WebSocket table vs WS_CODES");
        let api: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/asyncapi.json")).unwrap();
        let mut enumed: Vec<&str> = api["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        enumed.sort_unstable();
        assert_eq!(enumed, want, "docs/asyncapi.json's ErrorCode vs WS_CODES");
    }

    #[test]
    fn replies_echo_op_and_id() {
        assert_eq!(
            ok_reply("subscribe", Some("2"), ""),
            r#"{"op":"subscribe","id":2,"ok":true}"#
        );
        let e = WsError::new("UNKNOWN_CHANNEL", "no \"news\"");
        let v: serde_json::Value =
            serde_json::from_str(&error_reply("subscribe", None, &e)).unwrap();
        assert_eq!(v["error"]["code"], "UNKNOWN_CHANNEL");
        assert_eq!(v["ok"], false);
        assert!(v["id"].is_null());
    }
}
