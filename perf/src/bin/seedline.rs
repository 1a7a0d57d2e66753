//! `seedline`: the seed's per-request design, implemented faithfully as the baseline.
//!
//! This is what a user would build without oms: per request a Redis GET of
//! `idempotency:{account}:{key}`, validation, an *awaited* Kafka produce to `orders`
//! (acks=all, idempotent producer), a Redis SET with a 24 h TTL, then 201. A consumer task in
//! the same process reads `orders`, spawns a task per order, runs a per-account notional risk
//! check and awaits one MongoDB insert per order (db `seedline`). It is not a straw man: one
//! shared `FutureProducer`, a multiplexed redis `ConnectionManager`, the mongodb driver's
//! connection pool, a multi-threaded runtime.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mongodb::bson::doc;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "seedline",
    about = "The seed's per-request order path (Redis GET, awaited Kafka produce, Redis SET)"
)]
struct Args {
    /// Address to bind (loopback only).
    #[arg(long, default_value = "127.0.0.1:8082")]
    bind: SocketAddr,
    /// Kafka bootstrap servers.
    #[arg(long, env = "OMS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Redis URL.
    #[arg(long, env = "OMS_REDIS_URL", default_value = "redis://127.0.0.1:6390/")]
    redis_url: String,
    /// MongoDB URL.
    #[arg(
        long,
        env = "OMS_MONGO_URL",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    mongo_url: String,
    /// Topic the orders go to.
    #[arg(long, default_value = "orders")]
    topic: String,
    /// Per-account open-notional limit in USD for the consumer's risk check.
    #[arg(long, default_value_t = 1e9)]
    max_notional: f64,
    /// Runtime worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

const SYMBOLS: [(&str, f64); 3] = [
    ("BTC/USD", 45000.0),
    ("ETH/USD", 2500.0),
    ("SOL/USD", 100.0),
];

#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Str(String),
    Num(f64),
}

