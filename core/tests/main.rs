//! The one integration-test binary of this crate: every file in tests/ is a module of it.
//! One binary instead of one per file keeps CI fast (each test binary is a separate link
//! of every dependency); `scripts/test` checks that no file in tests/ is left out.

mod determinism;
mod engine_scenarios;
mod eviction;
mod eviction_props;
mod fuzz_decoders;
mod matching_invariants;
mod matching_props;
mod matching_reference;
mod matching_scenarios;
mod number_props;
mod partitions;
mod risk_checks;
mod risk_props;
mod risk_settlement;
