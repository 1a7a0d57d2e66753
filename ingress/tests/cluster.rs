//! Cluster mode (docs/scale-out.md, issue 13): three `oms serve --cluster` processes on one
//! real Kafka-protocol broker (tansu), with Redis and a MongoDB-wire server, on 127.0.0.1.
//!
//! One test, in phases, because starting three nodes and their group costs seconds:
//! 1. orders for 6 symbols sent round-robin to the three nodes: every one acknowledged once
//!    (a retry of every key replays the same order), and every node's replica has the same
//!    per-partition state hash at the same offsets;
//! 2. kill -9 of one node under load: its partitions are led again within 15 s, no
//!    acknowledged order is lost or doubled, retries of in-flight keys get the original answer;
//!    a fresh node that replays the whole log (the single-node recovery path) reaches the same
//!    per-partition state hashes;
//! 3. restart from a snapshot: a node stopped with SIGTERM writes a snapshot at the offsets
//!    it applied, starts from it (replaying only the records after it) and reaches the same
//!    per-partition state hashes;
//! 4. margin: one account's orders on symbols of different partitions, sent to different
//!    nodes at once, cannot reserve more than its equity.

use crate::sys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sys::*;

const SYMBOLS: [&str; 6] = ["S1/USD", "S2/USD", "S3/USD", "S4/USD", "S5/USD", "S6/USD"];

fn instruments_toml() -> String {
    let mut t = String::from("account_currency = \"USD\"\n");
    for s in SYMBOLS {
        t.push_str(&format!(
            "\n[[instrument]]\nsymbol = \"{s}\"\ntick_size = \"0.01\"\nlot_size = \"0.01\"\n\
             min_qty = \"0.01\"\nmax_qty = \"100000\"\nmin_notional = \"1\"\n\
             max_notional = \"5000000\"\nprice_band_pct = \"5\"\ninitial_margin_pct = \"10\"\n\
             max_position = \"1000000\"\nreference_price = \"100.00\"\n"
        ));
    }
    t
}

