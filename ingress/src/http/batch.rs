//! Batch place and cancel: `POST /api/orders/batch` and `DELETE /api/orders/batch`.
//!
//! Every item gets its own result (status and body, exactly what the single-order route
//! would have answered) in request order; the batch as a whole answers 200 once it is
//! well-formed. Items that pass JSON parsing are put on the ring together, on consecutive
//! slots claimed at once, so they travel the stages as one unit and reach the log in one
//! group commit when they fit the publish batch.
//!
//! Idempotency: one `X-Idempotency-Key` covers the batch. Item `i` (from 0) is recorded under
//! the key `<key>#<i>` with its own body's fingerprint, so resending the same batch with the
//! same key replays every item's stored result (`"replayed":true`), never a second order,
//! and a changed item under a reused key gets its own 422 `IDEMPOTENCY_KEY_REUSED`.

use std::sync::Arc;

use oms_core::command::CancelOrder;
use oms_core::{AccountId, ClientOrderId, IdempotencyKey, OrderId};
use serde::Deserialize;
use serde_json::value::RawValue;

use oms_wire::ApiError;

use super::layers::Req;
use super::orders::{correlation, fingerprint, idempotency_key, json_error, parse_place};
use super::{Answer, App, Ctx, Outcome, err, read_body, require_json};
use crate::pipeline::slot::{Reply, Work};

/// Longest batch key: `#` and up to 4 index digits must still fit an idempotency key.
const MAX_BATCH_KEY: usize = oms_core::ids::IDEMPOTENCY_KEY_MAX - 5;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBatch<'a> {
    #[serde(borrow)]
    orders: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CancelItem {
    order_id: Option<String>,
    client_order_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBatch<'a> {
    #[serde(borrow)]
    orders: Vec<&'a RawValue>,
}

/// Every item must at least be a JSON object (the documented shape); what is inside is
/// checked per item. Anything else makes the whole request malformed.
fn all_objects(items: &[&RawValue]) -> Result<(), ApiError> {
    match items
        .iter()
        .position(|r| !r.get().trim_start().starts_with('{'))
    {
        None => Ok(()),
        Some(i) => Err(ApiError::bad_request(
            "INVALID_JSON",
            format!("orders[{i}] must be a JSON object"),
        )
        .field("orders")),
    }
}

/// One item's outcome: the status and the body the single route would have sent.
enum Item {
    Ok {
        status: u16,
        body: Vec<u8>,
        replayed: bool,
    },
    Err(ApiError),
}

impl From<Reply> for Item {
    fn from(r: Reply) -> Self {
        match r {
            // A non-2xx answer here (risk rejection or its replay) is already an error body.
            Reply::Json {
                status,
                body,
                replayed,
            } => Item::Ok {
                status,
                body,
                replayed,
            },
            Reply::Error(e) => Item::Err(e),
        }
    }
}

fn check_size(app: &App, n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(
            ApiError::bad_request("INVALID_PARAMETER", "orders must not be empty").field("orders"),
        );
    }
    if n > app.trading.max_batch_items {
        return Err(ApiError::bad_request(
            "BATCH_TOO_LARGE",
            format!(
                "at most {} orders per batch, got {n}",
                app.trading.max_batch_items
            ),
        )
        .field("orders"));
    }
    Ok(())
}

/// `{"results":[{"index":0,"status":201,"order":{…}},{"index":1,"status":400,"error":{…},…}]}`.
fn render_results(items: Vec<Item>, ctx: &Ctx) -> String {
    let mut s = String::with_capacity(64 + items.len() * 700);
    s.push_str("{\"results\":[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"index\":");
        s.push_str(&i.to_string());
        match item {
            Item::Ok {
                status,
                body,
                replayed,
            } => {
                s.push_str(",\"status\":");
                s.push_str(&status.to_string());
                if replayed {
                    s.push_str(",\"replayed\":true");
                }
                let body = String::from_utf8_lossy(&body);
                if status < 300 {
                    s.push_str(",\"order\":");
                    s.push_str(&body);
                    s.push('}');
                } else {
                    // An error body `{"error":…}`: its fields join the item.
                    s.push(',');
                    s.push_str(body.strip_prefix('{').unwrap_or("}"));
                }
            }
            Item::Err(e) => {
                s.push_str(",\"status\":");
                s.push_str(&e.status.to_string());
                let b = String::from_utf8(e.body(&ctx.correlation_id)).unwrap_or_default();
                s.push(',');
                s.push_str(b.strip_prefix('{').unwrap_or("}"));
            }
        }
    }
    s.push_str("]}");
    s
}

