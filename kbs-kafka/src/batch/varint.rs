//! Kafka's zigzag varints (`ByteUtils.readVarint` / `readVarlong` in the Java client).
//!
//! A varint is the zigzag transform of a signed integer (`(n << 1) ^ (n >> 63)`) written as
//! little-endian base-128 groups; the high bit of each byte means "more bytes follow". An `i32`
//! takes at most 5 bytes, an `i64` at most 10. Like the Java client the decoder accepts
//! non-canonical (padded) encodings, but it rejects encodings that are too long or overflow.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintFault {
    /// The input ended inside the varint.
    Truncated,
    /// More groups than the type allows, or bits beyond its width.
    Overflow,
}

#[inline]
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

#[inline]
fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Appends the varint encoding of `n`.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, n: i32) {
    put_unsigned(out, zigzag(i64::from(n)));
}

/// Appends the varlong encoding of `n`.
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, n: i64) {
    put_unsigned(out, zigzag(n));
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes the varint encoding of `n` takes.
#[inline]
pub(crate) fn varint_len(n: i32) -> usize {
    unsigned_len(zigzag(i64::from(n)))
}

/// Bytes the varlong encoding of `n` takes.
#[inline]
pub(crate) fn varlong_len(n: i64) -> usize {
    unsigned_len(zigzag(n))
}

#[inline]
fn unsigned_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint at `*pos`, advancing it.
#[inline]
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintFault> {
    // Fast path: one byte (every small length and delta).
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(unzigzag(u64::from(b)) as i32);
    }
    let mut end = *pos;
    let v = get_unsigned(buf, &mut end, 5)?;
    if v > u64::from(u32::MAX) {
        return Err(VarintFault::Overflow);
    }
    *pos = end;
    // Zigzag of a 32-bit value: decode in 32 bits like Java does.
    let v = v as u32;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a varlong at `*pos`, advancing it.
#[inline]
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintFault> {
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(unzigzag(u64::from(b)));
    }
    get_unsigned(buf, pos, 10).map(unzigzag)
}

#[inline]
fn get_unsigned(buf: &[u8], pos: &mut usize, max_len: usize) -> Result<u64, VarintFault> {
    let mut value = 0u64;
    let mut shift = 0u32;
    for i in 0..max_len {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(VarintFault::Truncated);
        };
        let group = u64::from(b & 0x7f);
        if shift == 63 && group > 1 {
            return Err(VarintFault::Overflow);
        }
        value |= group << shift;
        if b < 0x80 {
            *pos += i + 1;
            return Ok(value);
        }
        shift += 7;
    }
    Err(VarintFault::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Values from the Kafka protocol guide / Java ByteUtilsTest.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i64::from(i32::MAX), &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i64::from(i32::MIN), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(n, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, n);
            assert_eq!(out, bytes, "varlong {n}");
            if let Ok(n32) = i32::try_from(n) {
                let mut out = Vec::new();
                put_varint(&mut out, n32);
                assert_eq!(out, bytes, "varint {n}");
                let mut pos = 0;
                assert_eq!(get_varint(bytes, &mut pos), Ok(n32));
                assert_eq!(pos, bytes.len());
            }
        }
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
        let mut pos = 0;
        assert_eq!(get_varlong(&out, &mut pos), Ok(i64::MIN));
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        let mut pos = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut pos), Err(VarintFault::Truncated));
        assert_eq!(pos, 0);
        assert_eq!(
            get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos),
            Err(VarintFault::Overflow)
        );
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(VarintFault::Overflow)
        );
        assert_eq!(get_varlong(&[0xff; 11], &mut pos), Err(VarintFault::Overflow));
        assert_eq!(
            get_varlong(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03], &mut pos),
            Err(VarintFault::Overflow)
        );
        assert_eq!(get_varint(&[], &mut pos), Err(VarintFault::Truncated));
        // A padded (non-canonical) encoding of 1 is accepted, like the Java client does.
        assert_eq!(get_varint(&[0x82, 0x00], &mut pos), Ok(1));
        assert_eq!(pos, 2);
    }

    proptest! {
        #[test]
        fn varint_round_trip(n in any::<i32>()) {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            prop_assert_eq!(out.len(), varint_len(n));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&out, &mut pos), Ok(n));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varlong_round_trip(n in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, n);
            prop_assert_eq!(out.len(), varlong_len(n));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&out, &mut pos), Ok(n));
            prop_assert_eq!(pos, out.len());
        }
    }
}
