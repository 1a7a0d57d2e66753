//! Venue features beyond one order per request: routing and dispatch for batch orders,
//! cancel-all and the dead-man's switch, lookups and cancels by `clientOrderId`, and the
//! audit log query — plus the hook that audits every state-changing request.
//!
//! Kept apart from the core order routes so that `mod.rs` only needs two small hooks.

use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use oms_core::command::CancelOrder;
use oms_core::{AccountId, ClientOrderId};

use super::error::ApiError;
use super::orders::{correlation, query_pairs, submit_command};
use super::{Answer, App, Ctx, Outcome, batch, cancel_all, err, render};
use crate::audit::{AuditLog, AuditRecord};
use crate::metrics::Route;
use crate::pipeline::slot::Work;

/// Default largest number of items in one batch request.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 20;

/// State of the venue features.
pub struct Trading {
    pub deadman: cancel_all::DeadMan,
    pub audit: AuditLog,
    /// Largest batch (`--max-batch-orders`).
    pub max_batch_items: usize,
}

impl Default for Trading {
    fn default() -> Self {
        Trading {
            deadman: cancel_all::DeadMan::default(),
            audit: AuditLog::in_memory(),
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
        }
    }
}

/// Routes of this module: `Some` when the path is one of them.
pub fn route(method: &Method, segs: &[&str]) -> Option<(Route, Result<(), ApiError>)> {
    let r = |route: Route, ok: bool, allow: &'static str| {
        Some(if ok {
            (route, Ok(()))
        } else {
            (Route::Other, Err(ApiError::method_not_allowed(allow)))
        })
    };
    match segs {
        ["api", "orders"] if method == Method::DELETE => Some((Route::CancelAll, Ok(()))),
        ["api", "orders", "batch"] => match *method {
            Method::POST => r(Route::BatchPlace, true, ""),
            Method::DELETE => r(Route::BatchCancel, true, ""),
            _ => r(Route::Other, false, "POST, DELETE"),
        },
        ["api", "orders", "cancel-all-after"] => {
            r(Route::CancelAllAfter, method == Method::POST, "POST")
        }
        ["api", "orders", "by-client-id", _] => match *method {
            Method::GET => r(Route::GetByClientId, true, ""),
            Method::DELETE => r(Route::CancelByClientId, true, ""),
            _ => r(Route::Other, false, "GET, DELETE"),
        },
        ["api", "admin", "audit"] => r(Route::Audit, method == Method::GET, "GET"),
        _ => None,
    }
}

/// Dispatch for the routes of [`route`]; `None` for the others.
pub async fn dispatch(
    app: &Arc<App>,
    route: Route,
    req: Request<Incoming>,
    ctx: &Ctx,
) -> Result<Outcome, Request<Incoming>> {
    Ok(match route {
        Route::CancelAll => cancel_all::cancel_all(app, req, ctx).await,
        Route::CancelAllAfter => cancel_all::cancel_all_after(app, req, ctx).await,
        Route::BatchPlace => batch::place(app, req, ctx).await,
        Route::BatchCancel => batch::cancel(app, req, ctx).await,
        Route::GetByClientId => get_by_client_id(app, req).await,
        Route::CancelByClientId => cancel_by_client_id(app, req, ctx).await,
        Route::Audit => audit(app, req).await,
        _ => return Err(req),
    })
}

/// What the audit hook needs to know before the request body is consumed.
pub struct AuditStart {
    account: String,
    role: &'static str,
    action: &'static str,
    target: Option<String>,
}

/// Called before dispatch: `Some` for state-changing requests (everything but GET/HEAD).
pub fn audit_start(
    app: &App,
    method: &Method,
    route: Route,
    req: &Request<Incoming>,
) -> Option<AuditStart> {
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return None;
    }
    let account = app
        .account(req)
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|e| format!("<{}>", e.code));
    let path = req.uri().path();
    let target = match route {
        Route::GetOrder | Route::CancelOrder | Route::AmendOrder | Route::CancelByClientId => {
            path.rsplit('/').next().map(str::to_owned)
        }
        _ => None,
    };
    Some(AuditStart {
        account,
        role: role_of(app),
        action: route.label(),
        target,
    })
}

/// The caller's role as the request context knows it. Until roles exist every
/// authenticated caller may do everything, which the record says as `trader`.
fn role_of(_app: &App) -> &'static str {
    "trader"
}

/// Called after the answer is known.
pub fn audit_finish(
    app: &App,
    start: AuditStart,
    ctx: &Ctx,
    status: u16,
    code: Option<&str>,
    detail: Option<String>,
) {
    app.trading.audit.record(AuditRecord {
        account: start.account,
        role: start.role.to_owned(),
        action: start.action.to_owned(),
        target: start.target,
        correlation_id: Some(ctx.correlation_id.clone()),
        status,
        code: code.map(str::to_owned),
        detail,
    });
}

fn client_order_id_of(req: &Request<Incoming>) -> Result<ClientOrderId, ApiError> {
    let raw = req
        .uri()
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let decoded = super::orders::percent_decode(raw);
    ClientOrderId::new(&decoded).map_err(|e| {
        ApiError::bad_request("INVALID_CLIENT_ORDER_ID", format!("clientOrderId {e}"))
            .field("clientOrderId")
    })
}

