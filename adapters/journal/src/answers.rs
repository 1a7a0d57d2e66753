//! The answer store: every idempotency answer, as the exact bytes sent, on disk for its TTL.
//!
//! Keeping answers in memory cost ~1 KB per order for 24 h (millions of orders at a steady
//! rate). Here they are appended to segment files and read back only when a client retries,
//! so memory holds just the 16-byte index entry (`oms_core::idempotency`). The store is
//! independent of the order log: journal retention may delete log segments long before the
//! answers in them expire.
//!
//! ## Layout of `<dir>/<segment, 10 digits>.{body,keys}`
//! ```text
//! .body: (len u32 | crc32 u32 | fingerprint u64 | written_ms u64 | status u16
//!         | account_len u8 | key_len u8 | account | key | body bytes)*
//! .keys: (crc32 u32 | body offset u32 | written_ms u64 | account_len u8 | key_len u8
//!         | account | key)*
//! ```
//! Little-endian; each CRC covers the bytes after it. `.keys` repeats the header of each
//! `.body` record without the body, so a start reads ~40 bytes per live answer instead of the
//! whole answers. A location is `segment << 32 | offset`.
//!
//! ## Crash safety and expiry
//! A process writes only to a segment it created (a start opens a new one), body record
//! before key record; a torn tail of either is ignored on the next start (the key record or
//! the body CRC fails). [`AnswerStore::sync`] fsyncs both files: the snapshot writer calls it
//! before a snapshot, so every answer of a command up to the snapshot's checkpoint is durable,
//! and answers of the log tail after it are re-rendered from the log at start. Segments
//! rotate every [`ROTATE_MS`] (or 1 GiB) and are deleted once their newest answer expired.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use oms_core::idempotency::{AnswerLoc, AnswerSource, StoredAnswer};
use oms_core::ports::{IdemKey, StoredResponse};
use oms_core::{AccountId, IdempotencyKey};

/// A new segment starts after this long (so expiry deletes ~1/96 of a day at a time).
pub const ROTATE_MS: u64 = 15 * 60 * 1000;
/// ... or once its body file reaches this size (offsets are 32-bit).
pub const ROTATE_BYTES: u64 = 1 << 30;

/// Appended bytes are written out once this many are buffered, at the latest.
const FLUSH_BYTES: usize = 1 << 20;

const BODY_HEADER: usize = 4 + 4 + 8 + 8 + 2 + 1 + 1;
const KEYS_HEADER: usize = 4 + 4 + 8 + 1 + 1;

fn loc(seg: u32, off: u32) -> AnswerLoc {
    (u64::from(seg) << 32) | u64::from(off)
}

fn split(loc: AnswerLoc) -> (u32, u32) {
    ((loc >> 32) as u32, loc as u32)
}

fn file(dir: &Path, seg: u32, ext: &str) -> PathBuf {
    dir.join(format!("{seg:010}.{ext}"))
}

/// Reads answers back (shared by the writer and the idempotency stage).
#[derive(Clone, Default)]
pub struct AnswerReader {
    segments: Arc<RwLock<BTreeMap<u32, Arc<File>>>>,
    /// Bumped whenever a segment is deleted (the index then purges its stale entries).
    deletions: Arc<AtomicU64>,
}

impl AnswerReader {
    /// How many segments were deleted so far.
    pub fn deletions(&self) -> u64 {
        self.deletions.load(Ordering::Acquire)
    }

    fn file(&self, seg: u32) -> Option<Arc<File>> {
        let g = self.segments.read().unwrap_or_else(|e| e.into_inner());
        g.get(&seg).cloned()
    }

    fn read_at(&self, l: AnswerLoc) -> Option<StoredAnswer> {
        let (seg, off) = split(l);
        let f = self.file(seg)?;
        let mut buf = vec![0u8; 1024];
        let n = read_full(&f, &mut buf, u64::from(off)).ok()?;
        let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        if len < BODY_HEADER {
            return None;
        }
        if len > n {
            buf.resize(len, 0);
            if read_full(&f, &mut buf[n..], u64::from(off) + n as u64).ok()? < len - n {
                return None;
            }
        }
        decode_body(buf.get(..len)?)
    }
}

