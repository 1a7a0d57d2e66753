//! The journal on real files in a temporary directory.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{cmd, cmds};
use oms_core::command::Command;
use oms_core::ports::{Checkpoint, LogError, OrderLog};
use oms_journal::frame::HEADER_LEN;
use oms_journal::{FsyncPolicy, Journal, JournalConfig, segment_name};

fn cfg(segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        fsync: FsyncPolicy::EveryBatch,
    }
}

fn replay_all(j: &mut impl OrderLog, from: u64) -> (Vec<Command>, Checkpoint) {
    let mut out = Vec::new();
    let mut cp = Checkpoint::start();
    cp.set(0, from);
    let next = j.replay(&cp, &mut |c| out.push(*c)).unwrap();
    (out, next)
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join("journal").join(segment_name(first))
}

fn checkpoint(next: u64) -> Checkpoint {
    let mut cp = Checkpoint::start();
    cp.set(0, next);
    cp
}

#[test]
fn append_replay_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.torn_tail, None);
    assert!(seg_path(dir.path(), 0).exists());
    let all = cmds(0..300);
    for chunk in all.chunks(37) {
        j.append(chunk).unwrap();
    }
    j.append(&[]).unwrap();
    assert_eq!(j.next_offset(), 300);
    assert_eq!(j.durable_offset(), 300);
    let (got, next) = replay_all(&mut j, 0);
    assert_eq!(got, all);
    assert_eq!(next, checkpoint(300));
}

#[test]
fn segments_roll_and_are_named_by_first_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), cfg(1024)).unwrap();
    let all = cmds(0..200);
    for chunk in all.chunks(5) {
        j.append(chunk).unwrap();
    }
    let firsts = j.segment_firsts();
    assert!(firsts.len() > 5, "{firsts:?}");
    assert_eq!(firsts[0], 0);
    for f in &firsts {
        assert!(seg_path(dir.path(), *f).exists());
        assert_eq!(f % 5, 0, "batches never span segments");
    }
    for w in firsts.windows(2) {
        let len = std::fs::metadata(seg_path(dir.path(), w[0])).unwrap().len();
        assert!(len <= 1024, "sealed segment of {len} bytes");
    }
    assert_eq!(replay_all(&mut j, 0).0, all);
    drop(j);
    let (mut j, report) = Journal::open(dir.path(), cfg(1024)).unwrap();
    assert_eq!(report.segments, firsts.len());
    assert_eq!(report.records, 200);
    assert_eq!(replay_all(&mut j, 0).0, all);
}

#[test]
fn oversized_batch_makes_an_oversized_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), cfg(256)).unwrap();
    let all = cmds(0..50);
    j.append(&all[..1]).unwrap();
    j.append(&all[1..]).unwrap();
    assert_eq!(j.segment_firsts(), vec![0, 1]);
    assert_eq!(replay_all(&mut j, 0).0, all);
}

#[test]
fn replay_from_a_checkpoint_seeks_to_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), cfg(2048)).unwrap();
    let all = cmds(0..500);
    for chunk in all.chunks(7) {
        j.append(chunk).unwrap();
    }
    for from in [0, 1, 6, 7, 8, 123, 250, 499, 500] {
        let (got, next) = replay_all(&mut j, from);
        assert_eq!(got, all[from as usize..], "from {from}");
        assert_eq!(next, checkpoint(500));
    }
    let err = j
        .replay(&checkpoint(501), &mut |_| panic!("nothing to visit"))
        .unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
}

#[test]
fn reopen_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut j, _) = Journal::open(dir.path(), cfg(4096)).unwrap();
        j.append(&cmds(0..70)).unwrap();
    }
    let (mut j, report) = Journal::open(dir.path(), cfg(4096)).unwrap();
    assert_eq!(report.next_offset, 70);
    assert_eq!(j.next_offset(), 70);
    assert_eq!(j.append_range(&cmds(70..100)).unwrap(), 70..100);
    drop(j);
    let (mut j, _) = Journal::open(dir.path(), cfg(4096)).unwrap();
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..100));
    assert_eq!(replay_all(&mut j, 70).0, cmds(70..100));
}

#[test]
fn a_second_process_cannot_open_the_same_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let err = Journal::open(dir.path(), JournalConfig::default()).unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err}");
}

fn write_then_damage(
    damage: impl FnOnce(&Path, u64),
) -> (
    tempfile::TempDir,
    Result<(Journal, oms_journal::RecoveryReport), LogError>,
) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut j, _) = Journal::open(dir.path(), cfg(1 << 20)).unwrap();
        for i in 0..10 {
            j.append(&cmds(i * 10..i * 10 + 10)).unwrap();
        }
    }
    damage(&seg_path(dir.path(), 0), 100);
    let r = Journal::open(dir.path(), cfg(1 << 20));
    (dir, r)
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn torn_tail_garbage_is_truncated_and_reported() {
    let garbage: Vec<u8> = (0..77u8).map(|b| b.wrapping_mul(37) ^ 0xA5).collect();
    let (dir, r) = write_then_damage(|p, _| append_bytes(p, &garbage));
    let (mut j, report) = r.unwrap();
    let torn = report.torn_tail.expect("reported");
    assert_eq!(torn.bytes_dropped, 77);
    assert_eq!(report.records, 100);
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..100));
    // Appends continue after the cut, and the next open is clean.
    j.append(&cmds(100..110)).unwrap();
    drop(j);
    let (mut j, report) = Journal::open(dir.path(), cfg(1 << 20)).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..110));
}

