//! What an operator and a client integrator see: probes, metrics, the OpenAPI document,
//! correlation ids.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn health_and_ready() {
    let s = Server::start().await;
    let h = s.get("/health", None).await.expect(200, "health");
    assert_eq!(h.json, json!({"status":"ok"}));
    let r = s.get("/ready", None).await.expect(200, "ready");
    assert_eq!(r.json["status"], "ready");
    assert!(
        r.json["checks"].is_object(),
        "ready lists its checks: {}",
        r.text
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_requests() {
    let s = Server::start().await;
    let r = s.get("/metrics", None).await.expect(200, "metrics");
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    for name in [
        "oms_http_requests_total",
        "oms_http_request_duration_seconds",
    ] {
        assert!(r.text.contains(name), "/metrics lacks {name}");
    }
    for line in r
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("oms_"),
            "every metric is named oms_*: {line}"
        );
    }
    let before = s.http_requests_total().await;
    s.place_ok("m-1", &seed_order()).await;
    s.get("/api/symbols", None).await.expect(200, "symbols");
    s.get("/api/nope", None).await.expect(404, "404");
    let after = s.http_requests_total().await;
    assert!(
        after >= before + 3.0,
        "the request counter counts requests: {before} → {after}"
    );
    let m = s.get("/metrics", None).await.text;
    assert!(
        m.lines()
            .any(|l| l.starts_with("oms_http_requests_total") && l.contains("404")),
        "requests are labelled by status"
    );
}

