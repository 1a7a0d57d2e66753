//! Snapshots at start (issue 11): restart from snapshot + log tail equals a full replay,
//! damaged snapshots fall back to older ones, and the running binary snapshots, stops on
//! SIGTERM quickly and loses nothing acknowledged.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use oms_core::command::{CancelOrder, Command, PlaceOrder, RiskDecision};
use oms_core::ports::{Checkpoint, IdemKey, OrderLog, StoredResponse};
use oms_core::{
    AccountId, Engine, EngineConfig, IdempotencyKey, InstrumentTable, OrderId, OrderRequest,
    SymbolId, validate,
};
use oms_ingress::metrics::Metrics;
use oms_ingress::snapshots::{AnswersAt, Recovery, restore};
use oms_journal::{AnswerStore, Journal, JournalConfig, SnapshotImage, SnapshotStore};
use serde_json::Value;

/// A deterministic mix of crossing limits, market orders and cancels.
fn commands(table: &InstrumentTable, n: u64) -> Vec<Command> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i % 7 == 6 {
            out.push(Command::Cancel(CancelOrder {
                order_id: OrderId(u128::from(i - 3)),
                account: AccountId::new(&format!("acct{}", (i - 3) % 3)).unwrap(),
                symbol: SymbolId(0),
                ts: 1_000_000 * (i + 1),
                correlation_id: None,
            }));
            continue;
        }
        let price = format!("{}", 44_995 + x % 11);
        let side = if x.is_multiple_of(2) { "BUY" } else { "SELL" };
        let order = validate(
            table,
            &OrderRequest {
                symbol: "BTC/USD",
                side,
                quantity: "0.01",
                price: (!x.is_multiple_of(5)).then_some(price.as_str()),
                ..Default::default()
            },
        )
        .unwrap();
        out.push(Command::Place(PlaceOrder {
            order_id: OrderId(u128::from(i)),
            account: AccountId::new(&format!("acct{}", i % 3)).unwrap(),
            order,
            ts: 1_000_000 * (i + 1),
            idempotency_key: Some(IdempotencyKey::new(&format!("k{i}")).unwrap()),
            fingerprint: i,
            correlation_id: None,
            risk: RiskDecision::Unchecked,
        }));
    }
    out
}

/// The engine's snapshot image after applying `cmds`.
fn image_after(table: &InstrumentTable, cmds: &[Command], seq: u64) -> SnapshotImage {
    let mut engine = Engine::new(table.clone(), EngineConfig::default());
    let mut ev = Vec::new();
    for c in cmds {
        engine.apply(c, &mut ev);
    }
    let mut checkpoint = Checkpoint::start();
    checkpoint.set(0, cmds.len() as u64);
    SnapshotImage {
        seq,
        applied: cmds.len() as u64,
        state_hash: engine.state_hash(),
        checkpoint,
        engine: engine.snapshot(),
    }
}

/// Stores the answers of the keyed places in `cmds` as the completer does while running
/// (before a snapshot covering them is written).
fn store_answers(dir: &std::path::Path, table: &InstrumentTable, cmds: &[Command]) {
    let (mut store, _) =
        AnswerStore::open(dir, 86_400_000, 0, &mut |_| {}, &mut |_, _, _, _| {}).unwrap();
    for c in cmds {
        if let Command::Place(p) = c {
            let (status, body) = oms_wire::place_ack(table, p, "");
            let key = IdemKey {
                account: p.account,
                key: p.idempotency_key.unwrap(),
            };
            store
                .append(
                    &key,
                    p.fingerprint,
                    p.ts / 1_000_000,
                    &StoredResponse { status, body },
                )
                .unwrap();
        }
    }
    store.sync().unwrap();
}

fn answers_at(dir: &std::path::Path) -> AnswersAt<'_> {
    AnswersAt { dir, now_ms: 1_000 }
}

fn full_replay_hash(table: &InstrumentTable, cmds: &[Command]) -> u64 {
    let mut engine = Engine::new(table.clone(), EngineConfig::default());
    let mut ev = Vec::new();
    cmds.iter().for_each(|c| engine.apply(c, &mut ev));
    engine.state_hash()
}

struct Fixture {
    _dir: tempfile::TempDir,
    answers: std::path::PathBuf,
    journal: Journal,
    store: SnapshotStore,
    table: InstrumentTable,
    cmds: Vec<Command>,
}