impl Num {
    fn value(&self) -> Option<f64> {
        match self {
            Num::Str(s) => s.parse().ok(),
            Num::Num(n) => Some(*n),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderBody {
    symbol: String,
    side: String,
    quantity: Num,
    price: Option<Num>,
    order_type: String,
    time_in_force: Option<String>,
    client_order_id: Option<String>,
}

/// The event published to `orders` and stored in MongoDB.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderEvent {
    event_type: String,
    order_id: String,
    account: String,
    idempotency_key: String,
    client_order_id: Option<String>,
    symbol: String,
    side: String,
    order_type: String,
    time_in_force: String,
    quantity: f64,
    price: Option<f64>,
    status: String,
    timestamp: u64,
}

struct App {
    redis: ConnectionManager,
    producer: FutureProducer,
    topic: String,
    ready: AtomicBool,
    seq: AtomicU64,
    boot: u64,
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Resp {
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "field": field},
        "correlationId": "seedline",
    });
    json(status, body.to_string())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl App {
    async fn place(&self, headers: &HeaderMap, body: Bytes) -> Resp {
        let Some(key) = header_str(headers, "x-idempotency-key")
            .or_else(|| header_str(headers, "idempotency-key"))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_KEY_MISSING",
                "X-Idempotency-Key is required",
                None,
            );
        };
        let account = header_str(headers, "x-account-id").unwrap_or("anonymous");
        let rkey = format!("idempotency:{account}:{key}");
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let fp = format!("{:016x}", hasher.finish());
        let mut redis = self.redis.clone();
        // 1. Redis GET: has this key been seen?
        match redis.get::<_, Option<String>>(&rkey).await {
            Ok(Some(stored)) => {
                let (sfp, sbody) = stored.split_once('\n').unwrap_or(("", ""));
                if sfp != fp {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "IDEMPOTENCY_KEY_REUSED",
                        "key reused with a different body",
                        None,
                    );
                }
                let mut r = json(StatusCode::CREATED, sbody.to_string());
                r.headers_mut().insert(
                    "idempotent-replayed",
                    header::HeaderValue::from_static("true"),
                );
                return r;
            }
            Ok(None) => {}
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "IDEMPOTENCY_UNAVAILABLE",
                    "redis unavailable",
                    None,
                );
            }
        }
        // 2. Validate.
        let order: OrderBody = match serde_json::from_slice(&body) {
            Ok(o) => o,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_BODY",
                    &e.to_string(),
                    None,
                );
            }
        };
        if !SYMBOLS.iter().any(|(s, _)| *s == order.symbol) {
            return error(
                StatusCode::BAD_REQUEST,
                "UNKNOWN_SYMBOL",
                "unknown symbol",
                Some("symbol"),
            );
        }
        if order.side != "BUY" && order.side != "SELL" {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_SIDE",
                "side must be BUY or SELL",
                Some("side"),
            );
        }
        let Some(quantity) = order.quantity.value().filter(|q| *q > 0.0) else {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_QUANTITY",
                "quantity must be > 0",
                Some("quantity"),
            );
        };
        let price = match order.order_type.as_str() {
            "LIMIT" => match order
                .price
                .as_ref()
                .and_then(Num::value)
                .filter(|p| *p > 0.0)
            {
                Some(p) => Some(p),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PRICE",
                        "LIMIT needs a price > 0",
                        Some("price"),
                    );
                }
            },
            "MARKET" => None,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ORDER_TYPE",
                    "orderType must be LIMIT or MARKET",
                    Some("orderType"),
                );
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let event = OrderEvent {
            event_type: "ORDER_PLACED".into(),
            order_id: format!("{:012x}-{seq:012x}", self.boot),
            account: account.to_string(),
            idempotency_key: key.to_string(),
            client_order_id: order.client_order_id,
            time_in_force: order.time_in_force.unwrap_or_else(|| "GTC".into()),
            symbol: order.symbol,
            side: order.side,
            order_type: order.order_type,
            quantity,
            price,
            status: "ACCEPTED".into(),
            timestamp: now_ms(),
        };
        let payload = serde_json::to_string(&event).expect("serializable");
        // 3. Awaited Kafka produce (acks=all): the ack waits for the broker.
        let rec = FutureRecord::to(&self.topic)
            .key(&event.symbol)
            .payload(&payload);
        if self
            .producer
            .send(rec, Duration::from_secs(5))
            .await
            .is_err()
        {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "LOG_UNAVAILABLE",
                "kafka produce failed",
                None,
            );
        }
        let response = serde_json::json!({
            "orderId": event.order_id, "status": "ACCEPTED", "symbol": event.symbol, "side": event.side,
            "orderType": event.order_type, "timeInForce": event.time_in_force, "quantity": quantity,
            "price": price, "timestamp": event.timestamp,
        })
        .to_string();
        // 4. Redis SET with a 24 h TTL.
        let stored = format!("{fp}\n{response}");
        if redis
            .set_ex::<_, _, ()>(&rkey, stored, 86_400)
            .await
            .is_err()
        {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "IDEMPOTENCY_UNAVAILABLE",
                "redis unavailable",
                None,
            );
        }
        json(StatusCode::CREATED, response)
    }

    async fn cancel(&self, headers: &HeaderMap, order_id: &str) -> Resp {
        let account = header_str(headers, "x-account-id").unwrap_or("anonymous");
        let payload = serde_json::json!({
            "eventType": "ORDER_CANCEL_REQUESTED", "orderId": order_id, "account": account, "timestamp": now_ms(),
        })
        .to_string();
        let rec = FutureRecord::to(&self.topic).key(account).payload(&payload);
        if self
            .producer
            .send(rec, Duration::from_secs(5))
            .await
            .is_err()
        {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "LOG_UNAVAILABLE",
                "kafka produce failed",
                None,
            );
        }
        json(
            StatusCode::OK,
            serde_json::json!({"orderId": order_id, "status": "CANCEL_REQUESTED"}).to_string(),
        )
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        Ok(match (&parts.method, path) {
            (&Method::POST, "/api/orders") => match body.collect().await {
                Ok(b) => self.place(&parts.headers, b.to_bytes()).await,
                Err(_) => error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_BODY",
                    "unreadable body",
                    None,
                ),
            },
            (&Method::DELETE, p) if p.starts_with("/api/orders/") => {
                self.cancel(&parts.headers, &p["/api/orders/".len()..])
                    .await
            }
            (&Method::GET, "/health") => json(StatusCode::OK, "{}".into()),
            (&Method::GET, "/ready") if self.ready.load(Ordering::Relaxed) => {
                json(StatusCode::OK, "{}".into())
            }
            (&Method::GET, "/ready") => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                "consumer not assigned",
                None,
            ),
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no route", None),
        })
    }
}

