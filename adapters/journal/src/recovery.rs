//! Opening a journal: scan every segment, rebuild the offset index, cut a torn tail.
//!
//! The rule that separates a crash from damage: a crash can only tear the *end* of the log
//! (the last segment's unsynced tail: a truncated frame, a CRC mismatch, zero fill, garbage),
//! so a bad frame in the last segment with no valid record after it is truncated away and
//! reported. A bad frame with any valid record after it, or anywhere in a sealed segment, is
//! damage to acknowledged data: opening fails with `LogError::Corrupt` naming the segment
//! file, the byte position and the record offset, and nothing is skipped or rewritten.
//!
//! Everything recovery keeps is fsynced before `open` returns, so records recovered from the
//! page cache are durable before anything is appended after them.

use std::path::Path;
use std::time::Instant;

use oms_core::ports::LogError;

use crate::frame::{self, HEADER_LEN};
use crate::journal::{Journal, JournalConfig, RecoveryReport, Segment, TornTail, location};
use crate::storage::{FsStorage, SegmentFile, Storage};

impl Journal<FsStorage> {
    /// Opens (creating if needed) the journal in `<dir>/journal/`, recovering as described
    /// in the module docs. Fails with `Unavailable` if another process holds it.
    pub fn open(dir: &Path, cfg: JournalConfig) -> Result<(Self, RecoveryReport), LogError> {
        let storage = FsStorage::open(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                LogError::Unavailable(e.to_string())
            } else {
                LogError::Io(e)
            }
        })?;
        Journal::open_with(storage, cfg)
    }
}

/// What the scan of one segment found.
struct Scanned<F> {
    segment: Segment,
    file: F,
    /// Set for a torn tail in the last segment: truncate the file to `at_byte`.
    torn: Option<TornTail>,
    /// The header must be (re)written: an empty last segment whose creation was torn.
    rewrite_header: bool,
}

impl<S: Storage> Journal<S> {
    /// Opens a journal on any backend (tests use the fault-injecting
    /// [`MemStorage`](crate::mem::MemStorage)).
    pub fn open_with(
        mut storage: S,
        cfg: JournalConfig,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let firsts = storage.list()?;
        let mut segments = Vec::with_capacity(firsts.len().max(1));
        let mut buf = Vec::new();
        let mut last: Option<Scanned<S::File>> = None;
        for (i, &first) in firsts.iter().enumerate() {
            let is_last = i + 1 == firsts.len();
            if let Some(prev) = segments.last() {
                let Segment {
                    first: pf, records, ..
                } = *prev;
                if pf + records != first {
                    return Err(LogError::Corrupt {
                        location: storage.describe(first),
                        reason: format!(
                            "segment starts at offset {first} but the previous one ends at {}",
                            pf + records
                        ),
                    });
                }
            }
            let scanned = scan_segment(&mut storage, first, is_last, &mut buf)?;
            segments.push(scanned.segment);
            if is_last {
                last = Some(scanned);
            }
        }

        let mut report = RecoveryReport::default();
        let active = match last {
            None => {
                let mut file = storage.create(0)?;
                file.write_all(&frame::header(0))?;
                file.sync_data()?;
                storage.sync_dir()?;
                segments.push(Segment {
                    first: 0,
                    records: 0,
                    bytes: HEADER_LEN,
                });
                file
            }
            Some(mut s) => {
                if s.rewrite_header {
                    s.file.set_len(0)?;
                    s.file.write_all(&frame::header(s.segment.first))?;
                }
                if let Some(torn) = &s.torn {
                    tracing::warn!(
                        segment = %torn.segment,
                        at_byte = torn.at_byte,
                        bytes_dropped = torn.bytes_dropped,
                        reason = torn.reason,
                        "journal: truncating torn tail"
                    );
                    s.file.set_len(torn.at_byte)?;
                }
                // Make what was recovered (possibly only in the page cache) durable before
                // anything is appended after it.
                s.file.sync_data()?;
                storage.sync_dir()?;
                report.torn_tail = s.torn;
                s.file
            }
        };
        let last = *segments.last().expect("at least one segment");
        let next_offset = last.first + last.records;
        report.segments = segments.len();
        report.records = segments.iter().map(|s| s.records).sum();
        report.next_offset = next_offset;
        let journal = Journal {
            storage,
            cfg,
            segments,
            active,
            next_offset,
            durable_offset: next_offset,
            write_buf: Vec::new(),
            read_buf: buf,
            last_sync: Instant::now(),
            failed: None,
        };
        Ok((journal, report))
    }
}

