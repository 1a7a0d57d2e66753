//! The one integration-test binary of this crate: every file in tests/ is a module of it.
//! One binary instead of one per file keeps CI fast (each test binary is a separate link
//! of every dependency); `scripts/test` checks that no file in tests/ is left out.

mod audit;
mod common;
mod orders;
mod perf;
mod projector;
