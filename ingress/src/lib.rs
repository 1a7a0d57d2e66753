//! # oms-ingress
//!
//! The `oms` binary's library: configuration, the hyper HTTP front, the disruptor pipeline
//! (validate ▶ idempotency ▶ risk ▶ publish), the processor thread that runs the
//! deterministic engine, metrics, the WebSocket fan-out, and `oms serve`'s start-up and shutdown.
//!
//! Dependencies point inward: `pipeline` and `processor` use the core and the wire schema
//! (`oms-wire`) only; `http` and `ws` sit on top of them; `backends` builds the adapters;
//! `serve` wires everything together.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod serve;
pub mod snapshots;
pub mod telemetry;
pub mod ws;
