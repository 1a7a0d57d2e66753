//! Snapshot files: the processor's state at a log position, so a restart replays only the
//! log tail after it (ARCHITECTURE.md §9).
//!
//! ## Layout of `<dir>/snapshots/<seq, 20 digits>.snap`
//! ```text
//! magic "OMSSNAPF" | version u16 | seq u64 | applied u64 | state_hash u64
//! | partitions u16 | (partition u32, next offset u64)*      -- the log checkpoint
//! | engine_len u64 | engine bytes                            -- core's Engine::snapshot
//! | crc32 u32                                               -- of everything before it
//! ```
//! Little-endian throughout. The engine image carries its own magic, version and CRC too.
//!
//! Version 1 also carried every live idempotency answer (~500 bytes each, 534 MB at 1 M
//! orders, rewritten by every snapshot). Since version 2 the answers live in their own
//! append-only store ([`crate::answers`]), which is fsynced before each snapshot, so a
//! snapshot holds the engine only; a version 1 file is refused and start-up replays the log.
//!
//! ## Crash safety
//! A snapshot is written to `<seq>.tmp`, fsynced, renamed to `<seq>.snap` and the directory
//! fsynced, so a `.snap` name only ever points at a whole file. A crash mid-write leaves a
//! `.tmp` that is ignored (and removed by the next write). Reading checks the length and the
//! CRC; a damaged newest snapshot is reported and the previous one is used. The newest
//! `keep` snapshots are kept.
//!
//! ## Journal retention
//! [`remove_segments_before`] deletes (or moves to `journal/archive/`) the segments that lie
//! wholly before an offset: the caller passes the checkpoint of the *oldest* kept snapshot,
//! so every kept snapshot can still be completed by the log tail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use oms_core::ports::Checkpoint;
use thiserror::Error;

use crate::storage::segment_name;

const MAGIC: &[u8; 8] = b"OMSSNAPF";
/// Current snapshot file layout version.
pub const SNAPSHOT_FILE_VERSION: u16 = 2;

/// A snapshot as written and read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotImage {
    /// Increasing number of the snapshot (names the file).
    pub seq: u64,
    /// Commands the processor had applied when it was taken (informational).
    pub applied: u64,
    /// `Engine::state_hash` at the snapshot.
    pub state_hash: u64,
    /// Where the log tail starts.
    pub checkpoint: Checkpoint,
    /// `Engine::snapshot` bytes.
    pub engine: Vec<u8>,
}

/// Why a snapshot file cannot be used.
#[derive(Debug, Error)]
pub enum SnapshotFileError {
    #[error("not an oms snapshot file")]
    BadMagic,
    #[error("unsupported snapshot file version {0}")]
    Version(u16),
    #[error("snapshot file truncated")]
    Truncated,
    #[error("snapshot file checksum mismatch")]
    Checksum,
    #[error("snapshot file I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The snapshot directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
}

fn snap_name(seq: u64) -> String {
    format!("{seq:020}.snap")
}

impl SnapshotStore {
    /// Opens (creating if needed) `dir`, keeping the newest `keep` snapshots (at least 1).
    pub fn open(dir: &Path, keep: usize) -> io::Result<SnapshotStore> {
        fs::create_dir_all(dir)?;
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sequence numbers of the `.snap` files present, newest first.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".snap")
                && stem.len() == 20
                && let Ok(seq) = stem.parse::<u64>()
            {
                out.push(seq);
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        Ok(out)
    }

