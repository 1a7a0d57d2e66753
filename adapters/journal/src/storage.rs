//! The file backend the journal writes through.
//!
//! The journal never touches `std::fs` directly: it goes through [`Storage`] (the segment
//! directory) and [`SegmentFile`] (one segment). That seam exists for testing: the
//! [`MemStorage`](crate::mem::MemStorage) backend injects short writes, failed fsyncs and
//! crashes that drop or tear unsynced bytes, which real files cannot do on demand. The
//! operations are exactly what an append-only log needs and nothing more: append, fdatasync,
//! truncate, positional read, length.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One segment file, opened for reading and appending.
pub trait SegmentFile: Send {
    /// Appends all of `buf` at the end of the file (may have written a prefix on error).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends with zeros) to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Reads at `pos`; returns the bytes read (0 at end of file).
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Current length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&mut self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A directory of segments, each named by the offset of its first record.
pub trait Storage: Send {
    type File: SegmentFile;
    /// First offsets of the segments present, ascending.
    fn list(&mut self) -> io::Result<Vec<u64>>;
    /// Creates a new, empty segment (fails if it exists).
    fn create(&mut self, first: u64) -> io::Result<Self::File>;
    /// Opens an existing segment.
    fn open(&mut self, first: u64) -> io::Result<Self::File>;
    /// Makes the directory entries (created segments) durable.
    fn sync_dir(&mut self) -> io::Result<()>;
    /// Human-readable name of a segment, for error locations.
    fn describe(&self, first: u64) -> String;
}

/// File name of the segment starting at `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// Segments as real files in `<root>/journal/`, guarded by an exclusive lock on
/// `<root>/journal/LOCK` so two processes never append to the same journal.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    _lock: File,
}

impl FsStorage {
    /// Opens (creating if needed) `<root>/journal/` and takes its lock.
    pub fn open(root: &Path) -> io::Result<FsStorage> {
        let dir = root.join("journal");
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another process", dir.display()),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(FsStorage { dir, _lock: lock })
    }

    /// The segment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, first: u64) -> PathBuf {
        self.dir.join(segment_name(first))
    }
}

impl Storage for FsStorage {
    type File = FsFile;

    fn list(&mut self) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".log")
                && stem.len() == 20
                && let Ok(first) = stem.parse::<u64>()
            {
                out.push(first);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn create(&mut self, first: u64) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(self.path(first))?;
        Ok(FsFile { file })
    }

    fn open(&mut self, first: u64) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.path(first))?;
        Ok(FsFile { file })
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, first: u64) -> String {
        self.path(first).display().to_string()
    }
}

/// A real segment file (opened with `O_APPEND`, so writes land at the end even after a
/// truncation).
#[derive(Debug)]
pub struct FsFile {
    file: File,
}

impl SegmentFile for FsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
