//! Crash consistency with a real process kill. The test re-runs its own binary as a child
//! (selected by an environment variable) that writes numbered batches in a loop and prints
//! `committed N` after each `put_batch` returns; the parent SIGKILLs it at a random moment
//! while it writes, reopens the file and checks: every batch the child reported is wholly
//! present, the one batch that may have been in flight is wholly present or wholly absent,
//! nothing later exists, and the indexes agree with the rows. Five kills in a row on the
//! same file, the child resuming after the last batch present.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{account, cid, order};

use oms_archive::{ArchivedOrder, OrderArchive};
use oms_core::{OrderId, OrderStatus};

const CHILD_ENV: &str = "OMS_ARCHIVE_CRASH_CHILD";
const START_ENV: &str = "OMS_ARCHIVE_CRASH_START";
const PER_BATCH: u64 = 200;
const TEST_NAME: &str = "crash::killed_writer_leaves_only_whole_batches";

/// Batch `n`: ids `n * PER_BATCH + 1 ..`, times increasing with the id; a padded JSON so a
/// commit writes many pages and a kill is likely to land inside one.
fn batch(n: u64) -> Vec<ArchivedOrder> {
    (0..PER_BATCH)
        .map(|i| {
            let id = n * PER_BATCH + i + 1;
            let mut o = order(
                if i % 2 == 0 { "even" } else { "odd" },
                u128::from(id),
                id * 1_000,
                (i % 5) as u16,
                OrderStatus::Filled,
                Some(&format!("b{n}")),
            );
            o.json.extend(std::iter::repeat_n(b' ', 400));
            o
        })
        .collect()
}

fn run_child(path: &Path, start: u64) -> ! {
    let archive = OrderArchive::open(path).expect("child: open");
    for n in start.. {
        archive.put_batch(&batch(n)).expect("child: put_batch");
        println!("committed {n}");
    }
    unreachable!("the parent kills the child")
}

fn pseudo_random_below(n: u64) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::from(t.subsec_nanos()) % n
}

/// Runs the child until it has reported `min_commits` more batches, then kills it after a
/// random delay. Returns the highest batch number it reported.
fn write_until_killed(path: &Path, start: u64, min_commits: u64) -> Option<u64> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env(START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("committed ") {
                let _ = tx.send(n.trim().parse::<u64>().expect("batch number"));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = None;
    while last.is_none_or(|l| l + 1 < start + min_commits) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => last = Some(n),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped reporting commits: {e:?}");
            }
        }
    }
    std::thread::sleep(Duration::from_micros(pseudo_random_below(30_000)));
    // On Unix `Child::kill` is SIGKILL: no destructor, no flush, no clean close of redb.
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    // Lines printed before the kill but read after the loop above still count as reported.
    rx.try_iter().fold(last, |acc, n| acc.max(Some(n)))
}

/// Checks the reopened archive; returns the number of whole batches present.
fn check(archive: &OrderArchive, reported: u64) -> u64 {
    let mut present = 0;
    for n in 0.. {
        let expected = batch(n);
        let found: Vec<bool> = expected
            .iter()
            .map(|o| archive.get(&o.account, o.order_id).unwrap().as_ref() == Some(o))
            .collect();
        let count = found.iter().filter(|&&f| f).count();
        if count == 0 {
            assert!(
                n > reported,
                "batch {n} was reported committed but is missing"
            );
            break;
        }
        assert_eq!(count, expected.len(), "batch {n} is half present");
        // Its client-id index entry is there and points at its newest order.
        let newest = archive
            .by_client_id(&account("odd"), &cid(&format!("b{n}")))
            .unwrap()
            .map(|o| o.order_id);
        assert_eq!(newest, Some(OrderId(u128::from((n + 1) * PER_BATCH))));
        present += 1;
    }
    assert!(present > reported, "reported batches missing");
    assert!(
        present <= reported + 2,
        "a batch appeared that was never written"
    );
    // Index and rows agree: the list holds exactly the present orders, newest first.
    let total = present * PER_BATCH;
    assert_eq!(archive.len().unwrap(), total);
    let listed = archive
        .list(&account("even"), None, None, None, usize::MAX)
        .unwrap();
    assert_eq!(listed.len() as u64, total / 2);
    assert!(listed.windows(2).all(|w| w[0].created_at > w[1].created_at));
    present
}

#[test]
fn killed_writer_leaves_only_whole_batches() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        let start = std::env::var(START_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        run_child(Path::new(&path), start);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.redb");
    let mut start = 0;
    for round in 0..5 {
        let reported = write_until_killed(&path, start, 3)
            .unwrap_or_else(|| panic!("round {round}: child reported nothing"));
        let archive = OrderArchive::open(&path).expect("reopen after SIGKILL");
        start = check(&archive, reported);
        eprintln!("round {round}: reported up to batch {reported}, {start} whole batches on disk");
    }
}