/// The consumer side: a task per order, risk check, awaited Mongo insert.
async fn consume(
    consumer: Arc<StreamConsumer>,
    orders: mongodb::Collection<mongodb::bson::Document>,
    max_notional: f64,
) {
    let exposure: Arc<std::sync::Mutex<HashMap<String, f64>>> = Arc::default();
    loop {
        let msg = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("seedline: consume error: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(Ok(ev)) = msg.payload().map(serde_json::from_slice::<OrderEvent>) else {
            continue;
        };
        let (orders, exposure) = (orders.clone(), exposure.clone());
        tokio::spawn(async move {
            let reference = SYMBOLS
                .iter()
                .find(|(s, _)| *s == ev.symbol)
                .map_or(0.0, |(_, p)| *p);
            let notional = ev.quantity * ev.price.unwrap_or(reference);
            let status = {
                let mut m = exposure.lock().expect("exposure lock");
                let e = m.entry(ev.account.clone()).or_default();
                if *e + notional > max_notional {
                    "REJECTED"
                } else {
                    *e += notional;
                    "ACCEPTED"
                }
            };
            let d = doc! {
                "orderId": &ev.order_id, "account": &ev.account, "idempotencyKey": &ev.idempotency_key,
                "symbol": &ev.symbol, "side": &ev.side, "orderType": &ev.order_type,
                "timeInForce": &ev.time_in_force, "quantity": ev.quantity, "price": ev.price,
                "status": status, "createdAt": ev.timestamp as i64,
            };
            if let Err(e) = orders.insert_one(d).await {
                eprintln!("seedline: mongo insert failed: {e}");
            }
        });
    }
}

async fn ensure_topic(brokers: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let t = NewTopic::new(topic, 3, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics([&t], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

async fn serve(args: Args) -> Result<()> {
    crate_checks(&args)?;
    ensure_topic(&args.kafka_brokers, &args.topic)
        .await
        .context("kafka topic")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "10000")
        .create()
        .context("kafka producer")?;
    let redis = ConnectionManager::new(redis::Client::open(args.redis_url.as_str())?)
        .await
        .context("redis")?;
    let mongo = mongodb::Client::with_uri_str(&args.mongo_url)
        .await
        .context("mongo client")?;
    mongo
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .context("mongo ping")?;
    let orders = mongo
        .database("seedline")
        .collection::<mongodb::bson::Document>("orders");
    let consumer: Arc<StreamConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &args.kafka_brokers)
            .set("group.id", "seedline")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", "6000")
            .set("enable.auto.commit", "true")
            .create()
            .context("kafka consumer")?,
    );
    consumer.subscribe(&[&args.topic])?;
    let boot = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let app = Arc::new(App {
        redis,
        producer,
        topic: args.topic.clone(),
        ready: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        boot,
    });
    tokio::spawn(consume(consumer.clone(), orders, args.max_notional));
    {
        let (app, consumer) = (app.clone(), consumer.clone());
        tokio::spawn(async move {
            while !consumer.assignment().is_ok_and(|a| a.count() > 0) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            app.ready.store(true, Ordering::Relaxed);
            eprintln!("seedline: consumer assigned, ready");
        });
    }
    let listener = TcpListener::bind(args.bind).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| app.clone().handle(req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn crate_checks(args: &Args) -> Result<()> {
    if !args.bind.ip().is_loopback() {
        bail!("refusing to bind a non-loopback address {}", args.bind);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    rt.enable_all().build()?.block_on(serve(args))
}
