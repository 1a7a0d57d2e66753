//! # oms-ingress
//!
//! The `oms` binary's library: configuration, the hyper HTTP front, the disruptor pipeline
//! (validate ▶ idempotency ▶ risk ▶ publish), the processor thread that runs the
//! deterministic engine, metrics, and `oms serve`'s start-up and shutdown.

pub mod backends;
pub mod config;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod serve;
pub mod snapshots;
