//! Order routes: place, get, list, cancel, amend, and the kill switch.
//!
//! Writes go through the ring (and so the log); reads run on the processor thread. A cancel
//! or amend first looks the order up so another account's order is a 404 and a closed order
//! a 409 without touching the log.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use oms_core::command::{AmendOrder, CancelOrder, CorrelationId, HaltScope, RiskDecision, SetHalt};
use oms_core::ports::OrderQuery;
use oms_core::validate::{parse_price, parse_qty};
use oms_core::{AccountId, IdempotencyKey, OrderId, OrderStatus, OrderType, Qty, SymbolId};
use serde::Deserialize;
use serde_json::value::RawValue;

use oms_wire::{ApiError, OrderJson, OrderPageJson};

use super::layers::Req;
use super::{Answer, App, Ctx, Outcome, err, read_body, require_json};
use crate::pipeline::slot::{RawPlace, Reply, Text, Work};

/// The `POST /api/orders` body. Numbers keep their literal text for exact parsing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlaceBody<'a> {
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    side: Option<Cow<'a, str>>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    order_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time_in_force: Option<Cow<'a, str>>,
    post_only: Option<bool>,
    #[serde(borrow)]
    client_order_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AmendBody<'a> {
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HaltBody {
    scope: String,
    account: Option<String>,
    halted: bool,
}

/// Maps a serde error to `UNKNOWN_FIELD` (with the field) or `INVALID_JSON`.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        let field = rest[..end].to_owned();
        return ApiError::bad_request("UNKNOWN_FIELD", format!("unknown field '{field}'"))
            .field(field);
    }
    ApiError::bad_request("INVALID_JSON", format!("request body is not valid: {msg}"))
}

/// The text of a JSON number or of a JSON string holding a number.
pub(super) fn number_text<'a>(
    raw: &'a RawValue,
    field: &'static str,
    code: &'static str,
) -> Result<Cow<'a, str>, ApiError> {
    let t = raw.get().trim();
    if t.starts_with('"') {
        serde_json::from_str::<Cow<'a, str>>(t).map_err(|_| {
            ApiError::bad_request(code, format!("{field} is not a decimal number")).field(field)
        })
    } else if t.starts_with(|c: char| c == '-' || c == '.' || c.is_ascii_digit()) {
        Ok(Cow::Borrowed(t))
    } else {
        Err(ApiError::bad_request(
            code,
            format!("{field} must be a number or a decimal string"),
        )
        .field(field))
    }
}

pub(super) fn fingerprint(body: &[u8]) -> u64 {
    // FNV-1a: stable across processes and versions, so fingerprints survive restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn set<const N: usize>(
    t: &mut Text<N>,
    s: &str,
    code: &'static str,
    field: &'static str,
) -> Result<(), ApiError> {
    if t.set(s) {
        Ok(())
    } else {
        Err(ApiError::bad_request(code, format!("{field} is too long")).field(field))
    }
}

fn opt_text<const N: usize>(
    s: Option<&str>,
    code: &'static str,
    field: &'static str,
) -> Result<Option<Text<N>>, ApiError> {
    match s {
        None => Ok(None),
        Some(s) => {
            let mut t = Text::default();
            set(&mut t, s, code, field)?;
            Ok(Some(t))
        }
    }
}

pub(super) fn correlation(ctx: &Ctx) -> Option<CorrelationId> {
    CorrelationId::new(&ctx.correlation_id).ok()
}

/// Submits a command whose answer comes from the processor (cancel, cancel-all) and turns
/// the reply into the HTTP outcome.
pub(super) async fn submit_command(
    app: &Arc<App>,
    ctx: &Ctx,
    account: AccountId,
    corr: Option<CorrelationId>,
    work: Work,
) -> Outcome {
    let reply = app
        .pipeline
        .submit_traced(ctx.started, ctx.trace, move |d| {
            d.work = work;
            d.account = account;
            d.correlation_id = corr;
        })
        .await;
    reply_outcome(reply)
}

pub(super) fn reply_outcome(reply: Reply) -> Outcome {
    match reply {
        Reply::Json {
            status,
            body,
            replayed,
        } => Ok(Answer {
            status,
            body: Bytes::from(body),
            replayed,
            content_type: "application/json",
        }),
        Reply::Error(e) => err(e),
    }
}

