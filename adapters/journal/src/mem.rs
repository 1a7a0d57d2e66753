//! A fault-injecting in-memory [`Storage`] for crash-consistency tests.
//!
//! Each file keeps two images: what the OS shows (`data`, every write and truncate) and what
//! is on the platter (`durable`, updated by a successful `sync_data`). A [`crash`] replaces
//! every file by its durable image, optionally keeping a random prefix of the unsynced
//! bytes, a zero-filled run or garbage, the shapes real torn tails take. Files whose
//! directory entry was never synced may vanish.
//!
//! A failed fsync models Linux after writeback errors ("fsyncgate"): the dirty bytes are
//! marked clean without reaching the disk, so a later fsync that *succeeds* still leaves zeros
//! where they were. A journal that retries fsync and carries on is caught by that.
//!
//! Handles opened before a crash are dead afterwards (every call fails), like the file
//! descriptors of a process that did not survive.
//!
//! [`crash`]: MemStorage::crash

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{SegmentFile, Storage, segment_name};

/// What survives of unsynced bytes in a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced bytes survive.
    DropUnsynced,
    /// A random prefix of the unsynced bytes survives.
    KeepPrefix,
    /// The file keeps a random unsynced length, but its data reads as zeros.
    ZeroFill,
    /// A random prefix survives, followed by a few random bytes.
    Garbage,
}

#[derive(Debug, Default)]
struct MemFileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes whose writeback failed: a later successful sync leaves zeros there on disk.
    lost: Option<Range<usize>>,
}

#[derive(Debug)]
struct State {
    files: BTreeMap<u64, MemFileState>,
    /// Segments whose directory entry is durable.
    dir_durable: BTreeSet<u64>,
    epoch: u64,
    rng: u64,
    /// Fail the write that would take the count of bytes written past this many.
    write_fault: Option<(usize, Option<CrashMode>)>,
    /// Fail (or crash at) the next `sync_data`/`sync_dir`.
    sync_fault: Option<Option<CrashMode>>,
    syncs: u64,
    crashes: u64,
}

impl State {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_rand() % n as u64) as usize
        }
    }

    fn crash(&mut self, mode: CrashMode) {
        self.epoch += 1;
        self.crashes += 1;
        self.write_fault = None;
        self.sync_fault = None;
        let names: Vec<u64> = self.files.keys().copied().collect();
        for name in names {
            if !self.dir_durable.contains(&name)
                && (mode == CrashMode::DropUnsynced || self.below(2) == 0)
            {
                self.files.remove(&name);
                continue;
            }
            let (durable, data) = {
                let f = &self.files[&name];
                (f.durable.clone(), f.data.clone())
            };
            let extra = if data.len() > durable.len() && data.starts_with(&durable) {
                data.len() - durable.len()
            } else {
                0
            };
            let mut image = durable;
            let dl = image.len();
            // Only a file with unsynced appends can come back longer than its durable image.
            let mode = if extra == 0 {
                CrashMode::DropUnsynced
            } else {
                mode
            };
            match mode {
                CrashMode::DropUnsynced => {}
                CrashMode::KeepPrefix => {
                    let k = self.below(extra + 1);
                    image.extend_from_slice(&data[dl..dl + k]);
                }
                CrashMode::ZeroFill => {
                    let k = self.below(extra + 1);
                    image.resize(dl + k, 0);
                }
                CrashMode::Garbage => {
                    let k = self.below(extra + 1);
                    image.extend_from_slice(&data[dl..dl + k]);
                    let g = 1 + self.below(48);
                    for _ in 0..g {
                        let b = self.next_rand() as u8;
                        image.push(b);
                    }
                }
            }
            let f = self.files.get_mut(&name).expect("listed");
            f.data = image.clone();
            f.durable = image;
            f.lost = None;
        }
    }
}

