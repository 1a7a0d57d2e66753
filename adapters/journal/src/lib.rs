//! # oms-journal
//!
//! The embedded order log, default for `oms serve` (ARCHITECTURE.md §6): the single source
//! of truth when running without Kafka, so it must never acknowledge a command it could lose
//! and never hand back a record it cannot vouch for.
//!
//! * **Layout**: `<dir>/journal/<first offset, 20 digits>.log` segments, rolled at a
//!   configurable size (64 MiB by default). One partition (0): offsets are record numbers.
//!   See [`frame`] for the byte format (header, `len | crc32 | payload` frames).
//! * **Writes**: group commit, one `write_all` and one `fdatasync` per batch, allocation-free
//!   in steady state; the fsync policy and the failure semantics are in [`journal`].
//! * **Open**: recovery truncates a torn tail and refuses damage in the middle of the log
//!   ([`recovery`]).
//! * **Snapshots and retention**: crash-safe snapshot files and removal of segments no
//!   kept snapshot needs ([`snapshot`]).
//! * **Testing**: files are reached through the [`Storage`] seam; [`mem::MemStorage`] injects
//!   short writes, fsync failures and crashes for the crash-consistency suite.

pub mod answers;
pub mod frame;
pub mod journal;
pub mod mem;
pub mod recovery;
pub mod snapshot;
pub mod storage;

pub use answers::{AnswerReader, AnswerStore};
pub use journal::{
    DEFAULT_SEGMENT_BYTES, FsyncPolicy, Journal, JournalConfig, RecoveryReport, TornTail,
};
pub use mem::{CrashMode, MemStorage};
pub use snapshot::{
    Retention, SnapshotFileError, SnapshotImage, SnapshotStore, remove_segments_before,
};
pub use storage::{FsFile, FsStorage, SegmentFile, Storage, segment_name};
