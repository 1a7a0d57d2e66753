//! The one integration-test binary of this crate: every file in tests/ is a module of it.
//! One binary instead of one per file keeps CI fast (each test binary is a separate link
//! of every dependency); `scripts/test` checks that no file in tests/ is left out.

mod cluster;
mod common;
mod crash_recovery;
mod eviction;
mod http_auth;
mod http_errors;
mod http_idempotency;
mod http_limits;
mod http_market_data;
mod http_ops;
mod http_orders;
mod http_trading;
mod idempotency_restart;
mod snapshots;
mod sys;
mod system_adapters;
mod traces;
mod ws;
