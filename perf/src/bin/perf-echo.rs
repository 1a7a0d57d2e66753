//! `perf-echo`: the HTTP stack's limit.
//!
//! A bare hyper 1 server that does the minimum any order endpoint must do — read the request,
//! parse the JSON body with serde into an order struct — and answers a fixed 201 body. No
//! validation, no state, no durability: whatever oms achieves is measured against this.
//! Prints `listening ADDR` on stdout once bound (port 0 picks a free port).

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "perf-echo",
    about = "Bare hyper server answering POST /api/orders with a fixed 201"
)]
struct Args {
    /// Address to bind (loopback only; port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: SocketAddr,
    /// Runtime worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// A quantity or price: decimal string or JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Num {
    Str(String),
    Num(f64),
}

/// The order body, parsed the way a real handler must before it can do anything.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct OrderBody {
    symbol: String,
    side: String,
    quantity: Num,
    price: Option<Num>,
    order_type: String,
    time_in_force: Option<String>,
    client_order_id: Option<String>,
    post_only: Option<bool>,
}

const CREATED: &str = r#"{"orderId":"01900000-0000-7000-8000-000000000000","status":"ACCEPTED","symbol":"BTC/USD","side":"BUY","orderType":"LIMIT","timeInForce":"GTC","quantity":"0.0100","price":"45000.50","timestamp":"2026-01-01T00:00:00Z"}"#;
const CANCELED: &str = r#"{"orderId":"01900000-0000-7000-8000-000000000000","status":"CANCELED"}"#;
const BAD: &str = r#"{"error":{"code":"INVALID_BODY","message":"body is not an order","field":null},"correlationId":"echo"}"#;

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    Ok(match (&parts.method, path) {
        (&Method::POST, "/api/orders") => {
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, BAD)),
            };
            match serde_json::from_slice::<OrderBody>(&bytes) {
                Ok(_) => reply(StatusCode::CREATED, CREATED),
                Err(_) => reply(StatusCode::BAD_REQUEST, BAD),
            }
        }
        (&Method::DELETE, p) if p.starts_with("/api/orders/") => reply(StatusCode::OK, CANCELED),
        (&Method::GET, "/ready" | "/health") => reply(StatusCode::OK, "{}"),
        _ => reply(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"NOT_FOUND","message":"no route","field":null},"correlationId":"echo"}"#,
        ),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bind.ip().is_loopback() {
        bail!("refusing to bind a non-loopback address {}", args.bind);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(args.bind).await?;
        println!("listening {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    })
}
