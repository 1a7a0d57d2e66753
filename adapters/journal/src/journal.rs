//! The journal: group-commit appends, durability policy, failure handling and replay.
//!
//! ## Group commit
//! `append(batch)` encodes every record of the batch into one reusable buffer, issues one
//! `write_all` and then at most one `fdatasync`, so a batch of 512 orders costs one syscall
//! pair. The buffer keeps its capacity: a steady-state append allocates nothing.
//!
//! A batch never spans segments: if it would take the active segment past
//! `segment_bytes`, the segment is sealed (fsynced regardless of policy) and a new one
//! created first. A single batch larger than a segment makes an oversized segment.
//!
//! ## Failure semantics (the fsyncgate lesson)
//! * A failed **write** leaves an unknown prefix of the batch in the file. The journal
//!   truncates back to the last whole record and fsyncs that truncation, so the partial batch
//!   can neither be followed by later records nor resurrected by writeback after a crash. If
//!   both succeed the journal stays usable and the failed batch is definitely not in the log;
//!   if either fails, the journal is *failed*.
//! * A failed **fsync** is fatal: after a writeback error the kernel may have marked the
//!   dirty pages clean without writing them, so retrying fsync would "succeed" and lie. The
//!   journal is *failed*; the batch may or may not be durable.
//! * A *failed* journal refuses every append with `LogError::Unavailable` until it is dropped
//!   and opened again; opening runs recovery, which drops any torn tail. After an fsync
//!   failure the process should restart (the page cache may still hold bytes that never
//!   reached the disk), as PostgreSQL does.
//!
//! ## Durability policy
//! [`FsyncPolicy::EveryBatch`] acknowledges only durable batches. `Interval(d)` fsyncs at
//! most once per `d` (an ack then means "written to the OS"); `Never` leaves it to the OS.
//! [`Journal::durable_offset`] tells how far the log is known durable; [`Journal::sync`]
//! forces it (call it when idle or before shutdown under the relaxed policies).

use std::time::{Duration, Instant};

use oms_core::codec;
use oms_core::command::Command;
use oms_core::ports::{Checkpoint, LogError, OrderLog};

use crate::frame::{self, HEADER_LEN, MAX_RECORD};
use crate::storage::{SegmentFile, Storage};

/// When appends are fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every batch is fsynced before `append` returns (the default).
    #[default]
    EveryBatch,
    /// At most one fsync per interval; an ack means written to the OS, not durable.
    Interval(Duration),
    /// Never fsync on append (segment rolls are still fsynced).
    Never,
}

/// Journal settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Roll to a new segment once the active one would exceed this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::EveryBatch,
        }
    }
}

/// A torn tail that recovery cut off the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment, as named by the storage (a path for real files).
    pub segment: String,
    /// Byte position the segment was truncated to.
    pub at_byte: u64,
    pub bytes_dropped: u64,
    /// Why the first dropped frame was not a whole record.
    pub reason: &'static str,
}

/// What recovery found when opening the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Whole records kept (also the next offset when the log starts at 0).
    pub records: u64,
    pub next_offset: u64,
    /// Set if the last segment ended in a torn write that was truncated away.
    pub torn_tail: Option<TornTail>,
}

/// Index entry of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub first: u64,
    pub records: u64,
    /// Bytes of whole records plus the header: where the next append lands.
    pub bytes: u64,
}

/// The embedded order log (see the module docs).
pub struct Journal<S: Storage = crate::storage::FsStorage> {
    pub(crate) storage: S,
    pub(crate) cfg: JournalConfig,
    /// Every segment, ascending; the last is the active one.
    pub(crate) segments: Vec<Segment>,
    pub(crate) active: S::File,
    pub(crate) next_offset: u64,
    pub(crate) durable_offset: u64,
    pub(crate) write_buf: Vec<u8>,
    pub(crate) read_buf: Vec<u8>,
    pub(crate) last_sync: Instant,
    /// Why the journal stopped taking writes, if it did.
    pub(crate) failed: Option<String>,
}