pub(super) fn idempotency_key(req: &Req) -> Result<IdempotencyKey, ApiError> {
    let h = req.headers();
    let v = h
        .get("x-idempotency-key")
        .or_else(|| h.get("idempotency-key"))
        .ok_or_else(|| {
            ApiError::bad_request(
                "IDEMPOTENCY_KEY_MISSING",
                "the X-Idempotency-Key header is required",
            )
            .field("X-Idempotency-Key")
        })?;
    let s = v.to_str().map_err(|_| {
        ApiError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            "the idempotency key must be printable ASCII",
        )
        .field("X-Idempotency-Key")
    })?;
    IdempotencyKey::new(s).map_err(|e| {
        ApiError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            format!("the idempotency key {e}"),
        )
        .field("X-Idempotency-Key")
    })
}

/// `POST /api/orders`.
pub async fn place(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    let key = idempotency_key(&req).map_err(|e| (e, None))?;
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let fingerprint = fingerprint(&body);
    let raw = parse_place(&body).map_err(|e| (e, None))?;
    let corr = correlation(ctx);
    let reply = app
        .pipeline
        .submit_traced(ctx.started, ctx.trace, move |d| {
            d.work = Work::Place {
                raw,
                key,
                fingerprint,
                cmd: None,
            };
            d.account = account;
            d.correlation_id = corr;
        })
        .await;
    reply_outcome(reply)
}

pub(super) fn parse_place(body: &[u8]) -> Result<RawPlace, ApiError> {
    let b: PlaceBody<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let mut raw = RawPlace::default();
    let symbol = b.symbol.ok_or_else(|| {
        ApiError::bad_request("UNKNOWN_SYMBOL", "symbol is required").field("symbol")
    })?;
    set(&mut raw.symbol, &symbol, "UNKNOWN_SYMBOL", "symbol")?;
    let side = b
        .side
        .ok_or_else(|| ApiError::bad_request("INVALID_SIDE", "side is required").field("side"))?;
    set(&mut raw.side, &side, "INVALID_SIDE", "side")?;
    let qty = b.quantity.ok_or_else(|| {
        ApiError::bad_request("INVALID_QUANTITY", "quantity is required").field("quantity")
    })?;
    set(
        &mut raw.quantity,
        &number_text(qty, "quantity", "INVALID_QUANTITY")?,
        "INVALID_QUANTITY",
        "quantity",
    )?;
    raw.price = match b.price {
        Some(p) => opt_text(
            Some(&number_text(p, "price", "INVALID_PRICE")?),
            "INVALID_PRICE",
            "price",
        )?,
        None => None,
    };
    raw.order_type = opt_text(b.order_type.as_deref(), "INVALID_ORDER_TYPE", "orderType")?;
    raw.time_in_force = opt_text(
        b.time_in_force.as_deref(),
        "INVALID_TIME_IN_FORCE",
        "timeInForce",
    )?;
    raw.post_only = b.post_only.unwrap_or(false);
    raw.client_order_id = opt_text(
        b.client_order_id.as_deref(),
        "INVALID_CLIENT_ORDER_ID",
        "clientOrderId",
    )?;
    Ok(raw)
}

fn order_id_of(req: &Req) -> Result<OrderId, ApiError> {
    let id = req
        .uri()
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    id.parse::<OrderId>().map_err(|_| {
        ApiError::bad_request("INVALID_ORDER_ID", format!("'{id}' is not an order id"))
            .field("orderId")
    })
}

/// What cancel/amend need to know about the order before logging.
#[derive(Clone, Copy)]
pub(super) struct OrderFacts {
    pub(super) symbol: SymbolId,
    quantity: Qty,
    status: OrderStatus,
    order_type: OrderType,
    filled: Qty,
}

pub(super) async fn facts(
    app: &Arc<App>,
    account: AccountId,
    id: OrderId,
) -> Result<OrderFacts, ApiError> {
    let f = app
        .query(move |e| {
            e.order(id)
                .filter(|o| o.account == account)
                .map(|o| OrderFacts {
                    symbol: o.symbol,
                    quantity: o.quantity,
                    status: o.status,
                    order_type: o.order_type,
                    filled: o.filled_quantity,
                })
        })
        .await?;
    let f = f.ok_or_else(ApiError::order_not_found)?;
    if !f.status.is_open() {
        return Err(ApiError::reject(oms_core::RejectCode::OrderNotOpen));
    }
    Ok(f)
}

