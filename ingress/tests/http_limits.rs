//! Limits at the edge, against the real binary: per-account rate limits (429 with
//! `Retry-After` and `X-RateLimit-*`), the header-read timeout (slowloris), the idle
//! keep-alive timeout, the connection cap (excess refused, fresh clients still served),
//! `Connection: close` after a 413, and JSON error bodies on the answers hyper writes itself
//! (400, 431).
//!
//! The 5,000-connections-at-`ulimit -n 4096` scenario of the issue is the same mechanism at a
//! bigger scale; it is a manual check (docs/design.md "Limits"), here the cap is small.

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::Method;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

#[tokio::test]
async fn orders_over_the_rate_are_429_with_retry_after() {
    // 30 per 10 minutes: the bucket holds 30 and refills one every 20 s, so the 33 orders
    // below meet exactly 30 tokens however slowly this machine sends them.
    let s = Server::start_with(&["--rate-limit-orders", "30/10m"]).await;
    let sends = (0..33).map(|i| {
        let s = &s;
        async move {
            s.place("rl-acct", &key(&format!("rl{i}")), &seed_order())
                .await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!((created, limited.len()), (30, 3), "30 pass, 3 are refused");
    for r in &limited {
        let r = (*r)
            .clone()
            .expect_error(429, "RATE_LIMITED", "over the rate");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "Retry-After {retry}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("30"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert!(r.header("x-ratelimit-reset").is_some());
    }
    for r in answers.iter().filter(|r| r.status == 201) {
        assert_eq!(
            r.header("x-ratelimit-limit"),
            Some("30"),
            "headers on every answer"
        );
        assert!(r.header("x-ratelimit-remaining").is_some());
    }
    // Another account has its own bucket; reads are a different bucket (off here).
    s.place("rl-other", &key("rl-o"), &seed_order())
        .await
        .expect(201, "another account");
    s.get("/api/account", Some("rl-acct"))
        .await
        .expect(200, "queries are not limited by the orders bucket");
}

#[tokio::test]
async fn a_30_per_second_limit_refuses_a_burst() {
    // The literal acceptance case: 30/s and 33 orders sent at once. The bucket refills one
    // token every 33 ms, so on a slow machine a few of the 33 may find a new token: at least
    // one is refused and none is lost.
    let s = Server::start_with(&["--rate-limit-orders", "30/s"]).await;
    let sends = (0..33).map(|i| {
        let s = &s;
        async move {
            s.place("burst", &key(&format!("b{i}")), &seed_order())
                .await
        }
    });
    let answers = futures::future::join_all(sends).await;
    let limited = answers.iter().filter(|r| r.status == 429).count();
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created + limited, 33, "only 201 or 429");
    assert!((1..=3).contains(&limited), "{limited} refused");
}

#[tokio::test]
async fn queries_have_their_own_bucket() {
    let s = Server::start_with(&["--rate-limit-queries", "5/10m"]).await;
    for i in 0..5 {
        s.get("/api/positions", Some("q-acct"))
            .await
            .expect(200, &format!("query {i}"));
    }
    let r =
        s.get("/api/account", Some("q-acct"))
            .await
            .expect_error(429, "RATE_LIMITED", "6th query");
    assert!(r.header("retry-after").is_some());
    s.place("q-acct", &key("q"), &seed_order())
        .await
        .expect(201, "orders are not limited by the queries bucket");
    s.get("/api/symbols", None)
        .await
        .expect(200, "public market data is not limited per account");
}

async fn connect(s: &Server) -> TcpStream {
    TcpStream::connect(addr_of(s)).await.expect("connect")
}

#[tokio::test]
async fn a_slowloris_header_is_cut_by_the_header_timeout() {
    let s = Server::start_with(&["--header-read-timeout-ms", "1500"]).await;
    let mut c = connect(&s).await;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaa")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_close(&mut c, Duration::from_secs(10)).await;
    assert!(closed, "a half-sent header must be cut");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "cut by the timeout, not at once ({:?})",
        started.elapsed()
    );
    // A connection that never sends anything is cut the same way.
    let mut quiet = connect(&s).await;
    let (_, closed) = read_until_close(&mut quiet, Duration::from_secs(10)).await;
    assert!(closed, "a silent new connection must be cut");
    s.get("/health", None).await.expect(200, "server fine");
}

#[tokio::test]
async fn the_default_header_timeout_is_10_seconds() {
    let s = Server::start().await;
    let mut c = connect(&s).await;
    c.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let (_, early) = read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(!early, "still open well before 10 s");
    let (_, closed) = read_until_close(&mut c, Duration::from_secs(15)).await;
    assert!(closed, "cut after the 10 s default");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "cut after {took:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = Server::start_with(&["--idle-timeout-ms", "1000"]).await;
    let mut c = connect(&s).await;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_close(&mut c, Duration::from_secs(10)).await;
    let (status, head, _) = parse_raw(&got);
    assert_eq!(status, 200, "{head}");
    assert!(!head.contains("connection: close"), "kept alive at first");
    assert!(closed, "closed after being idle");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_fresh_clients_still_served() {
    let s = Server::start_with(&[
        "--max-connections",
        "50",
        "--header-read-timeout-ms",
        "60000",
    ])
    .await;
    // 60 idle sockets: the cap is 50 (the test client's own pooled connection is one).
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(connect(&s).await);
    }
    let reads = idle
        .iter_mut()
        .map(|c| read_until_close(c, Duration::from_secs(2)));
    let mut refused = 0;
    for (got, closed) in futures::future::join_all(reads).await {
        if closed {
            let (status, _, body) = parse_raw(&got);
            if status != 0 {
                assert_eq!(status, 503);
                assert_eq!(body["error"]["code"], "OVERLOADED");
            }
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "at least the excess is refused, got {refused}"
    );
    // Once they have idled, a fresh client evicts one of them and is served promptly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = reqwest::Client::builder().build().unwrap();
    let started = Instant::now();
    let r = fresh
        .post(s.url("/api/orders"))
        .header("X-Account-Id", "fresh")
        .header("X-Idempotency-Key", key("fresh"))
        .json(&seed_order())
        .send()
        .await
        .expect("a fresh client connects");
    let took = started.elapsed();
    assert_eq!(r.status().as_u16(), 201);
    eprintln!("fresh client served in {took:?} with 60 idle sockets open");
    assert!(
        took < Duration::from_secs(3),
        "fresh client waited {took:?}"
    );
}

/// Raises this process's own open-file limit to `want` (the test holds thousands of sockets).
fn raise_own_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one `rlimit` through a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_cur.max(want.min(lim.rlim_max));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_under_ulimit_4096_leave_room_for_a_fresh_client() {
    let have = raise_own_nofile(6000);
    assert!(
        have >= 5200,
        "this test opens 5,000 sockets: the machine's hard open-file limit is {have}"
    );
    // Default --max-connections (10,000) is clamped below `ulimit -n` minus a reserve.
    let s = Server::start_with_nofile(&["--header-read-timeout-ms", "60000"], 4096).await;
    assert!(
        s.log_text().contains("lowered to fit the open-file limit"),
        "the cap follows ulimit -n: {}",
        s.log_tail()
    );
    let addr = addr_of(&s);
    let mut idle = Vec::with_capacity(5000);
    let mut connect_errors = 0;
    for _ in 0..10 {
        let conns = (0..500).map(|_| TcpStream::connect(addr.clone()));
        for c in futures::future::join_all(conns).await {
            match c {
                Ok(c) => idle.push(c),
                Err(_) => connect_errors += 1,
            }
        }
    }
    // The excess is answered 503 and closed at once; the rest stay open and idle.
    let reads = idle
        .iter_mut()
        .map(|c| read_until_close(c, Duration::from_secs(3)));
    let mut refused = 0;
    for (got, closed) in futures::future::join_all(reads).await {
        if closed {
            let (status, _, body) = parse_raw(&got);
            if status != 0 {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (503, Some("OVERLOADED"))
                );
            }
            refused += 1;
        }
    }
    let open = idle.len() - refused;
    // Every connection the server accepts ends up held, refused, or held and then displaced
    // by a newer one; wait until it has dealt with all it can see (at most 10 s).
    let mut m = String::new();
    let gauge = |m: &str, name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(-1.0)
    };
    let mut last = -1.0;
    for _ in 0..20 {
        m = s.get("/metrics", None).await.expect(200, "metrics").text;
        let seen = gauge(&m, "oms_http_connections")
            + gauge(&m, "oms_http_connections_refused_total")
            + gauge(&m, "oms_http_connections_evicted_total");
        if seen >= 5000.0 || seen == last {
            break;
        }
        last = seen;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gauge = |name: &str| gauge(&m, name);
    let (held, refused_total, evicted) = (
        gauge("oms_http_connections"),
        gauge("oms_http_connections_refused_total"),
        gauge("oms_http_connections_evicted_total"),
    );
    eprintln!(
        "5,000 connections, ulimit -n 4096: client sees {open} open / {refused} closed \
         ({connect_errors} connect errors); server holds {held}, refused {refused_total}, \
         evicted {evicted}"
    );
    let cap = f64::from(4096 - 256);
    assert!(held <= cap, "never more than the cap: {held} held");
    // Connections the kernel completed but could not queue (its accept backlog is bounded)
    // reach the server only as the kernel retries them, so not all 5,000 are seen in this
    // window; those that are beyond the cap are refused or displace idle ones.
    assert!(
        refused_total + evicted > 0.0 && held + refused_total + evicted > cap,
        "the excess is refused or displaces idle ones: refused {refused_total}, evicted {evicted}"
    );
    assert!(
        !s.log_text().contains("accept failed"),
        "the listener never hit EMFILE"
    );
    // Every held connection has now idled over a second: a fresh client evicts the oldest
    // and gets its 201 within a second.
    let fresh = reqwest::Client::new();
    let started = Instant::now();
    let r = fresh
        .post(s.url("/api/orders"))
        .header("X-Account-Id", "fresh")
        .header("X-Idempotency-Key", key("fresh5k"))
        .json(&seed_order())
        .send()
        .await
        .expect("a fresh client connects");
    let took = started.elapsed();
    assert_eq!(r.status().as_u16(), 201);
    eprintln!("fresh client: 201 in {took:?} with {open} idle connections held");
    assert!(
        took < Duration::from_secs(1),
        "fresh client waited {took:?}"
    );
}

#[tokio::test]
async fn a_413_closes_the_connection() {
    let s = Server::start().await;
    let mut c = connect(&s).await;
    // Declares 1 MiB, sends a little: refused before reading, and the rest must never be
    // parsed as a request.
    c.write_all(
        b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          X-Idempotency-Key: k413\r\nContent-Length: 1048576\r\n\r\n{\"symbol\":",
    )
    .await
    .unwrap();
    let (got, closed) = read_until_close(&mut c, Duration::from_secs(10)).await;
    let (status, head, body) = parse_raw(&got);
    assert_eq!(status, 413, "{head}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed, "the server closes after a 413");
    // Chunked bodies over the limit are cut while reading, with the same answer.
    let mut c = connect(&s).await;
    let mut req = b"POST /api/orders HTTP/1.1\r\nHost: x\r\nX-Idempotency-Key: k413b\r\n\
                    Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..20 {
        req.extend_from_slice(b"1000\r\n");
        req.extend(std::iter::repeat_n(b' ', 4096));
        req.extend_from_slice(b"\r\n");
    }
    let _ = c.write_all(&req).await;
    let (got, closed) = read_until_close(&mut c, Duration::from_secs(10)).await;
    let (status, head, _) = parse_raw(&got);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed);
}

#[tokio::test]
async fn hyper_level_errors_carry_the_json_error_body() {
    let s = Server::start().await;
    // 431: a head over the 64 KiB limit.
    let mut c = connect(&s).await;
    let big = "a".repeat(70 * 1024);
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = c.write_all(req.as_bytes()).await;
    let (got, _) = read_until_close(&mut c, Duration::from_secs(10)).await;
    let (status, head, body) = parse_raw(&got);
    assert_eq!(status, 431, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE", "{body}");
    assert!(body["correlationId"].is_string());
    // 400: not HTTP at all.
    let mut c = connect(&s).await;
    c.write_all(b"HELLO THERE\r\n\r\n").await.unwrap();
    let (got, closed) = read_until_close(&mut c, Duration::from_secs(10)).await;
    let (status, head, body) = parse_raw(&got);
    assert_eq!(status, 400, "{head}");
    assert_eq!(body["error"]["code"], "MALFORMED_REQUEST", "{body}");
    assert!(closed);
    // Our own answers are untouched.
    let r = s
        .send(Method::GET, "/nope", None, &[], None)
        .await
        .expect_error(404, "NOT_FOUND", "unknown route");
    assert!(r.header("x-correlation-id").is_some());
}
