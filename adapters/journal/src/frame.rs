//! On-disk format: the segment header, the record frame, and a streaming frame scanner.
//!
//! A segment is `header | frame*`. The header names the format and repeats the segment's
//! first offset (the file name is the index, the header is the cross-check). A frame is
//! `len: u32 LE | crc32(payload): u32 LE | payload` where the payload is
//! `oms_core::codec::encode(cmd)`. A length of zero is never written, so a zero-filled tail
//! (metadata persisted before data) can never parse as a record, even though the CRC-32 of
//! the empty string is zero.
//!
//! The scanner is shared by recovery and replay so both agree, byte for byte, on what a
//! whole record is. It reads through one reusable buffer and hands out payload slices.

use oms_core::codec::CODEC_VERSION;
use oms_core::ports::LogError;

use crate::storage::SegmentFile;

/// Segment magic: "OMSJ".
pub const MAGIC: [u8; 4] = *b"OMSJ";
/// Segment format version.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header: magic, version, reserved, first offset.
pub const HEADER_LEN: u64 = 16;
/// Bytes of a frame header: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// The largest payload accepted. Commands encode to a few hundred bytes; a bound this tight
/// makes a damaged length field obvious and keeps the resynchronisation search cheap.
pub const MAX_RECORD: usize = 64 * 1024;
/// Size of the scanner's read buffer.
pub const READ_BUF: usize = 1 << 20;

/// Encodes the header of a segment whose first record has offset `first`.
pub fn header(first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&first.to_le_bytes());
    h
}

/// Checks a segment header; `Err` carries the reason.
pub fn check_header(h: &[u8], first: u64) -> Result<(), String> {
    if h.len() < HEADER_LEN as usize {
        return Err(format!("segment header truncated ({} bytes)", h.len()));
    }
    if h[..4] != MAGIC {
        return Err("bad segment magic".into());
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    let named = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    if named != first {
        return Err(format!(
            "segment header says first offset {named}, file name says {first}"
        ));
    }
    Ok(())
}

/// Appends the frame header placeholder for a record about to be encoded at `out[start..]`.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    start
}

/// Fills in the length and CRC of the frame begun at `start`; returns the payload length.
pub fn finish_frame(out: &mut [u8], start: usize) -> usize {
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len();
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    len
}

/// What the bytes at the start of a slice hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole, CRC-valid frame with a payload of this many bytes.
    Record(usize),
    /// A frame may start here but the slice ends first.
    Incomplete,
    /// Not a valid frame.
    Bad(&'static str),
}

/// Parses the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < FRAME_HEADER {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Parsed::Bad("zero length (zero-filled region)");
    }
    if len > MAX_RECORD {
        return Parsed::Bad("length exceeds the record limit");
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Parsed::Incomplete;
    };
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32fast::hash(payload) != crc {
        return Parsed::Bad("CRC mismatch");
    }
    Parsed::Record(len)
}

/// The first position in `buf` at which a whole, CRC-valid, decodable record starts, if any.
///
/// Used after a bad frame to tell a torn tail (nothing valid after it) from a damaged record
/// in the middle (valid records follow). The version-byte and length filters make the
/// byte-by-byte search cheap on garbage and zero fill.
pub fn find_valid_frame(buf: &[u8]) -> Option<usize> {
    (0..buf.len().saturating_sub(FRAME_HEADER)).find(|&q| {
        let rest = &buf[q..];
        if rest.get(FRAME_HEADER) != Some(&CODEC_VERSION) {
            return false;
        }
        match parse(rest) {
            Parsed::Record(len) => {
                oms_core::codec::decode(&rest[FRAME_HEADER..FRAME_HEADER + len]).is_ok()
            }
            _ => false,
        }
    })
}

/// Where and why a scan stopped before the end of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Byte position of the first frame that is not whole and valid.
    pub pos: u64,
    pub reason: &'static str,
}

/// The outcome of scanning a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Byte position just after the last whole record.
    pub end: u64,
    /// Whole records seen.
    pub records: u64,
    /// `Some` if the range did not end exactly after a whole record.
    pub stop: Option<Stop>,
}

/// Called for each whole record: `(index in the scan, byte position, payload)`.
pub type OnRecord<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<(), LogError> + 'a;

/// Scans frames of `file` in `[from, limit)`, calling `on_record(index, pos, payload)` for
/// each whole record. `buf` is the reusable read buffer (grown to [`READ_BUF`] if smaller).
pub fn scan<F: SegmentFile + ?Sized>(
    file: &mut F,
    from: u64,
    limit: u64,
    buf: &mut Vec<u8>,
    on_record: &mut OnRecord<'_>,
) -> Result<Scan, LogError> {
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut base = from; // file position of buf[0]
    let mut filled = 0usize; // buf[..filled] holds file bytes [base, base + filled)
    let mut cur = 0usize; // next frame starts at buf[cur]
    let mut records = 0u64;
    loop {
        match parse(&buf[cur..filled]) {
            Parsed::Record(len) => {
                let p = cur + FRAME_HEADER;
                on_record(records, base + cur as u64, &buf[p..p + len])?;
                cur = p + len;
                records += 1;
            }
            Parsed::Bad(reason) => {
                let pos = base + cur as u64;
                return Ok(Scan {
                    end: pos,
                    records,
                    stop: Some(Stop { pos, reason }),
                });
            }
            Parsed::Incomplete => {
                let pos = base + cur as u64;
                let file_end = base + filled as u64;
                if file_end >= limit {
                    let stop = (cur < filled).then_some(Stop {
                        pos,
                        reason: "truncated record",
                    });
                    return Ok(Scan {
                        end: pos,
                        records,
                        stop,
                    });
                }
                buf.copy_within(cur..filled, 0);
                filled -= cur;
                base = pos;
                cur = 0;
                let want = (buf.len() as u64).min(limit - base) as usize;
                while filled < want {
                    let n = file.read_at(base + filled as u64, &mut buf[filled..want])?;
                    if n == 0 {
                        return Err(LogError::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "segment shorter than expected ({} bytes)",
                                base + filled as u64
                            ),
                        )));
                    }
                    filled += n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let s = begin_frame(&mut out);
        out.extend_from_slice(payload);
        finish_frame(&mut out, s);
        out
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = header(42);
        assert_eq!(check_header(&h, 42), Ok(()));
        assert!(check_header(&h, 41).is_err());
        assert!(check_header(&h[..10], 42).is_err());
        let mut bad = h;
        bad[0] ^= 1;
        assert!(check_header(&bad, 42).is_err());
    }

    #[test]
    fn parse_classifies_frames() {
        let f = frame(&[CODEC_VERSION, 2, 3]);
        assert_eq!(parse(&f), Parsed::Record(3));
        assert_eq!(parse(&f[..f.len() - 1]), Parsed::Incomplete);
        assert_eq!(parse(&f[..4]), Parsed::Incomplete);
        assert!(matches!(parse(&[0u8; 16]), Parsed::Bad(_)));
        let mut flipped = f.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert_eq!(parse(&flipped), Parsed::Bad("CRC mismatch"));
        let mut huge = f;
        huge[..4].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        assert!(matches!(parse(&huge), Parsed::Bad(_)));
    }

    #[test]
    fn find_valid_frame_ignores_garbage_and_zeros() {
        assert_eq!(find_valid_frame(&[0u8; 4096]), None);
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(find_valid_frame(&garbage), None);
        // A CRC-valid frame whose payload is not a command is not "valid".
        let mut v = vec![0u8; 5];
        v.extend(frame(&[CODEC_VERSION, 99]));
        assert_eq!(find_valid_frame(&v), None);
    }
}
