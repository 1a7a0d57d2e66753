//! Venue features beyond one order per request: routing and dispatch for batch orders,
//! cancel-all and the dead-man's switch, lookups and cancels by `clientOrderId`, and the
//! audit log query — plus the hook that audits every state-changing request.
//!
//! Kept apart from the core order routes so that `mod.rs` only needs two small hooks.

use std::sync::Arc;

use http::Method;
use oms_core::command::CancelOrder;
use oms_core::{AccountId, ClientOrderId};

use oms_wire::ApiError;

use super::layers::Req;
use super::orders::{correlation, query_pairs, submit_command};
use super::{Answer, App, Ctx, Outcome, batch, cancel_all, err};
use crate::audit::{AuditLog, AuditRecord};
use crate::auth::Principal;
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

/// Dispatch for the routes of this module; the request back for the others.
pub async fn dispatch(
    app: &Arc<App>,
    req: Req,
    ctx: &Ctx,
    account: AccountId,
) -> Result<Outcome, Req> {
    Ok(match ctx.route.route {
        Route::CancelAll => cancel_all::cancel_all(app, req, ctx, account).await,
        Route::CancelAllAfter => cancel_all::cancel_all_after(app, req, ctx, account).await,
        Route::BatchPlace => batch::place(app, req, ctx, account).await,
        Route::BatchCancel => batch::cancel(app, req, ctx, account).await,
        Route::GetByClientId => get_by_client_id(app, req, account).await,
        Route::CancelByClientId => cancel_by_client_id(app, req, ctx, account).await,
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
/// A known caller refused for a missing role (403) is audited as denied by the auth layer;
/// other refusals before a handler (401, 429, 413) are counted and logged, not audited.
pub fn audit_start(req: &Req, route: Route, principal: Option<&Principal>) -> Option<AuditStart> {
    let method = req.method();
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return None;
    }
    let account = principal.map_or_else(
        || "<anonymous>".to_owned(),
        |p| p.account.as_str().to_owned(),
    );
    let path = req.uri().path();
    let target = match route {
        Route::GetOrder | Route::CancelOrder | Route::AmendOrder | Route::CancelByClientId => {
            path.rsplit('/').next().map(str::to_owned)
        }
        _ => None,
    };
    Some(AuditStart {
        account,
        role: principal.map_or("none", |p| p.roles.label()),
        action: route.label(),
        target,
    })
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
        correlation_id: Some(ctx.correlation_id.to_string()),
        status,
        code: code.map(str::to_owned),
        detail,
    });
}

fn client_order_id_of(req: &Req) -> Result<ClientOrderId, ApiError> {
    let raw = req
        .uri()
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let decoded = percent_decode(raw);
    ClientOrderId::new(&decoded).map_err(|e| {
        ApiError::bad_request("INVALID_CLIENT_ORDER_ID", format!("clientOrderId {e}"))
            .field("clientOrderId")
    })
}

/// `GET /api/orders/by-client-id/{clientOrderId}`: the open order with that id, else the
/// newest one that had it.
pub async fn get_by_client_id(app: &Arc<App>, req: Req, account: AccountId) -> Outcome {
    let cid = client_order_id_of(&req).map_err(|e| (e, None))?;
    match super::archived::by_client_id(app, account, cid)
        .await
        .map_err(|e| (e, None))?
    {
        Some((b, _)) => Ok(Answer::json(200, b)),
        None => err(ApiError::order_not_found()),
    }
}

/// `DELETE /api/orders/by-client-id/{clientOrderId}`: cancels the open order with that id.
pub async fn cancel_by_client_id(
    app: &Arc<App>,
    req: Req,
    ctx: &Ctx,
    account: AccountId,
) -> Outcome {
    let cid = client_order_id_of(&req).map_err(|e| (e, None))?;
    let found = super::archived::by_client_id(app, account, cid)
        .await
        .map_err(|e| (e, None))?;
    let (id, symbol, open) = found
        .and_then(|(_, info)| info)
        .ok_or_else(|| (ApiError::order_not_found(), None))?;
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
pub async fn audit(app: &Arc<App>, req: Req) -> Outcome {
    let mut account: Option<String> = None;
    let mut from = 0u64;
    let mut limit = 100usize;
    for (k, v) in query_pairs(&req).map_err(|e| (e, None))? {
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
    // Every node's records from MongoDB when configured; this node's window otherwise, or
    // when MongoDB does not answer (the answer says which).
    let mut source = "local";
    let mut records = None;
    if let Some(remote) = app.trading.audit.remote() {
        match remote.query(account.clone(), from, limit).await {
            Ok(r) => {
                source = remote.name();
                records = Some(r);
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit query on {} failed; answering from this node", remote.name());
            }
        }
    }
    let records =
        records.unwrap_or_else(|| app.trading.audit.query(account.as_deref(), from, limit));
    let mut s = String::with_capacity(64 + records.len() * 256);
    s.push_str("{\"source\":\"");
    s.push_str(source);
    s.push_str("\",\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"seq\":");
        s.push_str(&r.seq.to_string());
        if !r.node.is_empty() {
            s.push_str(",\"node\":");
            s.push_str(&serde_json::to_string(&r.node).unwrap_or_else(|_| "\"\"".into()));
        }
        s.push_str(",\"time\":");
        oms_wire::push_timestamp(&mut s, r.ts);
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
pub fn check_headers(h: &http::HeaderMap) -> Result<(), ApiError> {
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

/// Decodes `%XX` escapes of a path segment (a `+` stays a `+` in a path).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