fn read_full(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn decode_body(rec: &[u8]) -> Option<StoredAnswer> {
    let crc = u32::from_le_bytes(rec[4..8].try_into().ok()?);
    if crc32fast::hash(&rec[8..]) != crc {
        return None;
    }
    let fingerprint = u64::from_le_bytes(rec[8..16].try_into().ok()?);
    let written_ms = u64::from_le_bytes(rec[16..24].try_into().ok()?);
    let status = u16::from_le_bytes(rec[24..26].try_into().ok()?);
    let (al, kl) = (rec[26] as usize, rec[27] as usize);
    let key = decode_key(rec.get(BODY_HEADER..BODY_HEADER + al + kl)?, al)?;
    Some(StoredAnswer {
        key,
        fingerprint,
        written_ms,
        response: StoredResponse {
            status,
            body: rec[BODY_HEADER + al + kl..].to_vec(),
        },
    })
}

fn decode_key(b: &[u8], al: usize) -> Option<IdemKey> {
    Some(IdemKey {
        account: AccountId::new(std::str::from_utf8(&b[..al]).ok()?).ok()?,
        key: IdempotencyKey::new(std::str::from_utf8(&b[al..]).ok()?).ok()?,
    })
}

impl AnswerSource for AnswerReader {
    fn answer(&self, l: AnswerLoc) -> Option<StoredAnswer> {
        self.read_at(l)
    }

    fn is_live(&self, l: AnswerLoc) -> bool {
        let g = self.segments.read().unwrap_or_else(|e| e.into_inner());
        g.contains_key(&split(l).0)
    }
}

/// The segment being written.
struct Writing {
    seg: u32,
    body: File,
    keys: File,
    /// Bytes in `body` plus `pending_body`.
    body_len: u64,
    opened_ms: u64,
    pending_body: Vec<u8>,
    pending_keys: Vec<u8>,
    dirty: bool,
}

/// The writer (one per process; see the module docs).
pub struct AnswerStore {
    dir: PathBuf,
    ttl_ms: u64,
    reader: AnswerReader,
    /// Newest `written_ms` of every segment present.
    newest: BTreeMap<u32, u64>,
    cur: Option<Writing>,
    next_seg: u32,
}

/// Called by [`AnswerStore::open`] with each live answer: account bytes, key bytes, its
/// location, and a reader that can read it back.
pub type Found<'a> = dyn FnMut(&[u8], &[u8], AnswerLoc, &AnswerReader) + 'a;

/// What [`AnswerStore::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub segments: usize,
    pub answers: usize,
    pub expired_segments_deleted: usize,
}