/// The value of `oms_rejections_total{code="…"}` (0 when the series is absent).
fn rejections(metrics: &str, code: &str) -> f64 {
    let series = format!("oms_rejections_total{{code=\"{code}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(f64::NAN))
}

/// One rejection is one count, whichever stage decided it; a replayed stored answer is not a
/// new rejection.
#[tokio::test]
async fn each_rejection_is_counted_once() {
    let s = Server::start().await;
    // Validation (decided in the ring's validate stage).
    s.place("rc-1", &key("v"), &limit("BTC/USD", "BUY", "0", "45000.00"))
        .await
        .expect_error(400, "INVALID_QUANTITY", "zero quantity");
    // Risk (decided in the risk stage, recorded by the processor), then replayed.
    let k = key("r");
    let far = limit("BTC/USD", "BUY", "0.1000", "60000.00");
    s.place("rc-1", &k, &far)
        .await
        .expect_error(422, "PRICE_OUT_OF_BAND", "out of band");
    let replay = s.place("rc-1", &k, &far).await;
    assert_eq!(replay.status, 422, "replayed 422: {}", replay.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    // Same key, other body (decided in the idempotency stage).
    s.place("rc-1", &k, &limit("BTC/USD", "BUY", "0.2000", "60000.00"))
        .await
        .expect_error(422, "IDEMPOTENCY_KEY_REUSED", "key reuse");
    // Decided by the HTTP layer.
    s.get("/api/nope", None).await.expect(404, "unknown path");
    let m = s.get("/metrics", None).await.text;
    for code in [
        "INVALID_QUANTITY",
        "PRICE_OUT_OF_BAND",
        "IDEMPOTENCY_KEY_REUSED",
        "NOT_FOUND",
    ] {
        assert_eq!(
            rejections(&m, code),
            1.0,
            "oms_rejections_total{{code={code:?}}} after one such answer:\n{}",
            m.lines()
                .filter(|l| l.starts_with("oms_rejections_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let s = Server::start().await;
    let r = s.get("/openapi.json", None).await.expect(200, "openapi");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let doc = &r.json;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let on_disk: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    assert_eq!(doc, &on_disk, "the served document is ingress/openapi.json");
    let routes = documented_routes();
    assert!(routes.len() >= 15, "docs/api.md routes parsed: {routes:?}");
    for (method, path) in routes {
        assert!(
            doc["paths"][&path][method.to_ascii_lowercase()].is_object(),
            "openapi.json lacks {method} {path}"
        );
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    for c in [
        "IDEMPOTENCY_KEY_IN_USE",
        "INSUFFICIENT_MARGIN",
        "UNKNOWN_FIELD",
        "LOG_UNAVAILABLE",
    ] {
        assert!(codes.contains(&json!(c)), "ErrorCode enum lacks {c}");
    }
}

#[tokio::test]
async fn correlation_id_is_echoed_or_generated() {
    let s = Server::start().await;
    let r = s
        .send(
            Method::GET,
            "/api/symbols",
            None,
            &[("X-Correlation-Id", "corr-123")],
            None,
        )
        .await
        .expect(200, "symbols");
    assert_eq!(r.header("x-correlation-id"), Some("corr-123"));

    let a = s.get("/health", None).await;
    let b = s.get("/health", None).await;
    let ga = a.header("x-correlation-id").unwrap_or("").to_string();
    let gb = b.header("x-correlation-id").unwrap_or("").to_string();
    assert!(
        !ga.is_empty() && !gb.is_empty(),
        "generated when absent: {:?}",
        a.headers
    );
    assert_ne!(ga, gb, "generated ids differ per request");

    // On errors it is in the header and in the body.
    let e = s
        .send(
            Method::POST,
            "/api/orders",
            Some("c"),
            &[("X-Correlation-Id", "err-corr")],
            Some(&seed_order()),
        )
        .await
        .expect_error(400, "IDEMPOTENCY_KEY_MISSING", "no key");
    assert_eq!(e.json["correlationId"], "err-corr");

    // On orders, too.
    let o = s
        .send(
            Method::POST,
            "/api/orders",
            Some("c"),
            &[
                ("X-Correlation-Id", "order-corr"),
                ("X-Idempotency-Key", "kc"),
            ],
            Some(&seed_order()),
        )
        .await
        .expect(201, "order");
    assert_eq!(o.header("x-correlation-id"), Some("order-corr"));
}

#[tokio::test]
async fn unknown_field_oversized_body_and_routing() {
    let s = Server::start().await;
    s.place(
        "ops",
        &key("ops"),
        &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000","colour":"red"}),
    )
    .await
    .expect_error(400, "UNKNOWN_FIELD", "unknown field");
    let big = vec![b' '; 65 * 1024 + 1];
    s.send_raw(
        Method::POST,
        "/api/orders",
        Some("ops"),
        &[("X-Idempotency-Key", "big")],
        "application/json",
        big,
    )
    .await
    .expect_error(413, "PAYLOAD_TOO_LARGE", "body over 64 KiB");
    s.get("/does/not/exist", None)
        .await
        .expect_error(404, "NOT_FOUND", "404");
    let r = s
        .send(Method::DELETE, "/health", None, &[], None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED", "405");
    assert!(r.header("allow").is_some(), "405 carries Allow");
}

/// Refused requests are logged at the default level (successes only at debug, to keep the
/// hot path quiet), as JSON lines carrying the correlation id.
#[tokio::test]
async fn request_logs_carry_the_correlation_id() {
    let s = Server::start().await;
    s.send(
        Method::POST,
        "/api/orders",
        Some("logs"),
        &[("X-Correlation-Id", "trace-me-4711")],
        Some(&seed_order()),
    )
    .await
    .expect_error(400, "IDEMPOTENCY_KEY_MISSING", "no key");
    let deadline = std::time::Instant::now() + EVENTUALLY;
    while !s.log_text().contains("trace-me-4711") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = s.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("trace-me-4711"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the refused request is logged with its correlation id:\n{log}"
    );
    for l in &lines {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("logs are JSON lines by default ({e}): {l}"));
        assert!(l.contains("400"), "the line has the status: {v}");
    }
}

#[test]
fn serve_help_prints_every_default_and_env_var() {
    let out = std::process::Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .expect("run oms serve --help");
    assert!(out.status.success(), "oms serve --help exits 0");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--bind",
        "127.0.0.1:8080",
        "OMS_BIND",
        "--data-dir",
        "OMS_DATA_DIR",
        "--fsync",
        "--ack-timeout-ms",
        "--max-open-orders",
        "--instruments",
        "--auth",
    ] {
        assert!(
            help.contains(needle),
            "`oms serve --help` lacks {needle}:\n{help}"
        );
    }
    assert!(
        !help.contains("test-stall-log-ms"),
        "the test hook stays hidden from --help"
    );
}

#[tokio::test]
async fn limits_come_from_a_config_file_or_the_environment() {
    let cfg = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    std::fs::write(cfg.path(), "max_open_orders = 1\n").unwrap();
    let path = cfg.path().to_str().unwrap().to_string();
    let from_file = Server::start_with(&["--config", &path]).await;
    let from_env = Server::start_with_env(&[], &[("OMS_MAX_OPEN_ORDERS", "1")]).await;
    for s in [&from_file, &from_env] {
        s.place_ok("cfg", &limit("BTC/USD", "BUY", "0.1", "44000.00"))
            .await;
        s.place(
            "cfg",
            &key("cfg"),
            &limit("BTC/USD", "BUY", "0.1", "44001.00"),
        )
        .await
        .expect_error(422, "TOO_MANY_OPEN_ORDERS", "a limit of one open order");
    }
    // Flags win over the file.
    let both = Server::start_with(&["--config", &path, "--max-open-orders", "5"]).await;
    both.place_ok("cfg", &limit("BTC/USD", "BUY", "0.1", "44000.00"))
        .await;
    both.place_ok("cfg", &limit("BTC/USD", "BUY", "0.1", "44001.00"))
        .await;
}

#[tokio::test]
async fn dashboard_is_served_at_the_root_with_cache_headers() {
    let s = Server::start().await;
    let index = s.get("/", None).await.expect(200, "GET /");
    assert!(
        index
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        index.headers
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(index.text.contains("<div id=\"root\">"), "{}", index.text);
    let etag = index.header("etag").expect("ETag").to_owned();
    let again = s
        .send(Method::GET, "/", None, &[("If-None-Match", &etag)], None)
        .await;
    assert_eq!(again.status, 304, "a matching ETag revalidates");
    let asset = |ext: &str| {
        index
            .text
            .split('"')
            .find(|p| p.starts_with("/assets/") && p.ends_with(ext))
            .unwrap_or_else(|| panic!("index names a {ext} asset: {}", index.text))
            .to_owned()
    };
    for (path, ct) in [
        (asset(".js"), "text/javascript"),
        (asset(".css"), "text/css"),
    ] {
        let r = s.get(&path, None).await.expect(200, &path);
        assert!(
            r.header("content-type").unwrap_or("").starts_with(ct),
            "{path}: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert!(r.header("content-encoding").is_none());
        let gz = s
            .send(
                Method::GET,
                &path,
                None,
                &[("Accept-Encoding", "gzip")],
                None,
            )
            .await
            .expect(200, "gzip");
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    }
    s.get("/assets/nope.js", None)
        .await
        .expect_error(404, "NOT_FOUND", "unknown asset");
    // The API is untouched by the page's routes.
    s.get("/api/symbols", None).await.expect(200, "symbols");
}
