//! Records and their encoding inside a batch payload.
//!
//! ```text
//! Record (inside the uncompressed batch payload)
//!   offset delta       varint   offset - batch base offset
//!   timestamp delta    varlong  first record of the batch: its absolute timestamp (ms);
//!                               later records: timestamp - first record's timestamp
//!   key length         varint   -1 = null key
//!   key                bytes
//!   value length       varint   -1 = null value (tombstone)
//!   value              bytes
//!   header count       varint   >= 0
//!   per header:
//!     key length       varint   >= 0
//!     key              bytes    (raw bytes, not required to be UTF-8)
//!     value length     varint   -1 = null value
//!     value            bytes
//!   record CRC-32      u32 LE   only with header flag bit 0: CRC-32 of the bytes above
//! ```

use bytes::Bytes;

use crate::error::RecordFault;
use crate::varint::{get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len};

/// One Kafka record as stored in a segment.
///
/// Keys, values and header values distinguish null (`None`) from empty (`Some` of zero
/// bytes). Headers keep their order and duplicate keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Record {
    /// The record's offset in its Kafka partition.
    pub offset: i64,
    /// The record's timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key; `None` is a null key.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in order, duplicates kept.
    pub headers: Vec<Header>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header key as raw bytes (Kafka keys are strings, but nothing here assumes UTF-8).
    pub key: Bytes,
    /// The header value; `None` is a null value.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a key and an optional value.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Header { key: key.into(), value }
    }
}

/// A record borrowed from a decoded batch payload, without copying or reference counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp in milliseconds.
    pub timestamp: i64,
    /// The key; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a null value.
    pub value: Option<&'a [u8]>,
    headers: HeaderViews<'a>,
}

impl<'a> RecordView<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> HeaderViews<'a> {
        self.headers
    }

    /// Copies the record into an owned [`Record`].
    pub fn to_record(self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self
                .headers
                .map(|h| Header {
                    key: Bytes::copy_from_slice(h.key),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect(),
        }
    }

    /// Builds an owned record whose byte fields are zero-copy slices of `backing`, which must
    /// be the buffer this view borrows from.
    pub(crate) fn to_record_in(self, backing: &Bytes) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(|k| backing.slice_ref(k)),
            value: self.value.map(|v| backing.slice_ref(v)),
            headers: self
                .headers
                .map(|h| Header {
                    key: backing.slice_ref(h.key),
                    value: h.value.map(|v| backing.slice_ref(v)),
                })
                .collect(),
        }
    }
}

/// A borrowed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The header key.
    pub key: &'a [u8],
    /// The header value; `None` is a null value.
    pub value: Option<&'a [u8]>,
}

