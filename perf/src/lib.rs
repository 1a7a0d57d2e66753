//! oms-perf: the measuring side of oms.
//!
//! oms exists to be fast, and every speed claim in the project has to come out of one harness,
//! in one run, as ratios against limits and peers measured the same way. This crate holds that
//! harness: a load generator (open loop with coordinated-omission correction, closed loop for
//! maximum throughput), a raw Kafka producer for the broker's own ceiling, the reference servers
//! (`perf-echo`: the HTTP stack's limit; `seedline`: the seed's per-request design), and the
//! table builder used by `perf/compare`.

pub mod kafka_produce;
pub mod loadgen;
pub mod plot;
pub mod report;
pub mod rng;
pub mod table;
pub mod target;
pub mod traffic;
