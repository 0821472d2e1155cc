//! Self-checking object contents for the crash test.
//!
//! Layout: `b"KBSF"`, payload length (u32 LE), CRC-32 of the payload (u32 LE), payload. Any
//! truncation, mix of two writes or garbage fails [`check`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::conformance::content;

const MAGIC: &[u8; 4] = b"KBSF";

/// A framed object with a pseudo-random payload of `payload_len` bytes.
pub(crate) fn frame(seed: u64, payload_len: usize) -> Bytes {
    let payload = content(seed, payload_len);
    let mut out = BytesMut::with_capacity(12 + payload_len);
    out.put_slice(MAGIC);
    out.put_u32_le(payload_len as u32);
    out.put_u32_le(crc32fast::hash(&payload));
    out.put_slice(&payload);
    out.freeze()
}

/// Checks a framed object.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 12 {
        return Err(format!("{} bytes, shorter than the 12-byte header", bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(format!("bad magic {:?}", &bytes[..4]));
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if bytes.len() != 12 + len {
        return Err(format!("{} bytes, the header says {}", bytes.len(), 12 + len));
    }
    if crc32fast::hash(&bytes[12..]) != crc {
        return Err("CRC mismatch".to_owned());
    }
    Ok(())
}

#[test]
fn frames_detect_damage() {
    let good = frame(1, 1000);
    check(&good).unwrap();
    assert!(check(&good[..good.len() - 1]).is_err());
    let mut bad = good.to_vec();
    bad[500] ^= 1;
    assert!(check(&bad).is_err());
    assert!(check(b"").is_err());
}