    /// Path of snapshot `seq`.
    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(snap_name(seq))
    }

    /// Reads and verifies snapshot `seq`.
    pub fn read(&self, seq: u64) -> Result<SnapshotImage, SnapshotFileError> {
        decode(&fs::read(self.path(seq))?)
    }

    /// Writes `img` crash-safely (temp file, fsync, rename, directory fsync), then removes
    /// snapshots beyond the newest `keep` and stale temp files. Returns the file size.
    pub fn write(&self, img: &SnapshotImage) -> io::Result<u64> {
        let tmp = self.dir.join(format!("{:020}.tmp", img.seq));
        let size = {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut w = CrcWriter {
                inner: BufWriter::with_capacity(1 << 20, file),
                crc: crc32fast::Hasher::new(),
                len: 0,
            };
            encode_into(img, &mut w)?;
            let crc = w.crc.clone().finalize();
            w.inner.write_all(&crc.to_le_bytes())?;
            let file = w.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            w.len + 4
        };
        fs::rename(&tmp, self.path(img.seq))?;
        File::open(&self.dir)?.sync_all()?;
        self.prune()?;
        Ok(size)
    }

    /// Removes snapshots beyond the newest `keep` and temp files left by a crash.
    fn prune(&self) -> io::Result<()> {
        for seq in self.list()?.into_iter().skip(self.keep) {
            fs::remove_file(self.path(seq))?;
        }
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".tmp"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn encode_into(img: &SnapshotImage, w: &mut impl Write) -> io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&SNAPSHOT_FILE_VERSION.to_le_bytes())?;
    w.write_all(&img.seq.to_le_bytes())?;
    w.write_all(&img.applied.to_le_bytes())?;
    w.write_all(&img.state_hash.to_le_bytes())?;
    w.write_all(&(img.checkpoint.next.len() as u16).to_le_bytes())?;
    for (p, o) in &img.checkpoint.next {
        w.write_all(&p.to_le_bytes())?;
        w.write_all(&o.to_le_bytes())?;
    }
    w.write_all(&(img.engine.len() as u64).to_le_bytes())?;
    w.write_all(&img.engine)?;
    Ok(())
}

/// The file bytes of `img` (tests and benchmarks; [`SnapshotStore::write`] streams).
pub fn encode(img: &SnapshotImage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + img.engine.len());
    encode_into(img, &mut out).expect("writing to a Vec cannot fail");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Rd<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotFileError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(SnapshotFileError::Truncated)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, SnapshotFileError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, SnapshotFileError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, SnapshotFileError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn blob(&mut self) -> Result<Vec<u8>, SnapshotFileError> {
        let n = usize::try_from(self.u64()?).map_err(|_| SnapshotFileError::Truncated)?;
        Ok(self.take(n)?.to_vec())
    }
}

/// Verifies and parses snapshot file bytes.
pub fn decode(bytes: &[u8]) -> Result<SnapshotImage, SnapshotFileError> {
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            SnapshotFileError::Truncated
        } else {
            SnapshotFileError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotFileError::BadMagic);
    }
    if bytes.len() < 8 + 2 + 4 {
        return Err(SnapshotFileError::Truncated);
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(data) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err(SnapshotFileError::Checksum);
    }
    let mut r = Rd { buf: data, pos: 8 };
    let version = r.u16()?;
    if version != SNAPSHOT_FILE_VERSION {
        return Err(SnapshotFileError::Version(version));
    }
    let seq = r.u64()?;
    let applied = r.u64()?;
    let state_hash = r.u64()?;
    let mut checkpoint = Checkpoint::start();
    for _ in 0..r.u16()? {
        let p = r.u32()?;
        let o = r.u64()?;
        checkpoint.set(p, o);
    }
    let engine = r.blob()?;
    if r.pos != data.len() {
        return Err(SnapshotFileError::Truncated);
    }
    Ok(SnapshotImage {
        seq,
        applied,
        state_hash,
        checkpoint,
        engine,
    })
}

/// What to do with journal segments that no kept snapshot needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep every segment.
    Keep,
    /// Delete them.
    Delete,
    /// Move them to `<root>/journal/archive/`.
    Archive,
}

/// Deletes or archives the segments of the journal in `<root>/journal/` that end at or
/// before `offset` (never the last segment, which may be active). Returns the first offsets
/// of the segments removed. Safe while the journal is open: it only reads the active file.
pub fn remove_segments_before(root: &Path, offset: u64, mode: Retention) -> io::Result<Vec<u64>> {
    if mode == Retention::Keep {
        return Ok(Vec::new());
    }
    let dir = root.join("journal");
    let mut firsts = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    let mut removed = Vec::new();
    // A segment ends where the next one starts.
    for pair in firsts.windows(2) {
        let (first, next_first) = (pair[0], pair[1]);
        if next_first > offset {
            break;
        }
        let path = dir.join(segment_name(first));
        match mode {
            Retention::Delete => fs::remove_file(&path)?,
            Retention::Archive => {
                let archive = dir.join("archive");
                fs::create_dir_all(&archive)?;
                fs::rename(&path, archive.join(segment_name(first)))?;
            }
            Retention::Keep => {}
        }
        removed.push(first);
    }
    if !removed.is_empty() {
        File::open(&dir)?.sync_all()?;
    }
    Ok(removed)
}
