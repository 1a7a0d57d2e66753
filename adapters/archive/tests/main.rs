//! The one integration-test binary of this crate: every file in tests/ is a module of it.
//! One binary instead of one per file keeps CI fast (each test binary is a separate link of
//! every dependency).

mod api;
mod common;
mod crash;
mod model;
mod timing;
