//! Crash consistency, in the style of redb's fuzzer: random batches of appends on the
//! fault-injecting backend, with short writes, failed fsyncs and crashes (mid-write, at
//! fsync, between appends) that drop or tear unsynced bytes, checked against a model.
//!
//! The model is the list of acknowledged commands plus the one batch whose outcome is
//! unknown (its append failed after the journal may have written part of it). After every
//! reopen the replayed log must be exactly a prefix of `acked ++ pending` that contains every
//! command known durable; under `EveryBatch` that is every acknowledged command. A prefix of
//! whole commands is the only thing allowed: never garbage, never a gap, never a reordering.
//!
//! A second property flips one byte inside any record that has a successor and requires the
//! open to refuse with `Corrupt` at that record.

use crate::common;

use std::time::Duration;

use common::cmds;
use oms_core::command::Command;
use oms_core::ports::{Checkpoint, LogError, OrderLog};
use oms_journal::frame::{FRAME_HEADER, HEADER_LEN};
use oms_journal::{CrashMode, FsyncPolicy, Journal, JournalConfig, MemStorage};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    /// The write stops after `k` bytes with an error.
    ShortWrite(usize, usize),
    /// A short write whose rollback fsync then fails too.
    ShortWriteThenFailSync(usize, usize),
    /// The fsync of the batch fails.
    FailSync(usize),
    /// The machine dies after `k` bytes of the batch were written.
    CrashInWrite(usize, usize, CrashMode),
    /// The machine dies when the batch's fsync is issued.
    CrashAtSync(usize, CrashMode),
    /// The machine dies between appends.
    Crash(CrashMode),
    /// Clean restart of the process.
    Reopen,
    /// Replay from `acked * frac / 256`.
    Replay(u8),
    Sync,
}

