//! Cancel-all (`DELETE /api/orders?symbol=&side=`) and the dead-man's switch
//! (`POST /api/orders/cancel-all-after`).
//!
//! Both end in one logged [`CancelAll`] command, applied atomically at its place in the log,
//! so a replay cancels exactly the same orders. The dead-man's timer is wall-clock state of
//! this node only (the core takes no clock): when it expires, the edge submits the command
//! with trigger `DEAD_MANS_SWITCH`; a client refreshes it by posting again, `0` disables it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_core::command::{CancelAll, CancelAllTrigger};
use oms_core::{AccountId, Side};
use serde::Deserialize;

use oms_wire::ApiError;

use super::layers::Req;
use super::orders::{correlation, json_error, query_pairs, submit_command};
use super::{Answer, App, Ctx, Outcome, err, read_body, require_json};
use crate::audit::AuditRecord;
use crate::pipeline::slot::{Reply, Work};

/// Largest dead-man's timeout (24 h), in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// Smallest non-zero timeout: below this a client could not refresh in time.
pub const MIN_TIMEOUT_MS: u64 = 100;
/// How often the timer task looks for expired switches.
const TICK: Duration = Duration::from_millis(25);

/// Armed dead-man's switches of this node: account → (deadline, timeout).
#[derive(Default)]
pub struct DeadMan {
    armed: parking_lot::Mutex<HashMap<AccountId, (Instant, u64)>>,
}

impl DeadMan {
    fn set(&self, account: AccountId, timeout_ms: u64) {
        let mut m = self.armed.lock();
        if timeout_ms == 0 {
            m.remove(&account);
        } else {
            m.insert(
                account,
                (
                    Instant::now() + Duration::from_millis(timeout_ms),
                    timeout_ms,
                ),
            );
        }
    }

    fn take_expired(&self, now: Instant) -> Vec<AccountId> {
        let mut m = self.armed.lock();
        let expired: Vec<AccountId> = m
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(a, _)| *a)
            .collect();
        for a in &expired {
            m.remove(a);
        }
        expired
    }
}

fn parse_side(v: &str) -> Result<Side, ApiError> {
    match v {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        _ => Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("side must be BUY or SELL, not '{v}'"),
        )
        .field("side")),
    }
}

/// `DELETE /api/orders?symbol=&side=`: cancels the caller's open orders (all, or one
/// symbol and/or side).
pub async fn cancel_all(app: &Arc<App>, req: Req, ctx: &Ctx, account: AccountId) -> Outcome {
    let (mut symbol, mut side) = (None, None);
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
                symbol = Some(ins.id);
            }
            "side" => side = Some(parse_side(&v).map_err(|e| (e, None))?),
            other => {
                return err(ApiError::bad_request(
                    "INVALID_PARAMETER",
                    format!("unknown parameter '{other}'"),
                )
                .field(other.to_owned()));
            }
        }
    }
    let corr = correlation(ctx);
    let cmd = CancelAll {
        account,
        symbol,
        side,
        trigger: CancelAllTrigger::Request,
        ts: 0,
        correlation_id: corr,
    };
    submit_command(app, ctx, account, corr, Work::CancelAll(cmd)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AfterBody {
    timeout_ms: u64,
}

/// `POST /api/orders/cancel-all-after {"timeoutMs":N}`: arms (or refreshes) the caller's
/// dead-man's switch; `0` disarms it.
pub async fn cancel_all_after(app: &Arc<App>, req: Req, _ctx: &Ctx, account: AccountId) -> Outcome {
    require_json(req.headers()).map_err(|e| (e, None))?;
    let body = read_body(req.into_body(), app.max_body)
        .await
        .map_err(|e| (e, None))?;
    let b: AfterBody = serde_json::from_slice(&body).map_err(|e| (json_error(&e), None))?;
    let t = b.timeout_ms;
    if t != 0 && !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&t) {
        return err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("timeoutMs must be 0 (disable) or {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS}"),
        )
        .field("timeoutMs"));
    }
    app.trading.deadman.set(account, t);
    let now = app.clock.now();
    let mut s = String::with_capacity(128);
    s.push_str("{\"timeoutMs\":");
    s.push_str(&t.to_string());
    s.push_str(",\"currentTime\":");
    oms_wire::push_timestamp(&mut s, now);
    s.push_str(",\"triggerAt\":");
    if t == 0 {
        s.push_str("null");
    } else {
        oms_wire::push_timestamp(&mut s, now + t * 1_000_000);
    }
    s.push('}');
    Ok(Answer::json(200, s))
}

/// The system (not a request) cancels every open order of `account`: one logged cancel-all
/// with `trigger`, audited as `action` with role `system`. Returns the HTTP-like status of
/// the outcome (≥ 500: not logged).
async fn system_cancel_all(
    app: &App,
    account: AccountId,
    trigger: CancelAllTrigger,
    tag: &str,
    action: &str,
) -> u16 {
    let started = Instant::now();
    let corr = oms_core::command::CorrelationId::new(&format!("{tag}-{:x}", app.clock.now())).ok();
    let cmd = CancelAll {
        account,
        symbol: None,
        side: None,
        trigger,
        ts: 0,
        correlation_id: corr,
    };
    let reply = app
        .pipeline
        .submit(started, move |d| {
            d.work = Work::CancelAll(cmd);
            d.account = account;
            d.correlation_id = corr;
        })
        .await;
    let (status, detail) = match &reply {
        Reply::Json { status, body, .. } => (*status, String::from_utf8_lossy(body).into_owned()),
        Reply::Error(e) => (e.status, e.code.to_owned()),
    };
    app.trading.audit.record(AuditRecord {
        account: account.as_str().to_owned(),
        role: "system".to_owned(),
        action: action.to_owned(),
        target: None,
        correlation_id: corr.map(|c| c.as_str().to_owned()),
        status,
        code: None,
        detail: Some(detail),
    });
    status
}

/// The timer task: cancels every open order of an account whose switch expired (one logged
/// command each) and audits it. A cancel-all the log refused is retried on the next tick.
pub async fn run_timer(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        for account in app.trading.deadman.take_expired(Instant::now()) {
            let status = system_cancel_all(
                &app,
                account,
                CancelAllTrigger::DeadMansSwitch,
                "deadman",
                "CANCEL_ALL_AFTER_EXPIRED",
            )
            .await;
            if status >= 500 {
                // Not logged: try again on the next tick.
                app.trading.deadman.set(account, MIN_TIMEOUT_MS);
                tracing::warn!(%account, status, "dead-man's switch cancel-all failed; retrying");
            } else {
                tracing::info!(%account, "dead-man's switch expired: open orders canceled");
            }
        }
    }
}

/// Cancel-on-disconnect (WebSocket sessions that opted in with `"cancelOnDisconnect":true` in
/// their `auth` op, as on Deribit): when such a connection closes, every open order of its
/// account is canceled by one logged cancel-all (trigger `DISCONNECT`) and audited.
pub fn on_disconnect(app: std::sync::Weak<App>) -> crate::ws::OnClose {
    Box::new(move |account: &AccountId| {
        let Some(app) = app.upgrade() else {
            return;
        };
        let account = *account;
        tokio::spawn(async move {
            let status = system_cancel_all(
                &app,
                account,
                CancelAllTrigger::Disconnect,
                "disconnect",
                "CANCEL_ON_DISCONNECT",
            )
            .await;
            tracing::info!(%account, status, "cancel-on-disconnect: open orders canceled");
        });
    })
}
