//! Fuzz target (proptest) for the journal reader: segment files with arbitrary damage are
//! opened and replayed without a panic, and whatever is replayed is a prefix of what was
//! written (a damaged record never turns into a different command).
//!
//! CI runs the default case count (256). Longer:
//! `PROPTEST_CASES=20000 cargo test -p oms-journal --release --test journal_tests fuzz_reader`.

use crate::common;

use common::cmd;
use oms_core::command::Command;
use oms_core::ports::{Checkpoint, OrderLog};
use oms_journal::frame::{Parsed, find_valid_frame, parse};
use oms_journal::{FsyncPolicy, Journal, JournalConfig, segment_name};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The frame parser on arbitrary bytes: an answer, never a panic.
    #[test]
    fn fuzz_frame_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Parsed::Record(len) = parse(&bytes) {
            prop_assert!(len + 8 <= bytes.len());
        }
        if let Some(p) = find_valid_frame(&bytes) {
            prop_assert!(p < bytes.len());
        }
    }

    /// A journal whose segment was damaged (bytes overwritten, truncated, garbage appended):
    /// opening either refuses (corruption in the middle) or recovers, and the replay is a
    /// prefix of the commands written, never a different command.
    #[test]
    fn fuzz_journal_reader_on_damaged_segments(
        n in 1u64..40,
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig { segment_bytes: 1 << 20, fsync: FsyncPolicy::EveryBatch };
        let written: Vec<Command> = (0..n).map(cmd).collect();
        {
            let (mut j, _) = Journal::open(dir.path(), cfg).unwrap();
            j.append(&written).unwrap();
        }
        let seg = dir.path().join("journal").join(segment_name(0));
        let mut bytes = std::fs::read(&seg).unwrap();
        for (at, b) in &damage {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        bytes.extend_from_slice(&tail);
        std::fs::write(&seg, &bytes).unwrap();

        if let Ok((mut j, _)) = Journal::open(dir.path(), cfg) {
            let mut got = Vec::new();
            let r = j.replay(&Checkpoint::start(), &mut |c| got.push(*c));
            if r.is_ok() {
                prop_assert!(got.len() <= written.len());
                prop_assert_eq!(&got[..], &written[..got.len()]);
            }
        }
    }
}