#[test]
fn torn_tail_cut_mid_record_is_truncated() {
    let (_dir, r) = write_then_damage(|p, _| {
        let len = std::fs::metadata(p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
    });
    let (mut j, report) = r.unwrap();
    let torn = report.torn_tail.expect("reported");
    assert_eq!(torn.reason, "truncated record");
    assert_eq!(
        report.records, 99,
        "the cut record is dropped, the rest kept"
    );
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..99));
    assert_eq!(j.next_offset(), 99);
}

#[test]
fn zero_filled_tail_is_truncated() {
    let (_dir, r) = write_then_damage(|p, _| append_bytes(p, &[0u8; 4096]));
    let (mut j, report) = r.unwrap();
    assert_eq!(report.torn_tail.unwrap().bytes_dropped, 4096);
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..100));
}

/// Byte position of record `n` in segment 0.
fn record_pos(path: &Path, n: usize) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let mut pos = HEADER_LEN as usize;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    pos as u64
}

fn flip(path: &Path, pos: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[pos as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_middle_is_refused_with_its_location() {
    for (what, delta) in [("payload", 20), ("crc", 5), ("length", 1)] {
        let mut at = 0;
        let (_dir, r) = write_then_damage(|p, _| {
            at = record_pos(p, 37);
            flip(p, at + delta);
        });
        let err = r.unwrap_err();
        let LogError::Corrupt { location, reason } = &err else {
            panic!("{what}: expected Corrupt, got {err}");
        };
        assert!(location.contains(&segment_name(0)), "{what}: {location}");
        assert!(
            location.contains(&format!("byte {at} ")),
            "{what}: {location}"
        );
        assert!(location.contains("record offset 37)"), "{what}: {location}");
        assert!(reason.contains("valid record follows"), "{what}: {reason}");
    }
}

#[test]
fn corrupt_sealed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut j, _) = Journal::open(dir.path(), cfg(1024)).unwrap();
        for i in 0..20 {
            j.append(&cmds(i * 4..i * 4 + 4)).unwrap();
        }
    }
    // The last record of the first (sealed) segment: a flip there is not a torn tail.
    let p = seg_path(dir.path(), 0);
    let len = std::fs::metadata(&p).unwrap().len();
    flip(&p, len - 1);
    let err = Journal::open(dir.path(), cfg(1024)).unwrap_err();
    assert!(
        matches!(&err, LogError::Corrupt { location, .. } if location.contains(&segment_name(0))),
        "{err}"
    );
}

#[test]
fn missing_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let firsts = {
        let (mut j, _) = Journal::open(dir.path(), cfg(1024)).unwrap();
        for i in 0..20 {
            j.append(&cmds(i * 4..i * 4 + 4)).unwrap();
        }
        j.segment_firsts()
    };
    std::fs::remove_file(seg_path(dir.path(), firsts[1])).unwrap();
    let err = Journal::open(dir.path(), cfg(1024)).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
}

#[test]
fn relaxed_fsync_policies_ack_and_sync_on_demand() {
    for policy in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_secs(3600)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(
            dir.path(),
            JournalConfig {
                segment_bytes: 1 << 20,
                fsync: policy,
            },
        )
        .unwrap();
        j.append(&cmds(0..10)).unwrap();
        assert_eq!(j.next_offset(), 10);
        assert_eq!(j.durable_offset(), 0, "{policy:?}");
        j.sync().unwrap();
        assert_eq!(j.durable_offset(), 10);
        drop(j);
        let (mut j, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        assert_eq!(replay_all(&mut j, 0).0, cmds(0..10));
    }
    // Interval(0) syncs every batch.
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(
        dir.path(),
        JournalConfig {
            segment_bytes: 1 << 20,
            fsync: FsyncPolicy::Interval(Duration::ZERO),
        },
    )
    .unwrap();
    j.append(&[cmd(1)]).unwrap();
    assert_eq!(j.durable_offset(), 1);
}

/// Zeroes the first `n` bytes of a file (what a crash can leave of unsynced pages).
fn zero_prefix(path: &Path, n: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = n.min(bytes.len());
    bytes[..n].fill(0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn torn_header_of_the_last_segment_is_a_torn_tail() {
    // A crash while the journal rolled to a new segment: the new file exists, but its header
    // and first batch never reached the disk intact. Nothing in it was acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let kept;
    {
        let (mut j, _) = Journal::open(dir.path(), cfg(1024)).unwrap();
        for i in 0..20 {
            j.append(&cmds(i * 4..i * 4 + 4)).unwrap();
        }
        kept = j.segment_firsts();
    }
    let last = *kept.last().unwrap();
    let p = seg_path(dir.path(), last);
    std::fs::write(&p, vec![0u8; 300]).unwrap();
    let (mut j, report) = Journal::open(dir.path(), cfg(1024)).unwrap();
    let torn = report.torn_tail.expect("reported as a torn tail");
    assert!(
        torn.segment.ends_with(&segment_name(last)),
        "{}",
        torn.segment
    );
    let (all, next) = replay_all(&mut j, 0);
    assert_eq!(all, cmds(0..last));
    assert_eq!(next, checkpoint(last));
    // The journal is usable again: appends continue at the same offset.
    j.append(&cmds(last..last + 2)).unwrap();
    drop(j);
    let (mut j, _) = Journal::open(dir.path(), cfg(1024)).unwrap();
    assert_eq!(replay_all(&mut j, 0).0, cmds(0..last + 2));
}

#[test]
fn damaged_header_with_valid_records_after_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut j, _) = Journal::open(dir.path(), cfg(1 << 20)).unwrap();
        j.append(&cmds(0..10)).unwrap();
    }
    let p = seg_path(dir.path(), 0);
    zero_prefix(&p, HEADER_LEN as usize);
    let err = Journal::open(dir.path(), cfg(1 << 20)).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
}