impl AnswerStore {
    /// Opens (creating) `dir`. `reserve` hears how many answers there are at most, then
    /// every live answer is passed to `found` (account and key bytes, location, a reader
    /// that can read it back), oldest first. Segments whose answers all expired by `now_ms`
    /// are deleted.
    pub fn open(
        dir: &Path,
        ttl_ms: u64,
        now_ms: u64,
        reserve: &mut dyn FnMut(usize),
        found: &mut Found<'_>,
    ) -> io::Result<(AnswerStore, Loaded)> {
        fs::create_dir_all(dir)?;
        let mut segs = Vec::new();
        for e in fs::read_dir(dir)? {
            let name = e?.file_name();
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".keys"))
                && let Ok(seg) = stem.parse::<u32>()
            {
                segs.push(seg);
            }
        }
        segs.sort_unstable();
        let mut store = AnswerStore {
            dir: dir.to_path_buf(),
            ttl_ms,
            reader: AnswerReader::default(),
            newest: BTreeMap::new(),
            cur: None,
            next_seg: segs.last().map_or(1, |s| s + 1),
        };
        let mut files = Vec::with_capacity(segs.len());
        for seg in segs {
            files.push((seg, fs::read(file(dir, seg, "keys"))?));
        }
        // Records of all files, counted without checking them: the index is sized once.
        let mut records = 0;
        for (_, keys) in &files {
            let mut pos = 0;
            while let Some(h) = keys.get(pos..pos + KEYS_HEADER) {
                pos += KEYS_HEADER + h[16] as usize + h[17] as usize;
                records += 1;
            }
        }
        reserve(records);
        let mut loaded = Loaded::default();
        for (seg, keys) in files {
            let body = match File::open(file(dir, seg, "body")) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let _ = fs::remove_file(file(dir, seg, "keys"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let body_len = body.metadata()?.len();
            store.register(seg, body, 0);
            let mut newest = 0u64;
            let mut live = 0usize;
            let mut pos = 0usize;
            while let Some(h) = keys.get(pos..pos + KEYS_HEADER) {
                let (al, kl) = (h[16] as usize, h[17] as usize);
                let Some(rec) = keys.get(pos..pos + KEYS_HEADER + al + kl) else {
                    break;
                };
                if crc32fast::hash(&rec[4..]) != u32::from_le_bytes(rec[..4].try_into().unwrap()) {
                    break;
                }
                pos += rec.len();
                let off = u32::from_le_bytes(rec[4..8].try_into().unwrap());
                let written = u64::from_le_bytes(rec[8..16].try_into().unwrap());
                newest = newest.max(written);
                if written.saturating_add(ttl_ms) > now_ms && u64::from(off) < body_len {
                    live += 1;
                    let (account, key) = rec[KEYS_HEADER..].split_at(al);
                    found(account, key, loc(seg, off), &store.reader);
                }
            }
            store.newest.insert(seg, newest);
            if newest.saturating_add(ttl_ms) <= now_ms {
                // Nothing in it was live, so nothing was reported.
                store.unregister(&[seg]);
                loaded.expired_segments_deleted += 1;
                continue;
            }
            loaded.segments += 1;
            loaded.answers += live;
        }
        Ok((store, loaded))
    }

    /// A reader for other threads.
    pub fn reader(&self) -> AnswerReader {
        self.reader.clone()
    }

    fn register(&mut self, seg: u32, body: File, newest: u64) {
        self.newest.insert(seg, newest);
        let mut g = self
            .reader
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner());
        g.insert(seg, Arc::new(body));
    }

    /// Forgets and deletes segments (readers see them gone at once).
    fn unregister(&mut self, segs: &[u32]) {
        {
            let mut g = self
                .reader
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for s in segs {
                g.remove(s);
            }
        }
        for s in segs {
            self.newest.remove(s);
            self.delete_files(*s);
        }
        self.reader.deletions.fetch_add(1, Ordering::AcqRel);
    }

    fn delete_files(&self, seg: u32) {
        for ext in ["body", "keys"] {
            let _ = fs::remove_file(file(&self.dir, seg, ext));
        }
    }

    /// Appends one answer; readable through [`AnswerStore`] at once, through an
    /// [`AnswerReader`] after [`AnswerStore::flush`].
    pub fn append(
        &mut self,
        key: &IdemKey,
        fingerprint: u64,
        written_ms: u64,
        response: &StoredResponse,
    ) -> io::Result<AnswerLoc> {
        let (a, k) = (key.account.as_str().as_bytes(), key.key.as_bytes());
        let len = BODY_HEADER + a.len() + k.len() + response.body.len();
        let rotate = self.cur.as_ref().is_none_or(|w| {
            w.body_len + len as u64 > ROTATE_BYTES
                || written_ms.saturating_sub(w.opened_ms) >= ROTATE_MS
        });
        if rotate {
            self.rotate(written_ms)?;
        }
        let w = self.cur.as_mut().expect("a segment is open after rotate");
        let off = w.body_len as u32;
        let b = &mut w.pending_body;
        let start = b.len();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&fingerprint.to_le_bytes());
        b.extend_from_slice(&written_ms.to_le_bytes());
        b.extend_from_slice(&response.status.to_le_bytes());
        b.extend_from_slice(&[a.len() as u8, k.len() as u8]);
        b.extend_from_slice(a);
        b.extend_from_slice(k);
        b.extend_from_slice(&response.body);
        let crc = crc32fast::hash(&b[start + 8..]);
        b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let kb = &mut w.pending_keys;
        let start = kb.len();
        kb.extend_from_slice(&[0; 4]);
        kb.extend_from_slice(&off.to_le_bytes());
        kb.extend_from_slice(&written_ms.to_le_bytes());
        kb.extend_from_slice(&[a.len() as u8, k.len() as u8]);
        kb.extend_from_slice(a);
        kb.extend_from_slice(k);
        let crc = crc32fast::hash(&kb[start + 4..]);
        kb[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        w.body_len += len as u64;
        w.dirty = true;
        let (full, seg) = (w.pending_body.len() >= FLUSH_BYTES, w.seg);
        let n = self.newest.entry(seg).or_default();
        *n = (*n).max(written_ms);
        if full {
            // Bounded buffers however many answers come between flushes (a long replay).
            self.flush()?;
        }
        Ok(loc(seg, off))
    }

    /// Writes what was appended to the files (page cache): one write per file.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(w) = self.cur.as_mut() {
            if !w.pending_body.is_empty() {
                w.body.write_all(&w.pending_body)?;
                w.pending_body.clear();
            }
            if !w.pending_keys.is_empty() {
                w.keys.write_all(&w.pending_keys)?;
                w.pending_keys.clear();
            }
        }
        Ok(())
    }

    /// [`flush`](Self::flush), then fsync: every answer appended so far survives a crash.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(w) = self.cur.as_mut()
            && w.dirty
        {
            w.body.sync_data()?;
            w.keys.sync_data()?;
            w.dirty = false;
        }
        Ok(())
    }

    fn rotate(&mut self, now_ms: u64) -> io::Result<()> {
        self.sync()?;
        let seg = self.next_seg;
        self.next_seg += 1;
        let open = |ext| {
            OpenOptions::new()
                .create_new(true)
                .read(true)
                .append(true)
                .open(file(&self.dir, seg, ext))
        };
        let (body, keys) = (open("body")?, open("keys")?);
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.register(seg, body.try_clone()?, now_ms);
        self.cur = Some(Writing {
            seg,
            body,
            keys,
            body_len: 0,
            opened_ms: now_ms,
            pending_body: Vec::with_capacity(1 << 16),
            pending_keys: Vec::with_capacity(1 << 14),
            dirty: false,
        });
        Ok(())
    }

    /// Deletes the segments (other than the one being written) whose newest answer expired;
    /// returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let cur = self.cur.as_ref().map(|w| w.seg);
        let gone: Vec<u32> = self
            .newest
            .iter()
            .filter(|(s, n)| Some(**s) != cur && n.saturating_add(self.ttl_ms) <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        if gone.is_empty() {
            return 0;
        }
        self.unregister(&gone);
        gone.len()
    }

    /// Segments present.
    pub fn segments(&self) -> usize {
        self.newest.len()
    }
}