impl<S: Storage> std::fmt::Debug for Journal<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("segments", &self.segments.len())
            .field("next_offset", &self.next_offset)
            .field("durable_offset", &self.durable_offset)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Journal<S> {
    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Every record below this offset is known to be fsynced.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// First offsets of the segments, ascending.
    pub fn segment_firsts(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.first).collect()
    }

    /// `Some(reason)` once a write or fsync failure has stopped the journal.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The backend (tests reach the fault injector through it).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// [`OrderLog::append`] that also returns the offsets the batch was given.
    pub fn append_range(&mut self, batch: &[Command]) -> Result<std::ops::Range<u64>, LogError> {
        let start = self.next_offset;
        self.append_batch(batch)?;
        Ok(start..self.next_offset)
    }

    /// Fsyncs everything written so far.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        if self.durable_offset == self.next_offset {
            return Ok(());
        }
        self.sync_active()
    }

    fn check_usable(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(why) => Err(LogError::Unavailable(format!(
                "journal failed ({why}); reopen to recover"
            ))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::error!(reason = %why, "journal failed; refusing appends until reopened");
        self.failed = Some(why);
    }

    fn sync_active(&mut self) -> Result<(), LogError> {
        match self.active.sync_data() {
            Ok(()) => {
                self.durable_offset = self.next_offset;
                self.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                self.fail(format!("fsync failed: {e}"));
                Err(LogError::Io(e))
            }
        }
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self) -> Result<(), LogError> {
        self.sync_active()?;
        let first = self.next_offset;
        let result = (|| {
            let mut file = self.storage.create(first)?;
            file.write_all(&frame::header(first))?;
            file.sync_data()?;
            self.storage.sync_dir()?;
            Ok::<_, std::io::Error>(file)
        })();
        match result {
            Ok(file) => {
                self.active = file;
                self.segments.push(Segment {
                    first,
                    records: 0,
                    bytes: HEADER_LEN,
                });
                Ok(())
            }
            Err(e) => {
                self.fail(format!("creating segment {first} failed: {e}"));
                Err(LogError::Io(e))
            }
        }
    }

    /// Undoes a partial write: truncate to the last whole record and make that durable.
    fn roll_back(&mut self, good_len: u64) {
        let undo = self
            .active
            .set_len(good_len)
            .and_then(|()| self.active.sync_data());
        if let Err(e) = undo {
            self.fail(format!("rolling back a failed write failed: {e}"));
        } else {
            self.durable_offset = self.next_offset;
            self.last_sync = Instant::now();
        }
    }

    fn encode_batch(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.write_buf.clear();
        for cmd in batch {
            let start = frame::begin_frame(&mut self.write_buf);
            codec::encode(cmd, &mut self.write_buf);
            let len = frame::finish_frame(&mut self.write_buf, start);
            if len > MAX_RECORD {
                return Err(LogError::Unavailable(format!(
                    "record of {len} bytes exceeds the {MAX_RECORD}-byte limit"
                )));
            }
        }
        Ok(())
    }

    fn append_batch(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.check_usable()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.encode_batch(batch)?;
        let add = self.write_buf.len() as u64;
        let active = *self.segments.last().expect("always one segment");
        if active.records > 0 && active.bytes + add > self.cfg.segment_bytes {
            self.roll()?;
        }
        let good_len = self.segments.last().expect("always one segment").bytes;
        if let Err(e) = self.active.write_all(&self.write_buf) {
            self.roll_back(good_len);
            return Err(LogError::Io(e));
        }
        let must_sync = match self.cfg.fsync {
            FsyncPolicy::EveryBatch => true,
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if must_sync && let Err(e) = self.active.sync_data() {
            self.fail(format!("fsync failed: {e}"));
            return Err(LogError::Io(e));
        }
        let seg = self.segments.last_mut().expect("always one segment");
        seg.bytes += add;
        seg.records += batch.len() as u64;
        self.next_offset += batch.len() as u64;
        if must_sync {
            self.durable_offset = self.next_offset;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn replay_from(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        let from = from.next_offset(0);
        let start = self.segments[0].first;
        if from > self.next_offset || from < start {
            return Err(LogError::Corrupt {
                location: "checkpoint".into(),
                reason: format!(
                    "checkpoint offset {from} is outside the journal [{start}, {})",
                    self.next_offset
                ),
            });
        }
        let idx = self.segments.partition_point(|s| s.first <= from) - 1;
        let mut buf = std::mem::take(&mut self.read_buf);
        let result = self.replay_segments(idx, from, &mut buf, visit);
        self.read_buf = buf;
        result?;
        let mut cp = Checkpoint::start();
        cp.set(0, self.next_offset);
        Ok(cp)
    }

    fn replay_segments(
        &mut self,
        idx: usize,
        from: u64,
        buf: &mut Vec<u8>,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<(), LogError> {
        for i in idx..self.segments.len() {
            let seg = self.segments[i];
            if seg.records == 0 || seg.first + seg.records <= from {
                continue;
            }
            let name = self.storage.describe(seg.first);
            let mut file = self.storage.open(seg.first)?;
            let mut on_record = |n: u64, pos: u64, payload: &[u8]| {
                let offset = seg.first + n;
                if offset < from {
                    return Ok(());
                }
                let cmd = codec::decode(payload).map_err(|e| LogError::Corrupt {
                    location: location(&name, pos, offset),
                    reason: format!("record does not decode: {e}"),
                })?;
                visit(&cmd);
                Ok(())
            };
            let scan = frame::scan(&mut file, HEADER_LEN, seg.bytes, buf, &mut on_record)?;
            if let Some(stop) = scan.stop {
                return Err(LogError::Corrupt {
                    location: location(&name, stop.pos, seg.first + scan.records),
                    reason: format!("{} (damaged since the journal was opened)", stop.reason),
                });
            }
            if scan.records != seg.records {
                return Err(LogError::Corrupt {
                    location: location(&name, scan.end, seg.first + scan.records),
                    reason: format!("expected {} records, found {}", seg.records, scan.records),
                });
            }
        }
        Ok(())
    }
}

/// `segment byte N (record offset M)`: where a damaged record is.
pub(crate) fn location(segment: &str, byte: u64, offset: u64) -> String {
    format!("{segment} byte {byte} (record offset {offset})")
}

impl<S: Storage> OrderLog for Journal<S> {
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.append_batch(batch)
    }

    fn replay(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        self.replay_from(from, visit)
    }

    fn position(&self) -> Option<Checkpoint> {
        let mut cp = Checkpoint::start();
        cp.set(0, self.next_offset);
        Some(cp)
    }
}

impl<S: Storage> Drop for Journal<S> {
    /// Best effort: under the relaxed policies, push written records to disk on a clean
    /// shutdown. A failed journal is left alone (no fsync retry).
    fn drop(&mut self) {
        if self.failed.is_none()
            && self.durable_offset != self.next_offset
            && let Err(e) = self.active.sync_data()
        {
            tracing::warn!(error = %e, "journal fsync on close failed");
        }
    }
}