/// `GET /api/orders/{orderId}`.
pub async fn get(app: &Arc<App>, req: Req, account: AccountId) -> Outcome {
    let id = order_id_of(&req).map_err(|e| (e, None))?;
    if let Some(pool) = app.order_store.as_ref() {
        let table = Arc::clone(&app.table);
        let found = pool
            .run(move |s| s.get_order(&account, id))
            .await
            .map_err(|e| (e, None))?;
        return match found {
            Some(o) => Ok(Answer::json(200, OrderJson::rest(&table, &o))),
            None => err(ApiError::order_not_found()),
        };
    }
    super::archived::get(app, account, id).await
}

/// The query string as decoded `(name, value)` pairs.
pub fn query_pairs(req: &Req) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.uri().query().unwrap_or("")).map_err(|e| {
        ApiError::bad_request("INVALID_PARAMETER", format!("malformed query string: {e}"))
    })
}

/// Parses `limit`-style integer parameters within bounds.
pub fn int_param(v: &str, name: &'static str, min: usize, max: usize) -> Result<usize, ApiError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_PARAMETER",
                format!("{name} must be an integer from {min} to {max}"),
            )
            .field(name)
        })
}

/// `GET /api/orders?symbol=&status=&limit=&cursor=`.
pub async fn list(app: &Arc<App>, req: Req, account: AccountId) -> Outcome {
    let mut q = OrderQuery {
        account,
        symbol: None,
        status: None,
        limit: 100,
        cursor: None,
    };
    for (k, v) in query_pairs(&req).map_err(|e| (e, None))? {
        match k.as_str() {
            "symbol" => {
                let ins = app.table.lookup(&v).ok_or_else(|| {
                    (
                        ApiError::bad_request("UNKNOWN_SYMBOL", format!("unknown symbol '{v}'"))
                            .field("symbol"),
                        None,
                    )
                })?;
                q.symbol = Some(ins.id);
            }
            "status" => {
                q.status = Some(OrderStatus::parse(&v).ok_or_else(|| {
                    (
                        ApiError::bad_request("INVALID_PARAMETER", format!("unknown status '{v}'"))
                            .field("status"),
                        None,
                    )
                })?)
            }
            "limit" => q.limit = int_param(&v, "limit", 1, 1000).map_err(|e| (e, None))?,
            "cursor" => q.cursor = Some(parse_cursor(&v).map_err(|e| (e, None))?),
            other => {
                return err(ApiError::bad_request(
                    "INVALID_PARAMETER",
                    format!("unknown parameter '{other}'"),
                )
                .field(other.to_owned()));
            }
        }
    }
    if let Some(pool) = app.order_store.as_ref() {
        let table = Arc::clone(&app.table);
        let limit = q.limit;
        let page = pool
            .run(move |s| s.list_orders(&q))
            .await
            .map_err(|e| (e, None))?;
        let refs: Vec<&oms_core::Order> = page.iter().collect();
        return Ok(Answer::json(200, render_page(&table, &refs, limit)));
    }
    super::archived::list(app, q).await
}

fn render_page(
    table: &oms_core::InstrumentTable,
    page: &[&oms_core::Order],
    limit: usize,
) -> Vec<u8> {
    oms_wire::to_vec(
        &OrderPageJson::new(table, page, limit),
        256 + page.len() * 600,
    )
}