/// `GET /api/orders/by-client-id/{clientOrderId}`: the open order with that id, else the
/// newest one that had it.
pub async fn get_by_client_id(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let account = app.account(&req).map_err(|e| (e, None))?;
    let cid = client_order_id_of(&req).map_err(|e| (e, None))?;
    let body = app
        .query(move |e| {
            e.order_by_client_id(&account, &cid).map(|o| {
                let mut s = String::with_capacity(640);
                render::order(&mut s, e.instruments(), o);
                s
            })
        })
        .await
        .map_err(|e| (e, None))?;
    match body {
        Some(b) => Ok(Answer::json(200, b)),
        None => err(ApiError::order_not_found()),
    }
}

/// `DELETE /api/orders/by-client-id/{clientOrderId}`: cancels the open order with that id.
pub async fn cancel_by_client_id(app: &Arc<App>, req: Request<Incoming>, ctx: &Ctx) -> Outcome {
    let account = app.account(&req).map_err(|e| (e, None))?;
    let cid = client_order_id_of(&req).map_err(|e| (e, None))?;
    let found = app
        .query(move |e| {
            e.order_by_client_id(&account, &cid)
                .map(|o| (o.order_id, o.symbol, o.status.is_open()))
        })
        .await
        .map_err(|e| (e, None))?;
    let (id, symbol, open) = found.ok_or_else(|| (ApiError::order_not_found(), None))?;
    if !open {
        return err(ApiError::reject(oms_core::RejectCode::OrderNotOpen));
    }
    let corr = correlation(ctx);
    let cmd = CancelOrder {
        order_id: id,
        account,
        symbol,
        ts: 0,
        correlation_id: corr,
    };
    submit_command(app, ctx, account, corr, Work::Cancel(cmd)).await
}

/// `GET /api/admin/audit?account=&from=&limit=`: audit records, oldest first. `from` is
/// RFC 3339 or milliseconds since the epoch.
pub async fn audit(app: &Arc<App>, req: Request<Incoming>) -> Outcome {
    let _caller = app.account(&req).map_err(|e| (e, None))?;
    let mut account: Option<String> = None;
    let mut from = 0u64;
    let mut limit = 100usize;
    for (k, v) in query_pairs(&req) {
        match k.as_str() {
            "account" => {
                AccountId::new(&v).map_err(|e| {
                    (
                        ApiError::bad_request("INVALID_ACCOUNT", format!("account {e}"))
                            .field("account"),
                        None,
                    )
                })?;
                account = Some(v);
            }
            "from" => from = parse_from(&v).map_err(|e| (e, None))?,
            "limit" => {
                limit = super::orders::int_param(&v, "limit", 1, 1000).map_err(|e| (e, None))?
            }
            other => {
                return err(ApiError::bad_request(
                    "INVALID_PARAMETER",
                    format!("unknown parameter '{other}'"),
                )
                .field(other.to_owned()));
            }
        }
    }
    let records = app.trading.audit.query(account.as_deref(), from, limit);
    let mut s = String::with_capacity(64 + records.len() * 256);
    s.push_str("{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"seq\":");
        s.push_str(&r.seq.to_string());
        s.push_str(",\"time\":");
        render::timestamp(&mut s, r.ts);
        let rest = serde_json::to_string(&r.record).unwrap_or_else(|_| "{}".into());
        s.push(',');
        s.push_str(rest.strip_prefix('{').unwrap_or("}"));
    }
    s.push_str("]}");
    Ok(Answer::json(200, s))
}

fn parse_from(v: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "INVALID_PARAMETER",
            "from must be RFC 3339 (2026-12-02T07:00:00Z) or milliseconds since the epoch",
        )
        .field("from")
    };
    if !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<u64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(bad);
    }
    oms_core::time::parse_rfc3339(v).ok_or_else(bad)
}

/// Headers that must appear at most once: a repeated one is refused instead of silently
/// taking the first (a proxy that duplicates `Authorization` must not pick an identity).
const SINGLE_HEADERS: [&str; 5] = [
    "authorization",
    "x-idempotency-key",
    "idempotency-key",
    "x-account-id",
    "x-correlation-id",
];

/// Refuses repeated identity/idempotency headers (400 `DUPLICATE_HEADER`), both idempotency
/// header spellings with different values, and a malformed `X-Correlation-Id`
/// (400 `INVALID_CORRELATION_ID`).
pub fn check_headers(req: &Request<Incoming>) -> Result<(), ApiError> {
    let h = req.headers();
    for name in SINGLE_HEADERS {
        if h.get_all(name).iter().nth(1).is_some() {
            return Err(ApiError::bad_request(
                "DUPLICATE_HEADER",
                format!("the {name} header must be sent at most once"),
            )
            .field(name));
        }
    }
    if let (Some(a), Some(b)) = (h.get("x-idempotency-key"), h.get("idempotency-key"))
        && a != b
    {
        return Err(ApiError::bad_request(
            "DUPLICATE_HEADER",
            "X-Idempotency-Key and Idempotency-Key disagree",
        )
        .field("idempotency-key"));
    }
    if let Some(v) = h.get("x-correlation-id")
        && !valid_correlation_id(v.as_bytes())
    {
        return Err(ApiError::bad_request(
            "INVALID_CORRELATION_ID",
            "X-Correlation-Id must be 1-64 printable ASCII characters without spaces",
        )
        .field("X-Correlation-Id"));
    }
    Ok(())
}

/// 1–64 bytes of printable ASCII without spaces.
pub fn valid_correlation_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 64 && v.iter().all(|b| (0x21..=0x7e).contains(b))
}
