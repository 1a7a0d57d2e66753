//! Order reads that span the engine and the archive of finished orders.
//!
//! The engine holds open orders and the newest finished ones; older finished orders live in
//! the archive (`crate::archive`). Each read asks the engine on the processor thread and, in
//! the same closure, queues the archive part of the question behind every eviction that
//! thread has made — so an order is found in one place or the other, never in neither. A
//! page merges both sides by the list key `(created_at, order_id)`, newest first, dropping
//! the duplicate an eviction between the two reads can leave.

use std::sync::Arc;

use bytes::Bytes;
use oms_core::ports::OrderQuery;
use oms_core::{AccountId, ClientOrderId, OrderId};
use oms_wire::{ApiError, OrderJson};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{App, Outcome, err};
use crate::archive::{ArchiveMsg, ArchiveQuery, Archiver, Found};

/// An order's REST JSON with its list key.
struct Keyed {
    key: (u64, OrderId),
    json: Vec<u8>,
}

/// Sends `make(reply)` to the archive (from the processor thread) and returns the answer's
/// receiver; `None` without an archive.
fn ask(
    archive: Option<&Archiver>,
    make: impl FnOnce(oneshot::Sender<Found>) -> ArchiveMsg,
) -> Option<oneshot::Receiver<Found>> {
    archive.map(|a| {
        let (tx, rx) = oneshot::channel();
        a.send(make(tx));
        rx
    })
}

/// Waits for an archive answer; a stopped archive thread is an empty answer.
async fn answer(
    rx: Option<oneshot::Receiver<Found>>,
) -> Result<Vec<oms_archive::ArchivedOrder>, ApiError> {
    match rx {
        Some(rx) => rx.await.unwrap_or_else(|_| Ok(Vec::new())),
        None => Ok(Vec::new()),
    }
}

/// `GET /api/orders/{id}` from the engine, else the archive.
pub async fn get(app: &Arc<App>, account: AccountId, id: OrderId) -> Outcome {
    let archive = app.archive.clone();
    let (here, there) = app
        .query(
            move |e| match e.order(id).filter(|o| o.account == account) {
                Some(o) => (Some(OrderJson::rest(e.instruments(), o)), None),
                None => (
                    None,
                    ask(archive.as_ref(), |reply| ArchiveMsg::Get {
                        account,
                        id,
                        reply,
                    }),
                ),
            },
        )
        .await
        .map_err(|e| (e, None))?;
    if let Some(b) = here {
        return Ok(super::Answer::json(200, b));
    }
    match answer(there).await.map_err(|e| (e, None))?.pop() {
        Some(o) => Ok(super::Answer::json(200, o.json)),
        None => err(ApiError::order_not_found()),
    }
}

/// The order of `account` with this `clientOrderId` (the engine's open or newest held one,
/// else the archive's newest), as REST JSON, with whether it is open.
pub async fn by_client_id(
    app: &Arc<App>,
    account: AccountId,
    cid: ClientOrderId,
) -> Result<Option<(Bytes, Option<(OrderId, oms_core::SymbolId, bool)>)>, ApiError> {
    let archive = app.archive.clone();
    let (here, there) = app
        .query(move |e| match e.order_by_client_id(&account, &cid) {
            Some(o) => (
                Some((
                    OrderJson::rest(e.instruments(), o),
                    (o.order_id, o.symbol, o.status.is_open()),
                )),
                None,
            ),
            None => (
                None,
                ask(archive.as_ref(), |reply| ArchiveMsg::ByClientId {
                    account,
                    cid,
                    reply,
                }),
            ),
        })
        .await?;
    if let Some((json, info)) = here {
        return Ok(Some((Bytes::from(json), Some(info))));
    }
    // An archived order is finished: never open.
    Ok(answer(there)
        .await?
        .pop()
        .map(|o| (Bytes::from(o.json), Some((o.order_id, o.symbol, false)))))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page<'a> {
    orders: Vec<&'a RawValue>,
    next_cursor: Option<String>,
}

/// `GET /api/orders`: a page merged from the engine and the archive, newest first.
pub async fn list(app: &Arc<App>, q: OrderQuery) -> Outcome {
    let archive = app.archive.clone();
    let limit = q.limit;
    let (mut orders, there) = app
        .query(move |e| {
            let here: Vec<Keyed> = e
                .list_orders(&q)
                .into_iter()
                .map(|o| Keyed {
                    key: (o.created_at, o.order_id),
                    json: OrderJson::rest(e.instruments(), o),
                })
                .collect();
            let there = ask(archive.as_ref(), |reply| ArchiveMsg::List {
                query: ArchiveQuery {
                    account: q.account,
                    before: q.cursor,
                    symbol: q.symbol,
                    status: q.status,
                    limit: q.limit,
                },
                reply,
            });
            (here, there)
        })
        .await
        .map_err(|e| (e, None))?;
    orders.extend(
        answer(there)
            .await
            .map_err(|e| (e, None))?
            .into_iter()
            .map(|o| Keyed {
                key: (o.created_at, o.order_id),
                json: o.json,
            }),
    );
    // Newest first; an order evicted between the two reads is in both (same bytes).
    orders.sort_by_key(|o| std::cmp::Reverse(o.key));
    orders.dedup_by(|a, b| a.key == b.key);
    orders.truncate(limit);
    let raws: Vec<Box<RawValue>> = orders
        .iter()
        .filter_map(|o| {
            String::from_utf8(o.json.clone())
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
        })
        .collect();
    let next_cursor = (orders.len() == limit)
        .then(|| orders.last().map(|o| format!("{}_{}", o.key.0, o.key.1)))
        .flatten();
    let page = Page {
        orders: raws.iter().map(AsRef::as_ref).collect(),
        next_cursor,
    };
    Ok(super::Answer::json(
        200,
        oms_wire::to_vec(&page, 256 + orders.len() * 600),
    ))
}