fn scan_segment<S: Storage>(
    storage: &mut S,
    first: u64,
    is_last: bool,
    buf: &mut Vec<u8>,
) -> Result<Scanned<S::File>, LogError> {
    let name = storage.describe(first);
    let mut file = storage.open(first)?;
    let len = file.len()?;
    let mut head = [0u8; HEADER_LEN as usize];
    let n = read_full(&mut file, 0, &mut head)?;
    if let Err(reason) = frame::check_header(&head[..n], first) {
        // A crash while creating the segment can leave it empty or with a partial header;
        // with no record bytes there is nothing to lose by writing the header again.
        if is_last && len <= HEADER_LEN {
            return Ok(Scanned {
                segment: Segment {
                    first,
                    records: 0,
                    bytes: HEADER_LEN,
                },
                file,
                torn: None,
                rewrite_header: true,
            });
        }
        // The last segment's header is written together with its first batch and made durable
        // by that batch's fsync; if it is damaged, nothing in the file was acknowledged — a crash
        // tore the segment's creation (e.g. unsynced bytes lost or zero-filled). That is a torn
        // tail, unless a valid record follows (then the damage is not a crash's doing).
        if is_last {
            let mut rest = vec![0u8; (len - HEADER_LEN) as usize];
            let got = read_full(&mut file, HEADER_LEN, &mut rest)?;
            rest.truncate(got);
            if frame::find_valid_frame(&rest).is_none() {
                return Ok(Scanned {
                    segment: Segment {
                        first,
                        records: 0,
                        bytes: HEADER_LEN,
                    },
                    file,
                    torn: Some(TornTail {
                        segment: name,
                        at_byte: HEADER_LEN,
                        bytes_dropped: len - HEADER_LEN,
                        reason: "torn segment header (crash while creating the segment)",
                    }),
                    rewrite_header: true,
                });
            }
        }
        return Err(LogError::Corrupt {
            location: location(&name, 0, first),
            reason,
        });
    }
    let scan = frame::scan(&mut file, HEADER_LEN, len, buf, &mut |_, _, _| Ok(()))?;
    let segment = Segment {
        first,
        records: scan.records,
        bytes: scan.end,
    };
    let Some(stop) = scan.stop else {
        return Ok(Scanned {
            segment,
            file,
            torn: None,
            rewrite_header: false,
        });
    };
    let offset = first + scan.records;
    if !is_last {
        return Err(LogError::Corrupt {
            location: location(&name, stop.pos, offset),
            reason: format!("{} in a sealed segment", stop.reason),
        });
    }
    // Bad frame in the last segment: torn tail, unless a valid record follows it.
    let mut rest = vec![0u8; (len - stop.pos - 1) as usize];
    let got = read_full(&mut file, stop.pos + 1, &mut rest)?;
    rest.truncate(got);
    if let Some(q) = frame::find_valid_frame(&rest) {
        return Err(LogError::Corrupt {
            location: location(&name, stop.pos, offset),
            reason: format!(
                "{}, and a valid record follows at byte {}",
                stop.reason,
                stop.pos + 1 + q as u64
            ),
        });
    }
    Ok(Scanned {
        segment,
        file,
        torn: Some(TornTail {
            segment: name,
            at_byte: stop.pos,
            bytes_dropped: len - stop.pos,
            reason: stop.reason,
        }),
        rewrite_header: false,
    })
}

fn read_full<F: SegmentFile>(file: &mut F, pos: u64, buf: &mut [u8]) -> Result<usize, LogError> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(pos + got as u64, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}