fn fixture(n: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let table = InstrumentTable::demo();
    let cmds = commands(&table, n);
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    for chunk in cmds.chunks(37) {
        journal.append(chunk).unwrap();
    }
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    Fixture {
        answers: dir.path().join("answers"),
        _dir: dir,
        journal,
        store,
        table,
        cmds,
    }
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let mut f = fixture(600);
    let expected = full_replay_hash(&f.table, &f.cmds);
    f.store
        .write(&image_after(&f.table, &f.cmds[..400], 1))
        .unwrap();
    // The answers up to the snapshot are stored; those of the tail were lost with a crash.
    store_answers(&f.answers, &f.table, &f.cmds[..400]);
    let r = restore(
        &mut f.journal,
        &f.table,
        EngineConfig::default(),
        Recovery {
            store: Some(&f.store),
            copies: None,
        },
        answers_at(&f.answers),
        &Metrics::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.snapshot_seq, Some(1), "the snapshot must be used");
    assert_eq!(r.applied, 600);
    assert_eq!(
        r.engine.state_hash(),
        expected,
        "snapshot + tail != full replay"
    );
    assert_eq!(r.checkpoint.next_offset(0), 600);

    // Answers stored before the snapshot and re-rendered from the tail both replay,
    // byte-exact, and the tail's are stored now.
    let (mut idem, answers) = (r.idem, r.answers);
    let places = f
        .cmds
        .iter()
        .filter(|c| matches!(c, Command::Place(_)))
        .count();
    assert_eq!(idem.len(), places);
    for i in [5u64, 450] {
        let key = IdemKey {
            account: AccountId::new(&format!("acct{}", i % 3)).unwrap(),
            key: IdempotencyKey::new(&format!("k{i}")).unwrap(),
        };
        let Command::Place(p) = &f.cmds[i as usize] else {
            panic!("command {i} is a place")
        };
        let (status, body) = oms_wire::place_ack(&f.table, p, "");
        assert_eq!(
            idem.claim(&key, i, 1_000, &answers),
            oms_core::ports::Claim::Replay(StoredResponse { status, body }),
            "answer of k{i}"
        );
        assert_eq!(
            idem.claim(&key, i + 1, 1_000, &answers),
            oms_core::ports::Claim::Mismatch
        );
    }
    drop(answers);
    let (_, again) = oms_ingress::snapshots::open_answers(&f.answers, 1_000).unwrap();
    assert_eq!(again.len(), places, "the re-rendered answers were stored");
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let mut f = fixture(500);
    let expected = full_replay_hash(&f.table, &f.cmds);
    f.store
        .write(&image_after(&f.table, &f.cmds[..200], 1))
        .unwrap();
    f.store
        .write(&image_after(&f.table, &f.cmds[..300], 2))
        .unwrap();
    f.store
        .write(&image_after(&f.table, &f.cmds[..450], 3))
        .unwrap();

    // Newest truncated (a torn copy), second newest with one flipped byte.
    let p3 = f.store.path(3);
    let len = std::fs::metadata(&p3).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p3)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let p2 = f.store.path(2);
    let mut bytes = std::fs::read(&p2).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&p2, bytes).unwrap();

    let metrics = Metrics::default();
    let r = restore(
        &mut f.journal,
        &f.table,
        EngineConfig::default(),
        Recovery {
            store: Some(&f.store),
            copies: None,
        },
        answers_at(&f.answers),
        &metrics,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        r.snapshot_seq,
        Some(1),
        "both damaged snapshots must be skipped"
    );
    assert_eq!(r.engine.state_hash(), expected);
    assert_eq!(metrics.snapshot_errors.get(), 2);
}

#[test]
fn snapshot_beyond_the_log_end_is_not_used() {
    // A snapshot written while the journal's last records were not yet fsynced, then a
    // power loss: its checkpoint is past the log's end, so it cannot describe the log.
    let mut f = fixture(300);
    let expected = full_replay_hash(&f.table, &f.cmds);
    let mut longer = f.cmds.clone();
    longer.extend(commands(&f.table, 320).into_iter().skip(300));
    f.store.write(&image_after(&f.table, &longer, 1)).unwrap();
    let r = restore(
        &mut f.journal,
        &f.table,
        EngineConfig::default(),
        Recovery {
            store: Some(&f.store),
            copies: None,
        },
        answers_at(&f.answers),
        &Metrics::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.snapshot_seq, None, "full replay expected");
    assert_eq!(r.engine.state_hash(), expected);
}

