//! Account and market-data routes: positions, account, symbols, book, trades, candles.
//! All of them read the processor's state on its own thread.

use std::fmt::Write as _;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use oms_core::{CandleInterval, Instrument, Money, Price, Qty, Side, SymbolId};

use super::error::ApiError;
use super::orders::{int_param, query_pairs};
use super::render::{json_str, timestamp};
use super::{Answer, App, Outcome, err};

fn money(m: Money) -> String {
    oms_core::num::format_scaled(m.0, oms_core::num::MONEY_DECIMALS)
}

fn symbol_of(app: &App, req: &Request<Incoming>) -> Result<SymbolId, ApiError> {
    let raw = req
        .uri()
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let name = raw.replace("%2F", "/").replace("%2f", "/");
    app.table.lookup(&name).map(|i| i.id).ok_or_else(|| {
        ApiError::new(404, "UNKNOWN_SYMBOL", format!("unknown symbol '{name}'")).field("symbol")
    })
}

/// `GET /api/positions`.
pub async fn positions(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let account = app.account(&req).map_err(|e| (e, None))?;
    let body = app
        .query(move |e| {
            let mut s = String::with_capacity(512);
            s.push_str("{\"account\":");
            json_str(&mut s, account.as_str());
            s.push_str(",\"positions\":[");
            for (i, p) in e.risk().positions(&account).iter().enumerate() {
                let ins = e.instruments().get(p.symbol);
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"symbol\":");
                json_str(&mut s, &ins.symbol);
                let _ = write!(
                    s,
                    ",\"quantity\":\"{}\",\"avgEntryPrice\":\"{}\",\"realizedPnl\":\"{}\",\"unrealizedPnl\":\"{}\"}}",
                    ins.format_qty(Qty(p.qty)),
                    ins.format_price(p.avg_entry),
                    money(p.realized_pnl),
                    money(p.unrealized_pnl)
                );
            }
            s.push_str("]}");
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/account`.
pub async fn account(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let account = app.account(&req).map_err(|e| (e, None))?;
    let currency = app.table.account_currency.clone();
    let default_equity = app.default_equity;
    let body = app
        .query(move |e| {
            let mut s = String::with_capacity(384);
            s.push_str("{\"account\":");
            json_str(&mut s, account.as_str());
            s.push_str(",\"currency\":");
            json_str(&mut s, &currency);
            match e.risk().account(&account) {
                Some(v) => {
                    let _ = write!(
                        s,
                        ",\"equity\":\"{}\",\"realizedPnl\":\"{}\",\"usedMargin\":\"{}\",\"reservedMargin\":\"{}\",\"availableMargin\":\"{}\",\"openOrders\":{},\"halted\":{}}}",
                        money(v.equity),
                        money(v.realized_pnl),
                        money(v.used_margin),
                        money(v.reserved_margin),
                        money(v.available),
                        v.open_orders,
                        v.halted
                    );
                }
                None => {
                    let eq = default_equity.unwrap_or(Money::ZERO);
                    let _ = write!(
                        s,
                        ",\"equity\":\"{0}\",\"realizedPnl\":\"{1}\",\"usedMargin\":\"{1}\",\"reservedMargin\":\"{1}\",\"availableMargin\":\"{0}\",\"openOrders\":0,\"halted\":false}}",
                        money(eq),
                        money(Money::ZERO)
                    );
                }
            }
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

fn pct(bps: u32) -> String {
    oms_core::num::format_scaled(i64::from(bps), 2)
}

fn symbol_json(s: &mut String, ins: &Instrument, last: Price) {
    s.push_str("{\"symbol\":");
    json_str(s, &ins.symbol);
    s.push_str(",\"base\":");
    json_str(s, &ins.base);
    s.push_str(",\"quote\":");
    json_str(s, &ins.quote);
    let _ = write!(
        s,
        ",\"tickSize\":\"{}\",\"lotSize\":\"{}\",\"minQty\":\"{}\",\"maxQty\":\"{}\",\"minNotional\":\"{}\",\"maxNotional\":\"{}\",\"priceBandPct\":\"{}\",\"initialMarginPct\":\"{}\",\"maxPosition\":\"{}\",\"referencePrice\":\"{}\",\"lastPrice\":\"{}\"}}",
        ins.format_price(Price(ins.tick)),
        ins.format_qty(Qty(ins.lot)),
        ins.format_qty(ins.min_qty),
        ins.format_qty(ins.max_qty),
        money(ins.min_notional),
        money(ins.max_notional),
        pct(ins.price_band_bps),
        pct(ins.initial_margin_bps),
        ins.format_qty(ins.max_position),
        ins.format_price(ins.reference_price),
        ins.format_price(last),
    );
}

/// `GET /api/symbols`.
pub async fn symbols(app: &Arc<App>) -> Outcome {
    let body = app
        .query(|e| {
            let mut s = String::with_capacity(1024);
            s.push_str("{\"symbols\":[");
            for (i, ins) in e.instruments().iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                symbol_json(&mut s, ins, e.risk().reference_price(ins.id));
            }
            s.push_str("]}");
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/book/{symbol}?depth=`.
pub async fn book(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut depth = 20;
    for (k, v) in query_pairs(&req) {
        match k.as_str() {
            "depth" => depth = int_param(&v, "depth", 1, 1000).map_err(|e| (e, None))?,
            other => return err(unknown_param(other)),
        }
    }
    let now = now_nanos();
    let body = app
        .query(move |e| {
            let ins = e.instruments().get(sym);
            let book = e.book(sym);
            let mut levels = Vec::with_capacity(depth);
            let mut s = String::with_capacity(256 + depth * 80);
            s.push_str("{\"symbol\":");
            json_str(&mut s, &ins.symbol);
            for (name, side) in [("bids", Side::Buy), ("asks", Side::Sell)] {
                levels.clear();
                book.depth(side, depth, &mut levels);
                let _ = write!(s, ",\"{name}\":[");
                for (i, l) in levels.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = write!(
                        s,
                        "{{\"price\":\"{}\",\"quantity\":\"{}\",\"orders\":{}}}",
                        ins.format_price(l.price),
                        ins.format_qty(l.qty),
                        l.orders
                    );
                }
                s.push(']');
            }
            s.push_str(",\"timestamp\":");
            timestamp(&mut s, now);
            s.push('}');
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

fn unknown_param(name: &str) -> ApiError {
    ApiError::bad_request("INVALID_PARAMETER", format!("unknown parameter '{name}'"))
        .field(name.to_owned())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `GET /api/trades/{symbol}?limit=`.
pub async fn trades(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut limit = 100;
    for (k, v) in query_pairs(&req) {
        match k.as_str() {
            "limit" => limit = int_param(&v, "limit", 1, 1000).map_err(|e| (e, None))?,
            other => return err(unknown_param(other)),
        }
    }
    let body = app
        .query(move |e| {
            let ins = e.instruments().get(sym);
            let mut s = String::with_capacity(256 + limit * 128);
            s.push_str("{\"symbol\":");
            json_str(&mut s, &ins.symbol);
            s.push_str(",\"trades\":[");
            for (i, t) in e.recent_trades(sym, limit).iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    "{{\"tradeId\":{},\"price\":\"{}\",\"quantity\":\"{}\",\"side\":\"{}\",\"timestamp\":",
                    t.trade_id,
                    ins.format_price(t.price),
                    ins.format_qty(t.qty),
                    t.aggressor.as_str()
                );
                timestamp(&mut s, t.ts);
                s.push('}');
            }
            s.push_str("]}");
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/candles/{symbol}?interval=1m&limit=`.
pub async fn candles(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut interval = CandleInterval::M1;
    let mut limit = 100;
    for (k, v) in query_pairs(&req) {
        match k.as_str() {
            "interval" => {
                interval = CandleInterval::parse(&v).ok_or_else(|| {
                    (
                        ApiError::bad_request(
                            "INVALID_PARAMETER",
                            "interval must be one of 1s, 1m, 5m, 1h, 1d",
                        )
                        .field("interval"),
                        None,
                    )
                })?
            }
            "limit" => limit = int_param(&v, "limit", 1, 1440).map_err(|e| (e, None))?,
            other => return err(unknown_param(other)),
        }
    }
    let body = app
        .query(move |e| {
            let ins = e.instruments().get(sym);
            let mut s = String::with_capacity(256 + limit * 160);
            s.push_str("{\"symbol\":");
            json_str(&mut s, &ins.symbol);
            let _ = write!(s, ",\"interval\":\"{}\",\"candles\":[", interval.as_str());
            for (i, c) in e.candles(sym, interval, limit).iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"openTime\":");
                timestamp(&mut s, c.open_time);
                let _ = write!(
                    s,
                    ",\"open\":\"{}\",\"high\":\"{}\",\"low\":\"{}\",\"close\":\"{}\",\"volume\":\"{}\",\"trades\":{}}}",
                    ins.format_price(c.open),
                    ins.format_price(c.high),
                    ins.format_price(c.low),
                    ins.format_price(c.close),
                    ins.format_qty(c.volume),
                    c.trades
                );
            }
            s.push_str("]}");
            s
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}