/// The in-memory, fault-injecting backend. Clones share the same files, so a test keeps one
/// handle to inject faults and inspect bytes while the journal owns another.
#[derive(Clone, Debug)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

fn dead() -> io::Error {
    io::Error::other("handle from before a crash")
}

impl MemStorage {
    /// An empty directory; `seed` drives the torn-tail randomness.
    pub fn new(seed: u64) -> MemStorage {
        MemStorage {
            state: Arc::new(Mutex::new(State {
                files: BTreeMap::new(),
                dir_durable: BTreeSet::new(),
                epoch: 0,
                rng: seed | 1,
                write_fault: None,
                sync_fault: None,
                syncs: 0,
                crashes: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next write fails after writing `k` more bytes (a short write).
    pub fn fail_write_after(&self, k: usize) {
        self.lock().write_fault = Some((k, None));
    }

    /// The machine crashes once `k` more bytes have been written (mid-write).
    pub fn crash_after_bytes(&self, k: usize, mode: CrashMode) {
        self.lock().write_fault = Some((k, Some(mode)));
    }

    /// The next fsync (file or directory) fails, losing the dirty bytes (fsyncgate).
    pub fn fail_next_sync(&self) {
        self.lock().sync_fault = Some(None);
    }

    /// The machine crashes when the next fsync is issued (before it completes).
    pub fn crash_at_next_sync(&self, mode: CrashMode) {
        self.lock().sync_fault = Some(Some(mode));
    }

    /// Crashes now: every file reverts to its durable image (plus what `mode` keeps).
    pub fn crash(&self, mode: CrashMode) {
        self.lock().crash(mode);
    }

    /// Disarms pending faults.
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.write_fault = None;
        s.sync_fault = None;
    }

    /// First offsets of the segments present.
    pub fn segments(&self) -> Vec<u64> {
        self.lock().files.keys().copied().collect()
    }

    /// What the OS shows of a segment.
    pub fn bytes(&self, first: u64) -> Option<Vec<u8>> {
        self.lock().files.get(&first).map(|f| f.data.clone())
    }

    /// XORs `mask` into byte `pos` of a segment, in both images (bit rot on disk).
    pub fn corrupt(&self, first: u64, pos: usize, mask: u8) {
        let mut s = self.lock();
        let f = s.files.get_mut(&first).expect("segment exists");
        f.data[pos] ^= mask;
        if let Some(b) = f.durable.get_mut(pos) {
            *b ^= mask;
        }
    }

    /// Number of crashes so far (injected or requested).
    pub fn crashes(&self) -> u64 {
        self.lock().crashes
    }

    /// Number of fsyncs issued so far (successful or not).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

impl Storage for MemStorage {
    type File = MemFile;

    fn list(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.segments())
    }

    fn create(&mut self, first: u64) -> io::Result<MemFile> {
        let mut s = self.lock();
        if s.files.contains_key(&first) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                segment_name(first),
            ));
        }
        s.files.insert(first, MemFileState::default());
        Ok(MemFile {
            state: self.state.clone(),
            first,
            epoch: s.epoch,
        })
    }

    fn open(&mut self, first: u64) -> io::Result<MemFile> {
        let s = self.lock();
        if !s.files.contains_key(&first) {
            return Err(io::Error::new(io::ErrorKind::NotFound, segment_name(first)));
        }
        Ok(MemFile {
            state: self.state.clone(),
            first,
            epoch: s.epoch,
        })
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut s = self.lock();
        s.syncs += 1;
        match s.sync_fault.take() {
            Some(None) => return Err(io::Error::other("injected directory fsync failure")),
            Some(Some(mode)) => {
                s.crash(mode);
                return Err(dead());
            }
            None => {}
        }
        let names: Vec<u64> = s.files.keys().copied().collect();
        s.dir_durable.extend(names);
        Ok(())
    }

    fn describe(&self, first: u64) -> String {
        format!("mem:{}", segment_name(first))
    }
}

/// A handle on one in-memory segment.
#[derive(Debug)]
pub struct MemFile {
    state: Arc<Mutex<State>>,
    first: u64,
    epoch: u64,
}

impl MemFile {
    fn with<R>(&mut self, f: impl FnOnce(&mut State, u64) -> io::Result<R>) -> io::Result<R> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.epoch != self.epoch || !s.files.contains_key(&self.first) {
            return Err(dead());
        }
        f(&mut s, self.first)
    }
}