fn parse_cursor(v: &str) -> Result<(u64, OrderId), ApiError> {
    let bad = || {
        ApiError::bad_request("INVALID_PARAMETER", "cursor is not one this server issued")
            .field("cursor")
    };
    let (ts, id) = v.split_once('_').ok_or_else(bad)?;
    Ok((
        ts.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// `DELETE /api/orders/{orderId}`.
pub async fn cancel(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    let id = order_id_of(&req).map_err(|e| (e, None))?;
    let f = facts(app, account, id).await.map_err(|e| (e, None))?;
    let corr = correlation(ctx);
    let cmd = CancelOrder {
        order_id: id,
        account,
        symbol: f.symbol,
        ts: 0,
        correlation_id: corr,
    };
    submit_command(app, ctx, account, corr, Work::Cancel(cmd)).await
}

/// `PATCH /api/orders/{orderId}` with `{quantity?, price?}` (quantity = new total).
pub async fn amend(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    let id = order_id_of(&req).map_err(|e| (e, None))?;
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let b: AmendBody<'_> = serde_json::from_slice(&body).map_err(|e| (json_error(&e), None))?;
    let f = facts(app, account, id).await.map_err(|e| (e, None))?;
    let ins = app.table.get(f.symbol);
    let quantity = match b.quantity {
        Some(q) => Some(
            parse_qty(
                ins,
                &number_text(q, "quantity", "INVALID_QUANTITY").map_err(|e| (e, None))?,
            )
            .map_err(|e| (e.into(), None))?,
        ),
        None => None,
    };
    let price = match b.price {
        Some(p) => Some(
            parse_price(
                ins,
                &number_text(p, "price", "INVALID_PRICE").map_err(|e| (e, None))?,
            )
            .map_err(|e| (e.into(), None))?,
        ),
        None => None,
    };
    let invalid = |m: &str| (ApiError::bad_request("INVALID_AMEND", m.to_owned()), None);
    if quantity.is_none() && price.is_none() {
        return Err(invalid("an amend needs a quantity or a price"));
    }
    if price.is_some() && f.order_type == OrderType::Market {
        return Err(invalid("a MARKET order has no price to amend"));
    }
    let leaves = match quantity {
        Some(q) if q <= f.filled => {
            return Err(invalid(
                "the new quantity must exceed what is already filled",
            ));
        }
        Some(q) => q - f.filled,
        // Price only: the remaining quantity is unchanged.
        None => f.quantity - f.filled,
    };
    let corr = correlation(ctx);
    let cmd = AmendOrder {
        order_id: id,
        account,
        symbol: f.symbol,
        quantity,
        price,
        ts: 0,
        correlation_id: corr,
        risk: RiskDecision::Unchecked,
    };
    let reply = app
        .pipeline
        .submit_traced(ctx.started, ctx.trace, move |d| {
            d.work = Work::Amend { cmd, leaves };
            d.account = account;
            d.correlation_id = corr;
        })
        .await;
    reply_outcome(reply)
}

/// `POST /api/admin/halt`.
pub async fn halt(app: &Arc<App>, req: Req, ctx: &Ctx, caller: AccountId) -> Outcome {
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let b: HaltBody = serde_json::from_slice(&body).map_err(|e| (json_error(&e), None))?;
    let scope = match (b.scope.as_str(), b.account) {
        ("GLOBAL", None) => HaltScope::Global,
        ("ACCOUNT", Some(a)) => HaltScope::Account(AccountId::new(&a).map_err(|e| {
            (
                ApiError::bad_request("INVALID_ACCOUNT", format!("account {e}")).field("account"),
                None,
            )
        })?),
        _ => {
            return err(ApiError::bad_request(
                "INVALID_PARAMETER",
                "scope must be GLOBAL (no account) or ACCOUNT (with account)",
            )
            .field("scope"));
        }
    };
    let corr = correlation(ctx);
    let cmd = SetHalt {
        scope,
        halted: b.halted,
        ts: 0,
    };
    let reply = app
        .pipeline
        .submit_traced(ctx.started, ctx.trace, move |d| {
            d.work = Work::Halt(cmd);
            d.account = caller;
            d.correlation_id = corr;
        })
        .await;
    reply_outcome(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_body_parses_with_numbers_and_strings() {
        let r = parse_place(br#"{"symbol":"BTC/USD","side":"BUY","quantity":0.1,"price":45000,"orderType":"LIMIT"}"#).unwrap();
        assert_eq!(
            (r.quantity.as_str(), r.price.unwrap().as_str()),
            ("0.1", "45000")
        );
        let r = parse_place(
            br#"{"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000.50"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.quantity.as_str(), r.price.unwrap().as_str()),
            ("0.1", "45000.50")
        );
    }

    #[test]
    fn unknown_fields_and_bad_json_have_codes() {
        let e =
            parse_place(br#"{"symbol":"BTC/USD","side":"BUY","quantity":1,"foo":1}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("UNKNOWN_FIELD", Some("foo")));
        assert_eq!(parse_place(b"{").unwrap_err().code, "INVALID_JSON");
        assert_eq!(
            parse_place(br#"{"symbol":"BTC/USD","side":"BUY","quantity":true}"#)
                .unwrap_err()
                .code,
            "INVALID_QUANTITY"
        );
        assert_eq!(
            parse_place(br#"{"side":"BUY","quantity":1}"#)
                .unwrap_err()
                .code,
            "UNKNOWN_SYMBOL"
        );
    }
}