async fn cluster_state(c: &reqwest::Client, base: &str) -> Option<Value> {
    let r = c
        .get(format!("{base}/api/cluster"))
        .header("X-Account-Id", "ops")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Waits until every partition has a leader among `nodes` that reports itself ready.
async fn wait_led(c: &reqwest::Client, nodes: &[&Node], limit: Duration) -> Duration {
    let start = Instant::now();
    let ids: HashSet<String> = nodes.iter().map(|n| n.spec.node_id.to_string()).collect();
    loop {
        let mut ok = true;
        let mut led = HashSet::new();
        for n in nodes {
            match cluster_state(c, &n.base).await {
                Some(s) if s["ready"] == true => {
                    for p in s["partitions"].as_array().unwrap() {
                        if p["ledHere"] == true {
                            led.insert(p["partition"].as_u64().unwrap());
                        }
                        if !p["leader"].as_str().is_some_and(|l| ids.contains(l)) {
                            ok = false;
                        }
                    }
                }
                _ => ok = false,
            }
        }
        if ok && led.len() == 6 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "partitions not all led by {ids:?} within {limit:?}: {:?}",
            cluster_state(c, &nodes[0].base).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until all `nodes` report the same applied offsets, summing to at least `min_total`
/// records (replicas apply asynchronously to the acknowledgements), then returns their states.
async fn wait_converged(c: &reqwest::Client, nodes: &[&Node], min_total: u64) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut states = Vec::new();
        for n in nodes {
            if let Some(s) = cluster_state(c, &n.base).await {
                states.push(s);
            }
        }
        let offsets = |s: &Value| -> Vec<u64> {
            s["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["appliedOffset"].as_u64().unwrap())
                .collect()
        };
        if states.len() == nodes.len()
            && states.iter().all(|s| offsets(s) == offsets(&states[0]))
            && offsets(&states[0]).iter().sum::<u64>() >= min_total
        {
            println!("CLUSTER replicas converged after {:?}", start.elapsed());
            return states;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replicas did not converge: {:?}",
            states.iter().map(offsets).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hashes(s: &Value) -> Vec<(u64, String)> {
    s["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["appliedOffset"].as_u64().unwrap(),
                p["stateHash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Posts `o` to the nodes starting at `first`, moving on while a node is unreachable, answers
/// 503 or says the key is still in use (a client's retry with the same key), until a final
/// answer.
async fn place_retrying(c: &reqwest::Client, bases: &[String], first: usize, o: &OrderReq) -> Resp {
    let t0 = Instant::now();
    let mut i = first;
    loop {
        let base = &bases[i % bases.len()];
        let sent = c
            .post(format!("{base}/api/orders"))
            .header("X-Idempotency-Key", &o.key)
            .header("X-Account-Id", &o.account)
            .json(&o.body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status().as_u16();
            let replayed = r
                .headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true");
            let text = r.text().await.unwrap_or_default();
            // 409 IDEMPOTENCY_KEY_IN_USE: a dead node's claim in Redis, until it expires.
            let in_use = status == 409 && text.contains("IDEMPOTENCY_KEY_IN_USE");
            if status != 503 && !in_use {
                return Resp {
                    status,
                    json: serde_json::from_str(&text).unwrap_or(Value::Null),
                    text,
                    replayed,
                    retry_after: None,
                    sent: Duration::ZERO,
                    done: t0.elapsed(),
                };
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "key {} never answered",
            o.key
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Orders of 12 accounts over the 6 symbols, crossing at 100.00. Accounts and keys carry a
/// per-run tag: Redis keeps idempotency records across runs.
fn load(tag: &str, n: usize) -> Vec<OrderReq> {
    (0..n)
        .map(|i| {
            let side = if i % 2 == 0 { "BUY" } else { "SELL" };
            OrderReq {
                account: format!("{tag}-acct-{}", i % 12),
                key: format!("{tag}-k-{i}"),
                body: json!({
                    "symbol": SYMBOLS[i % 6], "side": side, "orderType": "LIMIT",
                    "timeInForce": "GTC", "quantity": "1", "price": "100.00"
                }),
            }
        })
        .collect()
}

async fn send_all(c: &reqwest::Client, bases: &[String], orders: &[OrderReq]) -> Vec<Resp> {
    use futures::StreamExt as _;
    futures::stream::iter(
        orders
            .iter()
            .enumerate()
            .map(|(i, o)| place_retrying(c, bases, i, o)),
    )
    .buffered(12)
    .collect()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_log_survive_a_kill_and_keep_margin() {
    let Some(svc) = services() else { return };
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let instruments = dir.path().join("instruments.toml");
    std::fs::write(&instruments, instruments_toml()).unwrap();
    let mut spec = NodeSpec::new(&svc, "cluster");
    spec.extra = vec![
        "--cluster".into(),
        "--kafka-partitions".into(),
        "6".into(),
        "--instruments".into(),
        instruments.display().to_string(),
        "--default-equity".into(),
        "100000".into(),
        "--cluster-session-timeout-ms".into(),
        "6000".into(),
    ];
    let c = client();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut s = spec.clone();
        s.node_id = id;
        let data = dir.path().join(format!("n{id}"));
        std::fs::create_dir_all(&data).unwrap();
        nodes.push(Node::start(&s, &data, dir.path()).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    let settle = wait_led(&c, &refs, Duration::from_secs(60)).await;
    println!("CLUSTER 3 nodes lead all 6 partitions {settle:?} after the third was ready");
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    // --- 1. round-robin flow: each key acknowledged once, replicas agree -------------------
    let run = uniq("cl");
    let phase1 = load(&format!("{run}-p1"), 600);
    let answers = send_all(&c, &bases, &phase1).await;
    let mut ids: HashMap<String, String> = HashMap::new();
    for (o, r) in phase1.iter().zip(&answers) {
        assert_eq!(r.status, 201, "{} → {} {}", o.key, r.status, r.text);
        ids.insert(
            o.key.clone(),
            r.json["orderId"].as_str().unwrap().to_owned(),
        );
    }
    for (i, o) in phase1.iter().enumerate().step_by(7) {
        let r = place_retrying(&c, &bases, i + 1, o).await;
        assert!(
            r.replayed,
            "retry of {} was not a replay: {}",
            o.key, r.text
        );
        assert_eq!(r.json["orderId"].as_str(), Some(ids[&o.key].as_str()));
    }
    let states = wait_converged(&c, &refs, 600).await;
    for s in &states[1..] {
        assert_eq!(
            hashes(s),
            hashes(&states[0]),
            "replicas differ after phase 1"
        );
    }
    let traded: u64 = states[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["appliedOffset"].as_u64().unwrap())
        .sum();
    assert!(traded >= 600, "only {traded} records applied");

    // --- 2. kill -9 one node under load -----------------------------------------------------
    let phase2 = load(&format!("{run}-p2"), 600);
    let (first, rest) = phase2.split_at(150);
    let a = send_all(&c, &bases, first).await;
    let killed_at = Instant::now();
    nodes[2].kill9();
    let survivors: Vec<String> = bases[..2].to_vec();
    let b = {
        // The load goes on at all three addresses (clients do not know a node died): the
        // dead one refuses, and the client retries the same key elsewhere.
        let load = send_all(&c, &bases, rest);
        let refs2: Vec<&Node> = nodes[..2].iter().collect();
        let (b, took) = tokio::join!(load, wait_led(&c, &refs2, Duration::from_secs(15)));
        println!(
            "CLUSTER killed node 3: all partitions led again after {:?} (wait_led {took:?})",
            killed_at.elapsed()
        );
        b
    };
    for (o, r) in phase2.iter().zip(a.iter().chain(&b)) {
        assert_eq!(r.status, 201, "{} → {} {}", o.key, r.status, r.text);
        ids.insert(
            o.key.clone(),
            r.json["orderId"].as_str().unwrap().to_owned(),
        );
    }
    // Every key, retried on a survivor, replays its original order: none lost, none doubled.
    let all: Vec<&OrderReq> = phase1.iter().chain(&phase2).collect();
    for (i, o) in all.iter().enumerate() {
        let r = place_retrying(&c, &survivors, i, o).await;
        assert!(r.replayed, "retry of {} after the kill: {}", o.key, r.text);
        assert_eq!(
            r.json["orderId"].as_str(),
            Some(ids[&o.key].as_str()),
            "retry of {} got another order",
            o.key
        );
    }
    let mut per_account: BTreeMap<String, usize> = BTreeMap::new();
    for o in &all {
        *per_account.entry(o.account.clone()).or_default() += 1;
    }
    for (acct, want) in &per_account {
        let got = list_orders(&c, &survivors[0], acct).await.len();
        assert_eq!(got, *want, "{acct}: {got} orders for {want} keys");
    }
    // Events across the kill: every acknowledged order has an ORDER_UPDATE on `order-updates`
    // (the killed leader's successor re-emits what was not delivered: at-least-once).
    let want: HashSet<&str> = ids.values().map(String::as_str).collect();
    let topic = spec.topic("order-updates");
    let start = Instant::now();
    let missing = loop {
        let seen: HashSet<String> = read_topic(&svc.brokers, &topic)
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.payload).ok())
            .filter_map(|v| v["order"]["orderId"].as_str().map(str::to_owned))
            .collect();
        let missing = want.iter().filter(|id| !seen.contains(**id)).count();
        if missing == 0 || start.elapsed() > Duration::from_secs(10) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "CLUSTER events: {missing} of {} acknowledged orders without an ORDER_UPDATE on {topic}",
        want.len()
    );
    assert_eq!(missing, 0, "events lost across the kill");

    let refs2: Vec<&Node> = nodes[..2].iter().collect();
    let states = wait_converged(&c, &refs2, 1200).await;
    for n in &refs2 {
        let text = metrics(&c, &n.base).await;
        println!(
            "CLUSTER node {}: {:?} records read twice by the replica (skipped)",
            n.spec.node_id,
            metric(&text, "oms_cluster_replica_rereads_total")
        );
    }
    assert_eq!(hashes(&states[1]), hashes(&states[0]), "survivors differ");

    // A fresh node replays the whole log (single-node recovery, merged order) and must
    // reach the same per-partition state.
    let mut s4 = spec.clone();
    s4.node_id = 4;
    let d4 = dir.path().join("n4");
    std::fs::create_dir_all(&d4).unwrap();
    nodes.push(Node::start(&s4, &d4, dir.path()).await);
    let refs3: Vec<&Node> = vec![&nodes[0], &nodes[1], &nodes[3]];
    let states = wait_converged(&c, &refs3, 1200).await;
    for s in &states[1..] {
        assert_eq!(hashes(s), hashes(&states[0]), "the replayed node differs");
    }

    // --- 3. restart from a snapshot --------------------------------------------------------
    assert!(
        nodes[1].terminate(Duration::from_secs(20)),
        "node 2 did not stop on SIGTERM"
    );
    let d2 = dir.path().join("n2");
    let snaps = d2
        .join("snapshots")
        .join(format!("cluster-{}", spec.topic("orders")));
    let files = std::fs::read_dir(&snaps)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    assert!(files >= 1, "no snapshot in {}", snaps.display());
    let mut s2 = spec.clone();
    s2.node_id = 2;
    let t0 = Instant::now();
    nodes[1] = Node::start(&s2, &d2, dir.path()).await;
    let replayed = metric(
        &metrics(&c, &nodes[1].base).await,
        "oms_replayed_commands_total",
    );
    println!(
        "CLUSTER node 2 restarted from its snapshot: ready after {:?}, {replayed:?} records replayed after it",
        t0.elapsed()
    );
    assert!(
        replayed.is_some_and(|n| n < 100.0),
        "the restart replayed {replayed:?} records: it did not start from the snapshot"
    );
    let refs3: Vec<&Node> = vec![&nodes[0], &nodes[1], &nodes[3]];
    let states = wait_converged(&c, &refs3, 1200).await;
    for s in &states[1..] {
        assert_eq!(
            hashes(s),
            hashes(&states[0]),
            "the node restarted from its snapshot differs"
        );
    }

    // --- 4. margin across partitions and nodes ---------------------------------------------
    wait_led(&c, &refs3, Duration::from_secs(30)).await;
    let bases3: Vec<String> = refs3.iter().map(|n| n.base.clone()).collect();
    let parts = &states[0]["partitions"];
    let mut picked: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for p in parts.as_array().unwrap() {
        if let Some(sym) = p["symbols"].as_array().and_then(|v| v.first())
            && seen.insert(p["partition"].as_u64())
            && picked.len() < 3
        {
            picked.push(sym.as_str().unwrap());
        }
    }
    assert_eq!(picked.len(), 3, "need symbols in three partitions: {parts}");
    // Each reserves 40 % of the 100 000 equity (notional 400 000 at 10 % margin).
    let orders: Vec<OrderReq> = picked
        .iter()
        .enumerate()
        .map(|(i, s)| OrderReq {
            account: format!("{run}-margin"),
            key: format!("{run}-margin-{i}"),
            body: json!({"symbol": s, "side": "BUY", "orderType": "LIMIT",
                "timeInForce": "GTC", "quantity": "4166.66", "price": "96.00"}),
        })
        .collect();
    let answers = futures::future::join_all(
        orders
            .iter()
            .enumerate()
            .map(|(i, o)| place_retrying(&c, &bases3, i, o)),
    )
    .await;
    let accepted = answers.iter().filter(|r| r.status == 201).count();
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 422).collect();
    assert_eq!(
        (accepted, refused.len()),
        (2, 1),
        "{:?}",
        answers.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(
        refused[0].json["error"]["code"], "INSUFFICIENT_MARGIN",
        "{}",
        refused[0].text
    );
}
