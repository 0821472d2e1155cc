//! Kafka-style zigzag varints, strictly decoded.
//!
//! A varint is the zigzag transform of a signed integer (`(n << 1) ^ (n >> 63)`), written as
//! little-endian base-128 groups with the high bit of each byte meaning "more bytes follow".
//! `i32` values take at most 5 bytes, `i64` values at most 10. Only the canonical (shortest)
//! encoding is accepted: a multi-byte varint whose last byte is `0x00` is rejected, and so are
//! unused high bits in the final byte of a maximum-length varint.

use crate::error::RecordFault;

/// Largest encoded size of an `i32` varint.
pub(crate) const MAX_VARINT_LEN: usize = 5;
/// Largest encoded size of an `i64` varlong.
pub(crate) const MAX_VARLONG_LEN: usize = 10;

#[inline]
fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

#[inline]
fn unzigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Appends the zigzag varint encoding of `n` to `out`.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, n: i32) {
    put_unsigned(out, zigzag64(i64::from(n)));
}

/// Appends the zigzag varlong encoding of `n` to `out`.
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, n: i64) {
    put_unsigned(out, zigzag64(n));
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    // One- and two-byte encodings (nearly every length and delta) are fixed-size stores
    // rather than a variable-length copy.
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    if v < 0x4000 {
        out.extend_from_slice(&[(v as u8) | 0x80, (v >> 7) as u8]);
        return;
    }
    let mut buf = [0u8; MAX_VARLONG_LEN];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    out.extend_from_slice(&buf[..=n]);
}

/// Number of bytes the varint encoding of `n` takes.
#[inline]
pub(crate) fn varint_len(n: i32) -> usize {
    unsigned_len(zigzag64(i64::from(n)))
}

/// Number of bytes the varlong encoding of `n` takes.
#[inline]
pub(crate) fn varlong_len(n: i64) -> usize {
    unsigned_len(zigzag64(n))
}

#[inline]
fn unsigned_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes an unsigned base-128 group of at most `max_len` bytes whose value fits `max_bits`.
#[inline(always)]
fn get_unsigned(buf: &[u8], pos: &mut usize, max_len: usize, max_bits: u32) -> Result<u64, RecordFault> {
    let start = *pos;
    // Fast paths: most lengths and deltas fit one or two bytes.
    let Some(&b0) = buf.get(start) else {
        return Err(RecordFault::Truncated);
    };
    if b0 < 0x80 {
        *pos = start + 1;
        return Ok(u64::from(b0));
    }
    if let Some(&b1) = buf.get(start + 1)
        && b1 < 0x80
        && b1 != 0
    {
        *pos = start + 2;
        return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
    }
    let mut value: u64 = 0;
    for i in 0..max_len {
        let Some(&byte) = buf.get(start + i) else {
            return Err(RecordFault::Truncated);
        };
        let shift = 7 * i as u32;
        let low = u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(RecordFault::NonCanonicalVarint);
            }
            // The last group may only carry the bits that remain below `max_bits`.
            if shift + 7 > max_bits && low >> (max_bits - shift) != 0 {
                return Err(RecordFault::VarintOverflow);
            }
            value |= low << shift;
            *pos = start + i + 1;
            return Ok(value);
        }
        value |= low << shift;
    }
    Err(RecordFault::VarintOverflow)
}

/// Decodes a zigzag varint (at most 5 bytes, canonical form only) at `*pos`, advancing it.
#[inline]
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, RecordFault> {
    let v = get_unsigned(buf, pos, MAX_VARINT_LEN, 32)?;
    // `v` fits 32 bits, so the zigzag inverse fits an i32.
    Ok(unzigzag64(v) as i32)
}

/// Decodes a zigzag varlong (at most 10 bytes, canonical form only) at `*pos`, advancing it.
#[inline]
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordFault> {
    let v = get_unsigned(buf, pos, MAX_VARLONG_LEN, 64)?;
    Ok(unzigzag64(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i64::from(i32::MAX), &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i64::from(i32::MIN), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(n, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, n);
            assert_eq!(out, bytes, "encoding {n}");
            assert_eq!(varlong_len(n), bytes.len());
            let mut pos = 0;
            assert_eq!(get_varlong(bytes, &mut pos).unwrap(), n);
            assert_eq!(pos, bytes.len());
            if let Ok(small) = i32::try_from(n) {
                let mut pos = 0;
                assert_eq!(get_varint(bytes, &mut pos).unwrap(), small);
            }
        }
    }

    #[test]
    fn rejects_non_canonical_and_overlong() {
        let mut pos = 0;
        assert_eq!(
            get_varint(&[0x80, 0x00], &mut pos),
            Err(RecordFault::NonCanonicalVarint)
        );
        pos = 0;
        // Six bytes for an i32.
        assert_eq!(
            get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos),
            Err(RecordFault::VarintOverflow)
        );
        pos = 0;
        // Fifth byte with bits beyond 32.
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(RecordFault::VarintOverflow)
        );
        pos = 0;
        // Tenth byte with bits beyond 64.
        assert_eq!(
            get_varlong(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03], &mut pos),
            Err(RecordFault::VarintOverflow)
        );
        pos = 0;
        assert_eq!(get_varint(&[0x80], &mut pos), Err(RecordFault::Truncated));
    }

    proptest! {
        #[test]
        fn varint_round_trip(n in any::<i32>()) {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            prop_assert_eq!(out.len(), varint_len(n));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&out, &mut pos).unwrap(), n);
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varlong_round_trip(n in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, n);
            prop_assert_eq!(out.len(), varlong_len(n));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&out, &mut pos).unwrap(), n);
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut pos = 0;
            let _ = get_varint(&bytes, &mut pos);
            let mut pos = 0;
            let _ = get_varlong(&bytes, &mut pos);
        }
    }
}