impl SegmentFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.with(|s, first| {
            let mut n = buf.len();
            let mut fault = None;
            if let Some((k, mode)) = s.write_fault {
                if k < buf.len() {
                    n = k;
                    fault = Some(mode);
                    s.write_fault = None;
                } else {
                    s.write_fault = Some((k - buf.len(), mode));
                }
            }
            s.files
                .get_mut(&first)
                .expect("checked")
                .data
                .extend_from_slice(&buf[..n]);
            match fault {
                None => Ok(()),
                Some(None) => Err(io::Error::other(format!(
                    "injected short write after {n} bytes"
                ))),
                Some(Some(mode)) => {
                    s.crash(mode);
                    Err(dead())
                }
            }
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with(|s, first| {
            s.syncs += 1;
            match s.sync_fault.take() {
                Some(None) => {
                    let f = s.files.get_mut(&first).expect("checked");
                    let from = common_prefix(&f.durable, &f.data);
                    f.lost = Some(from..f.data.len());
                    return Err(io::Error::other("injected fsync failure"));
                }
                Some(Some(mode)) => {
                    s.crash(mode);
                    return Err(dead());
                }
                None => {}
            }
            let f = s.files.get_mut(&first).expect("checked");
            f.durable = f.data.clone();
            if let Some(lost) = f.lost.take() {
                let end = lost.end.min(f.durable.len());
                for b in &mut f.durable[lost.start.min(end)..end] {
                    *b = 0;
                }
            }
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(|s, first| {
            s.files
                .get_mut(&first)
                .expect("checked")
                .data
                .resize(len as usize, 0);
            Ok(())
        })
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|s, first| {
            let data = &s.files[&first].data;
            let pos = (pos as usize).min(data.len());
            let n = buf.len().min(data.len() - pos);
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            Ok(n)
        })
    }

    fn len(&mut self) -> io::Result<u64> {
        self.with(|s, first| Ok(s.files[&first].data.len() as u64))
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_bytes() {
        let mut st = MemStorage::new(7);
        let mut f = st.create(0).unwrap();
        f.write_all(b"hello").unwrap();
        f.sync_data().unwrap();
        st.sync_dir().unwrap();
        f.write_all(b" world").unwrap();
        st.crash(CrashMode::DropUnsynced);
        assert_eq!(st.bytes(0).unwrap(), b"hello");
        assert!(f.write_all(b"x").is_err(), "pre-crash handle is dead");
    }

    #[test]
    fn unsynced_directory_entry_may_vanish() {
        let mut st = MemStorage::new(1);
        let mut f = st.create(5).unwrap();
        f.write_all(b"abc").unwrap();
        f.sync_data().unwrap();
        st.crash(CrashMode::DropUnsynced);
        assert!(st.segments().is_empty());
    }

    #[test]
    fn short_write_and_fsyncgate() {
        let mut st = MemStorage::new(3);
        let mut f = st.create(0).unwrap();
        st.sync_dir().unwrap();
        st.fail_write_after(2);
        assert!(f.write_all(b"abcd").is_err());
        assert_eq!(st.bytes(0).unwrap(), b"ab");
        st.fail_next_sync();
        assert!(f.sync_data().is_err());
        // Retrying "succeeds" but the lost bytes never reached the disk.
        f.sync_data().unwrap();
        st.crash(CrashMode::DropUnsynced);
        assert_eq!(st.bytes(0).unwrap(), [0, 0]);
    }
}