#[test]
fn only_the_newest_snapshots_are_kept_and_temp_files_are_ignored() {
    let f = fixture(100);
    for seq in 1..=5 {
        f.store
            .write(&image_after(&f.table, &f.cmds[..(seq * 10) as usize], seq))
            .unwrap();
    }
    assert_eq!(f.store.list().unwrap(), vec![5, 4, 3]);
    // A crash mid-write leaves only a temp file: never read as a snapshot.
    std::fs::write(
        f.store.dir().join("00000000000000000006.tmp"),
        b"OMSSNAPF torn",
    )
    .unwrap();
    assert_eq!(f.store.list().unwrap(), vec![5, 4, 3]);
    assert_eq!(f.store.read(5).unwrap().applied, 50);
}

// ---- the binary ----

fn recovered_line(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("\"recovered\""))
        .unwrap_or("<no recovered line>")
        .to_owned()
}

fn sigterm(pid: u32) {
    // SAFETY: kill(2) on the pid of a child the test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

fn wait_exit(pid: u32, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < bound {
        // SAFETY: kill(pid, 0) only checks that the process exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if !alive {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Places orders from a few tasks until `stop`; returns (account, key) → 201 body.
async fn load(
    server: &Server,
    tag: &str,
    stop: Arc<AtomicBool>,
    tasks: usize,
) -> HashMap<(String, String), Value> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (base, client, acked, stop) = (
            server.base.clone(),
            server.client.clone(),
            acked.clone(),
            stop.clone(),
        );
        let tag = tag.to_owned();
        handles.push(tokio::spawn(async move {
            let account = format!("snap-{t}");
            for i in 0..2000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let k = format!("{tag}-{t}-{i}");
                let side = if i.is_multiple_of(2) { "BUY" } else { "SELL" };
                let px = format!("{}.00", 44_990 + (i % 20));
                let r = client
                    .post(format!("{base}/api/orders"))
                    .header("x-account-id", &account)
                    .header("x-idempotency-key", &k)
                    .json(&limit("BTC/USD", side, "0.001", &px))
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status().as_u16() == 201 {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    acked.lock().unwrap().insert((account.clone(), k), v);
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_stops_quickly_and_restarts_from_the_snapshot() {
    let mut server = Server::start_with(&["--snapshot-every-commands", "300"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let pid = server.pid();
    let loader = {
        let stop = stop.clone();
        let s = &server;
        load(s, "term", stop, 6)
    };
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sigterm(pid);
        let took = tokio::task::spawn_blocking(move || wait_exit(pid, Duration::from_secs(10)))
            .await
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        took
    };
    let (acked, took) = tokio::join!(loader, killer);
    let took = took.expect("oms did not exit within 10 s of SIGTERM");
    eprintln!(
        "SIGTERM under load: exited after {} ms, {} orders acknowledged",
        took.as_millis(),
        acked.len()
    );
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}; log:\n{}",
        server.log_tail()
    );
    assert!(acked.len() > 20, "the load placed too few orders");
    assert!(
        server.log_text().contains("snapshot written"),
        "no snapshot was written; log:\n{}",
        server.log_tail()
    );

    server.restart().await;
    let line = recovered_line(&server.log_text());
    assert!(
        line.contains("\"tail_commands\":0") && !line.contains("\"snapshot\":\"None\""),
        "a graceful stop must leave a snapshot with no tail after it: {line}"
    );
    for ((account, _key), body) in &acked {
        let id = body["orderId"].as_str().expect("orderId");
        let got = server
            .order(account, id)
            .await
            .expect(200, "acknowledged order after restart");
        assert_eq!(got.json["orderId"], body["orderId"]);
    }
    // Retries of acknowledged requests answer from the answer store after the restart.
    for ((account, key), body) in acked.iter().take(20) {
        let i: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
        let side = if i.is_multiple_of(2) { "BUY" } else { "SELL" };
        let px = format!("{}.00", 44_990 + (i % 20));
        let r = server
            .place(account, key, &limit("BTC/USD", side, "0.001", &px))
            .await
            .expect(201, "retry after restart");
        assert_eq!(&r.json, body, "a retry must get the first answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_while_snapshotting_loses_nothing() {
    // Snapshots every 40 commands: SIGKILLs land before, during and after snapshot writes.
    // Encoded on the snapshot thread (the default on 4+ CPUs; CI has 2, where `auto` encodes
    // on the processor, which the SIGTERM test above exercises): the processor goes on
    // writing the order chunks a capture shares while the image is being encoded.
    let mut server = Server::start_with(&[
        "--snapshot-every-commands",
        "40",
        "--snapshot-encode",
        "background",
    ])
    .await;
    let mut all = HashMap::new();
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let tag = format!("k9r{round}");
        let loader = load(&server, &tag, stop.clone(), 4);
        let killer = async {
            tokio::time::sleep(Duration::from_millis(400 + 170 * round)).await;
            server.signal_kill();
            stop.store(true, Ordering::Relaxed);
        };
        let (acked, ()) = tokio::join!(loader, killer);
        all.extend(acked);
        server.restart().await;
        for ((account, _), body) in &all {
            let id = body["orderId"].as_str().expect("orderId");
            server
                .order(account, id)
                .await
                .expect(200, "an acknowledged order after kill -9");
        }
    }
    assert!(all.len() > 20, "too few orders placed: {}", all.len());
    let log = server.log_text();
    assert!(
        log.contains("snapshot written"),
        "no snapshot was ever written"
    );
}

/// Kafka as the order log (issue 11, "same for the Kafka log"): the node snapshots at the
/// positions its pipelined appends were acknowledged at, and after a kill -9 starts from the
/// newest snapshot plus the topic's tail instead of the whole topic; every order reads back
/// the same as before the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_log_restart_starts_from_a_snapshot_and_its_offsets() {
    use crate::sys;
    let Some(svc) = sys::services() else { return };
    let _heavy = sys::heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sys::NodeSpec::new(&svc, "ksnap");
    spec.redis_url = None;
    spec.mongo_url = None;
    spec.extra = vec!["--snapshot-every-commands".into(), "100".into()];
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut node = sys::Node::start(&spec, &data, dir.path()).await;
    let c = sys::client();
    let accounts = sys::accounts(4, "ksnap");
    let orders = sys::crossing_orders(450, &accounts, &sys::uniq("ksnap"));
    let answers = sys::place_all(&c, &node.base, &orders, 8, Instant::now()).await;
    let ids: Vec<(String, String)> = orders
        .iter()
        .zip(&answers)
        .filter(|(_, r)| r.status == 201)
        .map(|(o, r)| (o.account.clone(), r.order_id().unwrap().to_owned()))
        .collect();
    assert_eq!(ids.len(), orders.len(), "every order acknowledged");
    // Let the processor apply and snapshot what was acknowledged, then crash.
    let before = loop {
        let got = sys::get_orders(&c, &node.base, &ids, 8).await;
        if got.values().all(|(s, _)| *s == 200) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A snapshot is due every 100 applied commands: the fourth covers at least 400 of them.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = sys::metrics(&c, &node.base).await;
        if sys::metric(&text, "oms_snapshots_written_total").unwrap_or(0.0) >= 4.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 4 snapshots written: {}",
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snaps = data
        .join("snapshots")
        .join(format!("kafka-{}", spec.topic("orders")));
    assert!(
        std::fs::read_dir(&snaps).is_ok_and(|d| d.count() > 0),
        "no snapshot files in {}",
        snaps.display()
    );
    node.kill9();

    let node = sys::Node::start(&spec, &data, dir.path()).await;
    let text = sys::metrics(&c, &node.base).await;
    let replayed = sys::metric(&text, "oms_replayed_commands_total").unwrap_or(f64::MAX);
    eprintln!(
        "Kafka log: restart after kill -9 replayed {replayed} of {} commands",
        ids.len()
    );
    assert!(
        replayed < 100.0,
        "the restart replayed {replayed} commands: not from the newest snapshot"
    );
    let after = sys::get_orders(&c, &node.base, &ids, 8).await;
    for (id, (status, body)) in &before {
        let (s2, b2) = &after[id];
        assert_eq!(
            (*s2, b2),
            (*status, body),
            "order {id} differs after the restart"
        );
    }
}
