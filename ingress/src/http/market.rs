//! Account and market-data routes: positions, account, symbols, book, trades, candles.
//! All of them read the processor's state on its own thread.

use std::sync::Arc;

use oms_core::{AccountId, CandleInterval, Money, Side, SymbolId};
use oms_wire::{
    AccountJson, ApiError, BookJson, BookLevelJson, CandlesJson, PositionJson, PositionsJson,
    PublicTradeJson, SymbolJson, SymbolsJson, Timestamp, TradesJson, to_vec,
};

use super::layers::Req;
use super::orders::{int_param, query_pairs};
use super::{Answer, App, Outcome, err};

fn symbol_of(app: &App, req: &Req) -> Result<SymbolId, ApiError> {
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
pub async fn positions(app: &Arc<App>, account: AccountId) -> Outcome {
    let body = app
        .query(move |e| {
            let positions = e.risk().positions(&account);
            let json = PositionsJson {
                account: account.as_str(),
                positions: positions
                    .iter()
                    .map(|p| PositionJson::new(p, e.instruments().get(p.symbol)))
                    .collect(),
            };
            to_vec(&json, 512)
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/account`.
pub async fn account(app: &Arc<App>, account: AccountId) -> Outcome {
    let currency = app.table.account_currency.clone();
    let default_equity = app.default_equity;
    let body = app
        .query(move |e| match e.risk().account(&account) {
            Some(v) => to_vec(&AccountJson::new(&v, &currency), 384),
            None => to_vec(
                &AccountJson::fresh(
                    account.as_str(),
                    &currency,
                    default_equity.unwrap_or(Money::ZERO),
                ),
                384,
            ),
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/symbols`.
pub async fn symbols(app: &Arc<App>) -> Outcome {
    let body = app
        .query(|e| {
            let json = SymbolsJson {
                symbols: e
                    .instruments()
                    .iter()
                    .map(|ins| SymbolJson::new(ins, e.risk().reference_price(ins.id)))
                    .collect(),
            };
            to_vec(&json, 1024)
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/book/{symbol}?depth=`.
pub async fn book(app: &Arc<App>, req: Req) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut depth = 20;
    for (k, v) in query_pairs(&req).map_err(|e| (e, None))? {
        match k.as_str() {
            "depth" => depth = int_param(&v, "depth", 1, 1000).map_err(|e| (e, None))?,
            other => return err(unknown_param(other)),
        }
    }
    let now = app.clock.now();
    let body = app
        .query(move |e| {
            let ins = e.instruments().get(sym);
            let book = e.book(sym);
            let mut levels = Vec::with_capacity(depth);
            let mut side = |s: Side| {
                book.depth(s, depth, &mut levels);
                levels
                    .iter()
                    .map(|l| BookLevelJson::new(l, ins))
                    .collect::<Vec<_>>()
            };
            let json = BookJson {
                symbol: &ins.symbol,
                bids: side(Side::Buy),
                asks: side(Side::Sell),
                timestamp: Timestamp(now),
            };
            to_vec(&json, 256 + depth * 80)
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

fn unknown_param(name: &str) -> ApiError {
    ApiError::bad_request("INVALID_PARAMETER", format!("unknown parameter '{name}'"))
        .field(name.to_owned())
}

/// `GET /api/trades/{symbol}?limit=`.
pub async fn trades(app: &Arc<App>, req: Req) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut limit = 100;
    for (k, v) in query_pairs(&req).map_err(|e| (e, None))? {
        match k.as_str() {
            "limit" => limit = int_param(&v, "limit", 1, 1000).map_err(|e| (e, None))?,
            other => return err(unknown_param(other)),
        }
    }
    let body = app
        .query(move |e| {
            let ins = e.instruments().get(sym);
            let json = TradesJson {
                symbol: &ins.symbol,
                trades: e
                    .recent_trades(sym, limit)
                    .iter()
                    .map(|t| PublicTradeJson::new(t, ins))
                    .collect(),
            };
            to_vec(&json, 256 + limit * 128)
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}

/// `GET /api/candles/{symbol}?interval=1m&limit=`.
pub async fn candles(app: &Arc<App>, req: Req) -> Outcome {
    let sym = symbol_of(app, &req).map_err(|e| (e, None))?;
    let mut interval = CandleInterval::M1;
    let mut limit = 100;
    for (k, v) in query_pairs(&req).map_err(|e| (e, None))? {
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
            let candles = e.candles(sym, interval, limit);
            to_vec(
                &CandlesJson::new(ins, interval, &candles),
                256 + limit * 160,
            )
        })
        .await
        .map_err(|e| (e, None))?;
    Ok(Answer::json(200, body))
}