impl AnswerSource for AnswerStore {
    fn answer(&self, l: AnswerLoc) -> Option<StoredAnswer> {
        let (seg, off) = split(l);
        if let Some(w) = self.cur.as_ref()
            && w.seg == seg
        {
            let flushed = w.body_len - w.pending_body.len() as u64;
            if u64::from(off) >= flushed {
                let at = (u64::from(off) - flushed) as usize;
                let len = u32::from_le_bytes(w.pending_body.get(at..at + 4)?.try_into().ok()?);
                return decode_body(w.pending_body.get(at..at + len as usize)?);
            }
        }
        self.reader.read_at(l)
    }

    fn is_live(&self, l: AnswerLoc) -> bool {
        self.reader.is_live(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 86_400_000;

    fn key(a: &str, k: &str) -> IdemKey {
        IdemKey {
            account: AccountId::new(a).unwrap(),
            key: IdempotencyKey::new(k).unwrap(),
        }
    }

    fn resp(status: u16, body: &str) -> StoredResponse {
        StoredResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn open(dir: &Path, now: u64) -> (AnswerStore, Vec<(IdemKey, AnswerLoc)>) {
        let mut found = Vec::new();
        let (s, _) = AnswerStore::open(dir, TTL, now, &mut |_| {}, &mut |a, k, l, _| {
            found.push((decode_key(&[a, k].concat(), a.len()).unwrap(), l))
        })
        .unwrap();
        (s, found)
    }

    #[test]
    fn answers_read_back_byte_identical_before_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, found) = open(dir.path(), 1_000);
        assert!(found.is_empty());
        let long = "x".repeat(5000);
        let l1 = s
            .append(&key("a", "k1"), 7, 1_000, &resp(201, "{\"a\":1}"))
            .unwrap();
        let l2 = s
            .append(&key("b", "k2"), 8, 1_001, &resp(422, &long))
            .unwrap();
        // Unflushed: only the writer sees them.
        assert_eq!(s.answer(l1).unwrap().response, resp(201, "{\"a\":1}"));
        let r = s.reader();
        assert!(r.answer(l1).is_none());
        s.flush().unwrap();
        let a2 = r.answer(l2).unwrap();
        assert_eq!(
            (a2.key, a2.fingerprint, a2.written_ms),
            (key("b", "k2"), 8, 1_001)
        );
        assert_eq!(a2.response, resp(422, &long));
        s.sync().unwrap();
        drop(s);
        let (s, found) = open(dir.path(), 2_000);
        assert_eq!(found, vec![(key("a", "k1"), l1), (key("b", "k2"), l2)]);
        assert_eq!(s.answer(l1).unwrap().response, resp(201, "{\"a\":1}"));
    }

    #[test]
    fn torn_tails_are_ignored_and_a_restart_writes_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path(), 0);
        let l1 = s.append(&key("a", "k1"), 1, 0, &resp(201, "one")).unwrap();
        let l2 = s.append(&key("a", "k2"), 2, 0, &resp(201, "two")).unwrap();
        s.flush().unwrap();
        drop(s);
        // Cut the last key record in half and the last body record by one byte.
        let (k, b) = (file(dir.path(), 1, "keys"), file(dir.path(), 1, "body"));
        let kl = fs::metadata(&k).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&k)
            .unwrap()
            .set_len(kl - 5)
            .unwrap();
        let bl = fs::metadata(&b).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&b)
            .unwrap()
            .set_len(bl - 1)
            .unwrap();
        let (mut s, found) = open(dir.path(), 1);
        assert_eq!(found, vec![(key("a", "k1"), l1)]);
        assert!(
            s.answer(l2).is_none(),
            "a torn body fails its length or CRC"
        );
        let l3 = s.append(&key("a", "k2"), 2, 1, &resp(201, "two")).unwrap();
        assert_eq!(split(l3).0, 2, "a start writes to a new segment");
        s.flush().unwrap();
        drop(s);
        let (_, found) = open(dir.path(), 2);
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn segments_rotate_and_expire_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path(), 0);
        let old = s.append(&key("a", "old"), 1, 0, &resp(201, "o")).unwrap();
        let young = s
            .append(&key("a", "new"), 1, ROTATE_MS, &resp(201, "n"))
            .unwrap();
        assert_ne!(split(old).0, split(young).0);
        s.flush().unwrap();
        let r = s.reader();
        assert_eq!(s.expire(TTL - 1), 0);
        assert_eq!(s.expire(TTL), 1);
        assert!(!r.is_live(old) && r.answer(old).is_none());
        assert!(r.is_live(young));
        assert_eq!(r.deletions(), 1);
        drop(s);
        let (s, found) = open(dir.path(), TTL + ROTATE_MS);
        assert!(found.is_empty(), "expired answers are not loaded");
        assert_eq!(s.segments(), 0, "and their segments are deleted");
    }
}