/// `POST /api/orders/batch` with `{"orders":[<place body>, …]}`.
pub async fn place(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    let key = idempotency_key(&req).map_err(|e| (e, None))?;
    if key.as_str().len() > MAX_BATCH_KEY {
        return err(ApiError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            format!("a batch idempotency key has at most {MAX_BATCH_KEY} characters"),
        )
        .field("X-Idempotency-Key"));
    }
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let b: PlaceBatch<'_> = serde_json::from_slice(&body).map_err(|e| (json_error(&e), None))?;
    check_size(app, b.orders.len()).map_err(|e| (e, None))?;
    all_objects(&b.orders).map_err(|e| (e, None))?;
    let mut items: Vec<Option<Item>> = Vec::with_capacity(b.orders.len());
    let mut queued = Vec::with_capacity(b.orders.len());
    for (i, raw) in b.orders.iter().enumerate() {
        let text = raw.get().as_bytes();
        match parse_place(text) {
            Ok(p) => {
                let item_key = IdempotencyKey::new(&format!("{}#{i}", key.as_str()))
                    .expect("batch keys are bounded to fit");
                queued.push((i, p, item_key, fingerprint(text)));
                items.push(None);
            }
            Err(e) => items.push(Some(Item::Err(e))),
        }
    }
    let corr = correlation(ctx);
    let replies = if queued.is_empty() {
        Vec::new()
    } else {
        let n = queued.len();
        let q = &queued;
        app.pipeline
            .submit_batch(
                ctx.started,
                ctx.trace,
                |j, d| {
                    let (_, raw, key, fingerprint) = q[j];
                    d.work = Work::Place {
                        raw,
                        key,
                        fingerprint,
                        cmd: None,
                    };
                    d.account = account;
                    d.correlation_id = corr;
                },
                n,
            )
            .await
    };
    for ((i, ..), r) in queued.iter().zip(replies) {
        items[*i] = Some(r.into());
    }
    let items = items
        .into_iter()
        .map(|i| i.unwrap_or_else(|| Item::Err(ApiError::internal("item not answered"))))
        .collect();
    Ok(Answer::json(200, render_results(items, ctx)))
}

/// `DELETE /api/orders/batch` with `{"orders":[{"orderId":…}|{"clientOrderId":…}, …]}`.
pub async fn cancel(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let b: CancelBatch<'_> = serde_json::from_slice(&body).map_err(|e| (json_error(&e), None))?;
    check_size(app, b.orders.len()).map_err(|e| (e, None))?;
    all_objects(&b.orders).map_err(|e| (e, None))?;
    let items: Vec<CancelItem> = b
        .orders
        .iter()
        .map(|r| serde_json::from_str(r.get()))
        .collect::<Result<_, _>>()
        .map_err(|e| (json_error(&e), None))?;
    enum Target {
        Id(OrderId),
        Client(ClientOrderId),
    }
    let targets: Vec<Result<Target, ApiError>> = items
        .iter()
        .map(|it| match (&it.order_id, &it.client_order_id) {
            (Some(id), None) => id.parse::<OrderId>().map(Target::Id).map_err(|_| {
                ApiError::bad_request("INVALID_ORDER_ID", format!("'{id}' is not an order id"))
                    .field("orderId")
            }),
            (None, Some(c)) => ClientOrderId::new(c).map(Target::Client).map_err(|e| {
                ApiError::bad_request("INVALID_CLIENT_ORDER_ID", format!("clientOrderId {e}"))
                    .field("clientOrderId")
            }),
            _ => Err(ApiError::bad_request(
                "INVALID_PARAMETER",
                "each item needs exactly one of orderId and clientOrderId",
            )
            .field("orders")),
        })
        .collect();
    // One read on the processor for every item: which order, and is it open?
    let lookups: Vec<Option<Target>> = targets
        .iter()
        .map(|t| match t {
            Ok(Target::Id(id)) => Some(Target::Id(*id)),
            Ok(Target::Client(c)) => Some(Target::Client(*c)),
            Err(_) => None,
        })
        .collect();
    let found = app
        .query(move |e| {
            lookups
                .iter()
                .map(|t| {
                    let o = match t {
                        Some(Target::Id(id)) => e.order(*id).filter(|o| o.account == account),
                        Some(Target::Client(c)) => e.order_by_client_id(&account, c),
                        None => None,
                    };
                    o.map(|o| (o.order_id, o.symbol, o.status.is_open()))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| (e, None))?;
    let mut items: Vec<Option<Item>> = Vec::with_capacity(targets.len());
    let mut queued = Vec::new();
    let corr = correlation(ctx);
    for (i, (t, f)) in targets.into_iter().zip(found).enumerate() {
        match (t, f) {
            (Err(e), _) => items.push(Some(Item::Err(e))),
            (Ok(_), None) => items.push(Some(Item::Err(ApiError::order_not_found()))),
            (Ok(_), Some((_, _, false))) => items.push(Some(Item::Err(ApiError::reject(
                oms_core::RejectCode::OrderNotOpen,
            )))),
            (Ok(_), Some((id, symbol, true))) => {
                queued.push((
                    i,
                    CancelOrder {
                        order_id: id,
                        account,
                        symbol,
                        ts: 0,
                        correlation_id: corr,
                    },
                ));
                items.push(None);
            }
        }
    }
    let replies = if queued.is_empty() {
        Vec::new()
    } else {
        let q = &queued;
        app.pipeline
            .submit_batch(
                ctx.started,
                ctx.trace,
                |j, d| {
                    d.work = Work::Cancel(q[j].1);
                    d.account = account;
                    d.correlation_id = corr;
                },
                q.len(),
            )
            .await
    };
    for ((i, _), r) in queued.iter().zip(replies) {
        items[*i] = Some(r.into());
    }
    let items = items
        .into_iter()
        .map(|i| i.unwrap_or_else(|| Item::Err(ApiError::internal("item not answered"))))
        .collect();
    Ok(Answer::json(200, render_results(items, ctx)))
}