fn mode() -> impl Strategy<Value = CrashMode> {
    prop_oneof![
        Just(CrashMode::DropUnsynced),
        Just(CrashMode::KeepPrefix),
        Just(CrashMode::ZeroFill),
        Just(CrashMode::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = 1usize..12;
    let k = 0usize..1500;
    prop_oneof![
        8 => n.clone().prop_map(Op::Append),
        2 => (n.clone(), k.clone()).prop_map(|(n, k)| Op::ShortWrite(n, k)),
        1 => (n.clone(), k.clone()).prop_map(|(n, k)| Op::ShortWriteThenFailSync(n, k)),
        2 => n.clone().prop_map(Op::FailSync),
        2 => (n.clone(), k, mode()).prop_map(|(n, k, m)| Op::CrashInWrite(n, k, m)),
        2 => (n, mode()).prop_map(|(n, m)| Op::CrashAtSync(n, m)),
        2 => mode().prop_map(Op::Crash),
        1 => Just(Op::Reopen),
        2 => any::<u8>().prop_map(Op::Replay),
        1 => Just(Op::Sync),
    ]
}

fn policy() -> impl Strategy<Value = FsyncPolicy> {
    prop_oneof![
        3 => Just(FsyncPolicy::EveryBatch),
        1 => Just(FsyncPolicy::Never),
        1 => Just(FsyncPolicy::Interval(Duration::from_micros(50))),
    ]
}

fn replay(j: &mut impl OrderLog, from: usize) -> Vec<Command> {
    let mut cp = Checkpoint::start();
    cp.set(0, from as u64);
    let mut out = Vec::new();
    j.replay(&cp, &mut |c| out.push(*c)).unwrap();
    out
}

struct Harness {
    storage: MemStorage,
    cfg: JournalConfig,
    journal: Option<Journal<MemStorage>>,
    /// Commands acknowledged, in log order (offset = index).
    acked: Vec<Command>,
    /// `acked[..durable]` is known durable.
    durable: usize,
    /// The batch whose append failed after the journal may have written some of it.
    pending: Vec<Command>,
    next_id: u64,
    /// An fsync failed since the last open: only a crash (fresh page cache) may follow.
    sync_failed: bool,
    reopens: usize,
}

impl Harness {
    fn new(seed: u64, cfg: JournalConfig) -> Harness {
        let storage = MemStorage::new(seed);
        let (journal, report) = Journal::open_with(storage.clone(), cfg).unwrap();
        assert_eq!(report.records, 0);
        Harness {
            storage,
            cfg,
            journal: Some(journal),
            acked: Vec::new(),
            durable: 0,
            pending: Vec::new(),
            next_id: 0,
            sync_failed: false,
            reopens: 0,
        }
    }

    fn j(&mut self) -> &mut Journal<MemStorage> {
        self.journal.as_mut().expect("open")
    }

    fn batch(&mut self, n: usize) -> Vec<Command> {
        let b = cmds(self.next_id..self.next_id + n as u64);
        self.next_id += n as u64;
        b
    }

    /// Appends with whatever fault is armed; updates the model. Returns whether it crashed.
    fn append(&mut self, n: usize) {
        let batch = self.batch(n);
        let failed_before = self.j().failure().is_some();
        let r = self.j().append(&batch);
        self.storage.clear_faults();
        match r {
            Ok(()) => {
                assert!(!failed_before, "a failed journal accepted an append");
                self.acked.extend_from_slice(&batch);
                let j = self.journal.as_ref().expect("open");
                assert_eq!(j.next_offset() as usize, self.acked.len());
                if self.cfg.fsync == FsyncPolicy::EveryBatch {
                    assert_eq!(j.durable_offset(), j.next_offset());
                }
                self.durable = j.durable_offset() as usize;
            }
            Err(e) => {
                let j = self.journal.as_ref().expect("open");
                assert_eq!(j.next_offset() as usize, self.acked.len(), "{e}");
                if failed_before {
                    assert!(matches!(e, LogError::Unavailable(_)), "{e}");
                } else if j.failure().is_some() {
                    // Outcome unknown: some prefix of the batch may be in the log.
                    assert!(self.pending.is_empty());
                    self.pending = batch;
                }
                // Otherwise the partial write was rolled back: the batch is not in the log.
            }
        }
    }

    fn crash_and_reopen(&mut self, mode: CrashMode) {
        self.storage.crash(mode);
        self.reopen_after_crash(true);
    }

    fn reopen_after_crash(&mut self, crashed: bool) {
        // Dropping may fsync (relaxed policies, clean shutdown); after a crash the handles
        // are dead and that fails harmlessly.
        let j = self.journal.take().expect("open");
        let clean_durable = crashed || j.failure().is_some();
        drop(j);
        if !clean_durable {
            self.durable = self.acked.len();
        }
        let (mut j, report) =
            Journal::open_with(self.storage.clone(), self.cfg).unwrap_or_else(|e| {
                panic!("reopen failed: {e}");
            });
        let got = replay(&mut j, 0);
        let mut expect = self.acked.clone();
        expect.extend_from_slice(&self.pending);
        assert!(
            got.len() >= self.durable,
            "lost durable commands: replayed {}, durable {} (acked {}, report {report:?})",
            got.len(),
            self.durable,
            self.acked.len()
        );
        assert!(
            got.len() <= expect.len(),
            "replayed {} > written {}",
            got.len(),
            expect.len()
        );
        if let Some(i) = (0..got.len()).find(|&i| got[i] != expect[i]) {
            panic!(
                "record {i} differs after reopen: {:?} vs {:?}",
                got[i], expect[i]
            );
        }
        if !crashed {
            assert!(
                got.len() >= self.acked.len(),
                "a clean restart lost acknowledged commands"
            );
        }
        assert_eq!(report.next_offset as usize, got.len());
        assert_eq!(j.durable_offset() as usize, got.len());
        self.acked = got;
        self.durable = self.acked.len();
        self.pending.clear();
        self.sync_failed = false;
        self.reopens += 1;
        self.journal = Some(j);
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Append(n) => self.append(n),
            Op::ShortWrite(n, k) => {
                self.storage.fail_write_after(k);
                self.append(n);
            }
            Op::ShortWriteThenFailSync(n, k) => {
                self.storage.fail_write_after(k);
                self.storage.fail_next_sync();
                let before = self.storage.syncs();
                self.append(n);
                if self.storage.syncs() > before {
                    self.sync_failed = true;
                }
            }
            Op::FailSync(n) => {
                self.storage.fail_next_sync();
                let before = self.storage.syncs();
                self.append(n);
                if self.storage.syncs() > before {
                    self.sync_failed = true;
                }
            }
            Op::CrashInWrite(n, k, mode) => {
                self.storage.crash_after_bytes(k, mode);
                let before = self.storage.crashes();
                self.append(n);
                if self.storage.crashes() > before {
                    self.reopen_after_crash(true);
                }
            }
            Op::CrashAtSync(n, mode) => {
                self.storage.crash_at_next_sync(mode);
                let before = self.storage.crashes();
                self.append(n);
                if self.storage.crashes() > before {
                    self.reopen_after_crash(true);
                }
            }
            Op::Crash(mode) => self.crash_and_reopen(mode),
            Op::Reopen => {
                if self.sync_failed {
                    // After a failed fsync only a fresh page cache tells the truth.
                    self.crash_and_reopen(CrashMode::KeepPrefix);
                } else {
                    self.reopen_after_crash(false);
                }
            }
            Op::Replay(frac) => {
                let from = self.acked.len() * frac as usize / 256;
                let acked = self.acked.clone();
                assert_eq!(replay(self.j(), from), acked[from..]);
            }
            Op::Sync => {
                let failed = self.j().failure().is_some();
                let r = self.j().sync();
                assert_eq!(r.is_err(), failed, "{r:?}");
                if r.is_ok() {
                    self.durable = self.acked.len();
                }
            }
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn acknowledged_commands_survive_faults_and_crashes(
        seed in any::<u64>(),
        policy in policy(),
        segment_bytes in prop_oneof![Just(300u64), Just(1200), Just(1 << 20)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let cfg = JournalConfig { segment_bytes, fsync: policy };
        let mut h = Harness::new(seed, cfg);
        for op in &ops {
            h.run(op);
        }
        // Finally a crash that keeps nothing unsynced, then a clean restart.
        h.crash_and_reopen(CrashMode::DropUnsynced);
        h.reopen_after_crash(false);
    }

    #[test]
    fn a_damaged_record_with_a_successor_is_refused(
        seed in any::<u64>(),
        batches in proptest::collection::vec(1usize..10, 2..30),
        segment_bytes in prop_oneof![Just(300u64), Just(1500), Just(1 << 20)],
        pick in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let storage = MemStorage::new(seed);
        let cfg = JournalConfig { segment_bytes, fsync: FsyncPolicy::EveryBatch };
        let (mut j, _) = Journal::open_with(storage.clone(), cfg).unwrap();
        let mut next = 0;
        for n in batches {
            j.append(&cmds(next..next + n as u64)).unwrap();
            next += n as u64;
        }
        drop(j);
        // (segment, frame position, frame length, record offset) of every record.
        let mut frames = Vec::new();
        for first in storage.segments() {
            let bytes = storage.bytes(first).unwrap();
            let mut pos = HEADER_LEN as usize;
            let mut offset = first;
            while pos < bytes.len() {
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
                frames.push((first, pos, FRAME_HEADER + len, offset));
                pos += FRAME_HEADER + len;
                offset += 1;
            }
        }
        prop_assert_eq!(frames.len() as u64, next);
        // Any record but the last: a valid record follows it somewhere.
        let (seg, pos, len, offset) = frames[pick.index(frames.len() - 1)];
        storage.corrupt(seg, pos + byte.index(len), mask);
        match Journal::open_with(storage.clone(), cfg) {
            Err(LogError::Corrupt { location, reason }) => {
                prop_assert!(
                    location.contains(&format!("record offset {offset})")),
                    "location {} reason {} (expected offset {})", location, reason, offset
                );
                prop_assert!(location.contains(&oms_journal::segment_name(seg)), "{}", location);
            }
            Err(e) => prop_assert!(false, "expected Corrupt, got {}", e),
            Ok((_, report)) => prop_assert!(false, "damage accepted: {:?}", report),
        }
    }
}

/// A journal that retried fsync after a failure would lose these bytes silently; this one
/// refuses appends until reopened.
#[test]
fn fsync_failure_is_fatal_until_reopen() {
    let storage = MemStorage::new(9);
    let (mut j, _) = Journal::open_with(storage.clone(), JournalConfig::default()).unwrap();
    j.append(&cmds(0..3)).unwrap();
    storage.fail_next_sync();
    assert!(matches!(j.append(&cmds(3..6)), Err(LogError::Io(_))));
    assert!(j.failure().is_some());
    assert!(matches!(
        j.append(&cmds(6..9)),
        Err(LogError::Unavailable(_))
    ));
    assert!(j.sync().is_err());
    storage.crash(CrashMode::DropUnsynced);
    drop(j);
    let (mut j, _) = Journal::open_with(storage.clone(), JournalConfig::default()).unwrap();
    assert_eq!(replay(&mut j, 0), cmds(0..3));
    j.append(&cmds(3..6)).unwrap();
    assert_eq!(replay(&mut j, 0), cmds(0..6));
}

/// A short write is rolled back: the journal stays usable and the next batch follows the
/// last whole record, not the partial one.
#[test]
fn short_write_is_rolled_back_and_appends_continue() {
    let storage = MemStorage::new(5);
    let (mut j, _) = Journal::open_with(storage.clone(), JournalConfig::default()).unwrap();
    j.append(&cmds(0..2)).unwrap();
    let before = storage.bytes(0).unwrap();
    storage.fail_write_after(13);
    assert!(matches!(j.append(&cmds(2..4)), Err(LogError::Io(_))));
    assert!(j.failure().is_none());
    assert_eq!(storage.bytes(0).unwrap(), before, "partial batch truncated");
    j.append(&cmds(4..6)).unwrap();
    let mut expect = cmds(0..2);
    expect.extend(cmds(4..6));
    storage.crash(CrashMode::DropUnsynced);
    drop(j);
    let (mut j, report) = Journal::open_with(storage.clone(), JournalConfig::default()).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(replay(&mut j, 0), expect);
}

/// A crash while creating a segment leaves an empty or header-torn file; it is repaired.
#[test]
fn crash_while_rolling_is_recovered() {
    for k in 0..40 {
        let storage = MemStorage::new(k as u64 + 1);
        let cfg = JournalConfig {
            segment_bytes: 400,
            fsync: FsyncPolicy::EveryBatch,
        };
        let (mut j, _) = Journal::open_with(storage.clone(), cfg).unwrap();
        let mut acked = Vec::new();
        while j.segment_count() == 1 {
            let b = cmds(acked.len() as u64..acked.len() as u64 + 2);
            j.append(&b).unwrap();
            acked.extend(b);
        }
        // Next roll: crash after k bytes of the new segment's header (or later).
        let first = j.next_offset();
        let b = cmds(first..first + 40);
        storage.crash_after_bytes(k, CrashMode::KeepPrefix);
        let r = j.append(&b);
        drop(j);
        let (mut j, _) = Journal::open_with(storage.clone(), cfg).unwrap();
        let got = replay(&mut j, 0);
        if r.is_ok() {
            acked.extend(b);
        }
        assert!(
            got.len() >= acked.len() && got[..acked.len()] == acked[..],
            "k={k}"
        );
    }
}