/// Iterator over the headers of a [`RecordView`]; the bytes were validated when the batch was
/// decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderViews<'a> {
    raw: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for HeaderViews<'a> {
    type Item = HeaderView<'a>;

    fn next(&mut self) -> Option<HeaderView<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut pos = 0;
        // The region was fully validated by `parse_record`; a failure here cannot happen, and
        // would end the iteration rather than panic.
        let key = read_bytes(self.raw, &mut pos, "header key").ok()??;
        let value = read_bytes(self.raw, &mut pos, "header value").ok()?;
        self.raw = &self.raw[pos..];
        self.remaining -= 1;
        Some(HeaderView { key, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for HeaderViews<'_> {}

/// Reads a varint length (-1 = null) and that many bytes.
#[inline(always)]
fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize, field: &'static str) -> Result<Option<&'a [u8]>, RecordFault> {
    let len = get_varint(buf, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| RecordFault::InvalidLength { field, length: len })?;
    let end = pos.checked_add(len).ok_or(RecordFault::Truncated)?;
    let bytes = buf.get(*pos..end).ok_or(RecordFault::Truncated)?;
    *pos = end;
    Ok(Some(bytes))
}

/// Upper bound of the encoded size of `record`, used to decide batch boundaries before
/// encoding and to reject records too large for any batch.
pub(crate) fn encoded_len_bound(record: &Record) -> u64 {
    let mut len = 5 + 10 + 5 + 5 + 5 + 4;
    len += record.key.as_ref().map_or(0, |k| k.len() as u64);
    len += record.value.as_ref().map_or(0, |v| v.len() as u64);
    for h in &record.headers {
        len += 10 + h.key.len() as u64 + h.value.as_ref().map_or(0, |v| v.len() as u64);
    }
    len
}

/// Appends `record` to `out` with the given deltas; with `per_record_crc`, follows it with
/// the CRC-32 of its bytes. The caller guarantees every length fits an `i32` (the record's
/// size bound is checked against the batch limit first).
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    offset_delta: i32,
    timestamp_delta: i64,
    per_record_crc: bool,
) {
    let start = out.len();
    put_varint(out, offset_delta);
    put_varlong(out, timestamp_delta);
    put_opt_bytes(out, record.key.as_deref());
    put_opt_bytes(out, record.value.as_deref());
    put_varint(out, record.headers.len() as i32);
    for h in &record.headers {
        put_opt_bytes(out, Some(&h.key));
        put_opt_bytes(out, h.value.as_deref());
    }
    if per_record_crc {
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

#[inline]
fn put_opt_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

/// Exact encoded size of a record with these deltas (without the optional CRC).
#[allow(dead_code)]
pub(crate) fn encoded_len(record: &Record, offset_delta: i32, timestamp_delta: i64) -> usize {
    let opt = |b: Option<&[u8]>| b.map_or(1, |b| varint_len(b.len() as i32) + b.len());
    let mut len = varint_len(offset_delta) + varlong_len(timestamp_delta);
    len += opt(record.key.as_deref()) + opt(record.value.as_deref());
    len += varint_len(record.headers.len() as i32);
    for h in &record.headers {
        len += opt(Some(&h.key)) + opt(h.value.as_deref());
    }
    len
}

/// Where the record parser stands within one batch payload.
pub(crate) struct PayloadCursor<'a> {
    payload: &'a [u8],
    pos: usize,
    base_offset: i64,
    first_timestamp: Option<i64>,
    per_record_crc: bool,
}

/// The resumable part of a [`PayloadCursor`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CursorState {
    pos: usize,
    first_timestamp: Option<i64>,
}

impl<'a> PayloadCursor<'a> {
    pub(crate) fn new(payload: &'a [u8], base_offset: i64, per_record_crc: bool) -> Self {
        Self::resume(payload, base_offset, per_record_crc, CursorState::default())
    }

    /// A cursor continuing from a saved state over the same payload.
    pub(crate) fn resume(payload: &'a [u8], base_offset: i64, per_record_crc: bool, state: CursorState) -> Self {
        PayloadCursor {
            payload,
            pos: state.pos,
            base_offset,
            first_timestamp: state.first_timestamp,
            per_record_crc,
        }
    }

    /// The state to resume from.
    pub(crate) fn state(&self) -> CursorState {
        CursorState {
            pos: self.pos,
            first_timestamp: self.first_timestamp,
        }
    }

    /// Current offset within the payload.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet parsed.
    pub(crate) fn remaining(&self) -> usize {
        self.payload.len() - self.pos
    }

    /// Parses the next record. On error the cursor's position is where the record started.
    #[inline(always)]
    pub(crate) fn parse_record(&mut self) -> Result<RecordView<'a>, RecordFault> {
        let buf = self.payload;
        let mut pos = self.pos;
        let start = pos;
        let delta = get_varint(buf, &mut pos)?;
        if delta < 0 {
            return Err(RecordFault::InvalidOffsetDelta {
                base_offset: self.base_offset,
                delta,
            });
        }
        let offset = self
            .base_offset
            .checked_add(i64::from(delta))
            .ok_or(RecordFault::InvalidOffsetDelta {
                base_offset: self.base_offset,
                delta,
            })?;
        let ts_delta = get_varlong(buf, &mut pos)?;
        let timestamp = match self.first_timestamp {
            None => ts_delta,
            Some(first) => first
                .checked_add(ts_delta)
                .ok_or(RecordFault::TimestampOverflow { first, delta: ts_delta })?,
        };
        let key = read_bytes(buf, &mut pos, "key")?;
        let value = read_bytes(buf, &mut pos, "value")?;
        let count = get_varint(buf, &mut pos)?;
        let count = u32::try_from(count).map_err(|_| RecordFault::InvalidLength {
            field: "header count",
            length: count,
        })?;
        let headers_start = pos;
        for _ in 0..count {
            if read_bytes(buf, &mut pos, "header key")?.is_none() {
                return Err(RecordFault::InvalidLength {
                    field: "header key",
                    length: -1,
                });
            }
            read_bytes(buf, &mut pos, "header value")?;
        }
        let headers = HeaderViews {
            raw: &buf[headers_start..pos],
            remaining: count,
        };
        if self.per_record_crc {
            let computed = crc32fast::hash(&buf[start..pos]);
            let stored_bytes = buf.get(pos..pos + 4).ok_or(RecordFault::Truncated)?;
            let stored = u32::from_le_bytes([stored_bytes[0], stored_bytes[1], stored_bytes[2], stored_bytes[3]]);
            if stored != computed {
                return Err(RecordFault::ChecksumMismatch { stored, computed });
            }
            pos += 4;
        }
        self.first_timestamp.get_or_insert(timestamp);
        self.pos = pos;
        Ok(RecordView {
            offset,
            timestamp,
            key,
            value,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            offset: 10,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                Header::new(Bytes::from_static(b"h"), Some(Bytes::from_static(b"1"))),
                Header::new(Bytes::from_static(b"h"), None),
                Header::new(Bytes::from_static(b""), Some(Bytes::new())),
            ],
        }
    }

    #[test]
    fn encode_parse_round_trip() {
        for crc in [false, true] {
            let rec = sample();
            let mut out = Vec::new();
            encode_record(&mut out, &rec, 0, rec.timestamp, crc);
            assert_eq!(out.len(), encoded_len(&rec, 0, rec.timestamp) + if crc { 4 } else { 0 });
            assert!(out.len() as u64 <= encoded_len_bound(&rec));
            let mut cursor = PayloadCursor::new(&out, 10, crc);
            let view = cursor.parse_record().unwrap();
            assert_eq!(cursor.remaining(), 0);
            assert_eq!(view.to_record(), rec);
        }
    }

    #[test]
    fn null_header_key_is_rejected() {
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        put_varlong(&mut out, 5);
        put_varint(&mut out, -1);
        put_varint(&mut out, -1);
        put_varint(&mut out, 1);
        put_varint(&mut out, -1);
        put_varint(&mut out, -1);
        let mut cursor = PayloadCursor::new(&out, 0, false);
        assert_eq!(
            cursor.parse_record(),
            Err(RecordFault::InvalidLength {
                field: "header key",
                length: -1
            })
        );
    }

    #[test]
    fn length_below_minus_one_is_rejected() {
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        put_varlong(&mut out, 5);
        put_varint(&mut out, -2);
        let mut cursor = PayloadCursor::new(&out, 0, false);
        assert_eq!(
            cursor.parse_record(),
            Err(RecordFault::InvalidLength {
                field: "key",
                length: -2
            })
        );
    }

    #[test]
    fn record_crc_mismatch_is_detected() {
        let rec = sample();
        let mut out = Vec::new();
        encode_record(&mut out, &rec, 0, rec.timestamp, true);
        let last = out.len() - 1;
        out[last] ^= 1;
        let mut cursor = PayloadCursor::new(&out, 10, true);
        assert!(matches!(
            cursor.parse_record(),
            Err(RecordFault::ChecksumMismatch { .. })
        ));
    }
}
