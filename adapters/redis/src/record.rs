//! The byte format of one idempotency record in Redis.
//!
//! A record is a plain string value, not a hash, so a claim is one `SET key v NX PX ttl GET`
//! (atomic: it either creates the pending record or hands back the existing one) and a
//! completion is one `SET key v EX 86400`. The format is a short text header, readable in
//! `redis-cli`, followed by the response body bytes verbatim (no escaping, any bytes):
//!
//! ```text
//! pending <fingerprint: 16 lowercase hex>
//! done <fingerprint: 16 lowercase hex> <http status>\n<body bytes>
//! ```

use oms_core::ports::StoredResponse;

/// What a record in Redis says about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Claimed by a request that has not completed yet.
    Pending { fingerprint: u64 },
    /// Completed; replays get `response`.
    Done {
        fingerprint: u64,
        response: StoredResponse,
    },
}

const PENDING: &[u8] = b"pending ";
const DONE: &[u8] = b"done ";

/// Encodes a pending claim.
pub fn encode_pending(fingerprint: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(PENDING.len() + 16);
    v.extend_from_slice(PENDING);
    push_hex(&mut v, fingerprint);
    v
}

/// Encodes a completed record.
pub fn encode_done(fingerprint: u64, response: &StoredResponse) -> Vec<u8> {
    let mut v = Vec::with_capacity(DONE.len() + 16 + 5 + response.body.len());
    v.extend_from_slice(DONE);
    push_hex(&mut v, fingerprint);
    v.push(b' ');
    v.extend_from_slice(response.status.to_string().as_bytes());
    v.push(b'\n');
    v.extend_from_slice(&response.body);
    v
}

/// Decodes a record; `None` for bytes this module did not write.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    if let Some(rest) = bytes.strip_prefix(PENDING) {
        return Some(Record::Pending {
            fingerprint: parse_hex(rest)?,
        });
    }
    let rest = bytes.strip_prefix(DONE)?;
    let fingerprint = parse_hex(rest.get(..16)?)?;
    let rest = rest.get(16..)?.strip_prefix(b" ")?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let status: u16 = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    Some(Record::Done {
        fingerprint,
        response: StoredResponse {
            status,
            body: rest[nl + 1..].to_vec(),
        },
    })
}

fn push_hex(v: &mut Vec<u8>, x: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        v.push(HEX[((x >> (i * 4)) & 0xf) as usize]);
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = encode_pending(0xdead_beef_0000_0001);
        assert_eq!(p, b"pending deadbeef00000001");
        assert_eq!(
            decode(&p),
            Some(Record::Pending {
                fingerprint: 0xdead_beef_0000_0001
            })
        );
        let resp = StoredResponse {
            status: 201,
            body: b"{\"a\":\"x\ny\"}\n\xff".to_vec(),
        };
        let d = encode_done(u64::MAX, &resp);
        assert!(d.starts_with(b"done ffffffffffffffff 201\n"));
        assert_eq!(
            decode(&d),
            Some(Record::Done {
                fingerprint: u64::MAX,
                response: resp
            })
        );
        let empty = StoredResponse {
            status: 422,
            body: vec![],
        };
        assert_eq!(
            decode(&encode_done(7, &empty)),
            Some(Record::Done {
                fingerprint: 7,
                response: empty
            })
        );
    }

    #[test]
    fn rejects_foreign_bytes() {
        for b in [
            &b""[..],
            b"pending xyz",
            b"pending 0123",
            b"done 0123456789abcdef",
            b"done 0123456789abcdef 2x1\n",
            b"hello",
        ] {
            assert_eq!(decode(b), None, "{:?}", String::from_utf8_lossy(b));
        }
    }
}
