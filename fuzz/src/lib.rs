//! What the fuzz targets exercise, kept here so each target stays three lines.

use arbitrary::Arbitrary;
use bytes::Bytes;
use kbs_format::{
    BatchHeader, Compression, Header, Identities, ReadLimits, Record, SegmentReader, SegmentStreamReader,
    WriterOptions, decode_batch, encode_segment, verify_segment, verify_segment_keyless,
    verify_segment_with_identities,
};

/// Small enough that fuzzing does not spend its time allocating.
const LIMITS: u32 = 1 << 20;

/// Feeds raw bytes to every segment reader; they must agree on whether the input is valid.
pub fn read_segment(data: &[u8]) {
    let limits = ReadLimits::with_max_batch_bytes(LIMITS);
    let verified = verify_segment(data, limits);
    let memory = SegmentReader::with_limits(Bytes::copy_from_slice(data), limits).and_then(|r| r.to_records());
    let stream = SegmentStreamReader::with_limits(data, limits).and_then(|r| r.read_to_records());
    match (verified, memory, stream) {
        (Ok(summary), Ok(records), Ok((streamed, streamed_summary))) => {
            assert_eq!(records, streamed);
            assert_eq!(summary, streamed_summary);
            assert_eq!(records.len() as u64, summary.record_count);
        }
        (Err(_), Err(_), Err(_)) => {}
        (v, m, s) => panic!("readers disagree: {:?} {:?} {:?}", v.err(), m.err(), s.err()),
    }
}

/// The committed encrypted golden vector and its test identity.
const SEALED: &[u8] = include_bytes!("../../kbs-format/tests/data/encrypted-mixed-lz4.kbs");
const SEALED_IDENTITY: &str = include_str!("../../kbs-format/tests/data/encrypted.identity");

/// Alters the encrypted golden vector as the input says, then reads it with the right key
/// through every reader (and without a key). Each input is a list of edits: 2 bytes of position
/// and 1 byte to XOR there; an odd first byte cuts the segment at the first edit's position
/// instead; an input ending in 0xff recomputes the batch CRC-32s and the CRC-64, so the
/// authentication tags are what must catch the edits. The readers must agree, never panic,
/// and whatever they accept must be exactly the original records.
pub fn read_encrypted_segment(data: &[u8]) {
    let identities = Identities::parse(SEALED_IDENTITY).expect("test identity");
    let limits = ReadLimits::with_max_batch_bytes(LIMITS);
    let original = SegmentReader::with_identities(Bytes::from_static(SEALED), limits, &identities)
        .and_then(|r| r.to_records())
        .expect("the golden vector reads");
    let mut segment = SEALED.to_vec();
    let edits = data.chunks_exact(3);
    for (index, edit) in edits.enumerate() {
        let position = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % segment.len();
        if index == 0 && data[0] & 1 == 1 {
            segment.truncate(position);
            break;
        }
        segment[position] ^= edit[2];
    }
    if data.last() == Some(&0xff) {
        fix_checksums(&mut segment);
    }
    let _ = verify_segment_keyless(&segment, limits);
    let verified = verify_segment_with_identities(&segment, limits, &identities);
    let memory =
        SegmentReader::with_identities(Bytes::from(segment.clone()), limits, &identities).and_then(|r| r.to_records());
    let stream =
        SegmentStreamReader::with_identities(&segment[..], limits, &identities).and_then(|r| r.read_to_records());
    match (verified, memory, stream) {
        (Ok(_), Ok(records), Ok((streamed, _))) => {
            assert_eq!(records, original, "an altered segment was accepted with other records");
            assert_eq!(streamed, original);
        }
        (Err(_), Err(_), Err(_)) => {}
        (v, m, s) => panic!("readers disagree: {:?} {:?} {:?}", v.err(), m.err(), s.err()),
    }
}

/// Recomputes the batch CRC-32s (walking the batch headers as far as they make sense) and the
/// CRC-64 of an encrypted segment.
fn fix_checksums(segment: &mut [u8]) {
    if segment.len() < 36 + 56 {
        return;
    }
    let block = u32::from_le_bytes(segment[32..36].try_into().expect("4 bytes")) as usize;
    let end = segment.len() - 56;
    let mut pos = 36usize.saturating_add(block);
    while pos.saturating_add(24) <= end {
        let size = u32::from_le_bytes(segment[pos + 12..pos + 16].try_into().expect("4 bytes")) as usize;
        let Some(payload_end) = (pos + 24).checked_add(size).filter(|e| *e <= end) else {
            break;
        };
        let crc = crc32(&segment[pos + 24..payload_end]);
        segment[pos + 20..pos + 24].copy_from_slice(&crc.to_le_bytes());
        pos = payload_end;
    }
    let crc64 = crc64_xz(&segment[32..]);
    segment[24..32].copy_from_slice(&crc64.to_le_bytes());
}

fn crc64_xz(data: &[u8]) -> u64 {
    // Bitwise CRC-64/XZ, independent of the crate under test.
    let mut crc = u64::MAX;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xc96c_5795_d787_0f42
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Decodes raw bytes as one batch payload: byte 0 picks the codec (and bit 7 the per-record
/// CRC), bytes 1..5 are the record count, bytes 5..7 the uncompressed size for lz4 and zstd,
/// the rest is the payload (its CRC-32 is computed here so decoding is reached).
pub fn decode_payload(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let compression = match data[0] % 3 {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let per_record_crc = data[0] & 0x80 != 0;
    let record_count = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let payload = &data[7..];
    let uncompressed_size = match compression {
        Compression::None => payload.len() as u32,
        _ => u32::from(u16::from_le_bytes([data[5], data[6]])),
    };
    let header = BatchHeader {
        base_offset: 0,
        record_count,
        compressed_size: payload.len() as u32,
        uncompressed_size,
        crc32: crc32(payload),
    };
    if let Ok(batch) = decode_batch(
        &header,
        Bytes::copy_from_slice(payload),
        compression,
        per_record_crc,
        ReadLimits::with_max_batch_bytes(LIMITS),
    ) {
        assert_eq!(batch.records().count(), record_count as usize);
        assert_eq!(batch.record_views().count(), record_count as usize);
    }
}

fn crc32(data: &[u8]) -> u32 {
    // The same CRC-32 the format uses, computed independently of the crate under test.
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A structured input for the round trip.
#[derive(Debug, Arbitrary)]
pub struct RoundTripInput {
    codec: u8,
    zstd_level: u8,
    target_batch_bytes: u16,
    per_record_crc: bool,
    first_offset: i64,
    records: Vec<InputRecord>,
}

/// One record of a [`RoundTripInput`].
#[derive(Debug, Arbitrary)]
pub struct InputRecord {
    offset_gap: u16,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Encodes arbitrary records and decodes them again through every reader.
pub fn round_trip(input: RoundTripInput) {
    let compression = [Compression::None, Compression::Lz4, Compression::Zstd][usize::from(input.codec % 3)];
    let options = WriterOptions::new(compression)
        .zstd_level(i32::from(input.zstd_level % 9) + 1)
        .target_batch_bytes(usize::from(input.target_batch_bytes).max(1))
        .per_record_crc(input.per_record_crc);
    let mut offset = input.first_offset.clamp(0, i64::MAX / 2);
    let records: Vec<Record> = input
        .records
        .into_iter()
        .map(|r| {
            offset += i64::from(r.offset_gap) + 1;
            Record {
                offset,
                timestamp: r.timestamp,
                key: r.key.map(Bytes::from),
                value: r.value.map(Bytes::from),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| Header::new(Bytes::from(k), v.map(Bytes::from)))
                    .collect(),
            }
        })
        .collect();
    if records.is_empty() {
        return;
    }
    let (bytes, summary) = encode_segment(&records, options).expect("valid records encode");
    let decoded = SegmentReader::new(Bytes::from(bytes.clone()))
        .and_then(|r| r.to_records())
        .expect("decodes");
    assert_eq!(decoded, records);
    let (streamed, streamed_summary) = SegmentStreamReader::new(&bytes[..])
        .and_then(|r| r.read_to_records())
        .expect("streams");
    assert_eq!(streamed, records);
    assert_eq!(streamed_summary, summary);
    assert_eq!(
        verify_segment(&bytes, ReadLimits::default()).expect("verifies"),
        summary
    );
}

#[cfg(test)]
mod tests {
    /// A quick stand-in for a fuzzing run: pseudo-random edit lists against the encrypted
    /// reader (with and without fixed checksums).
    #[test]
    fn random_edits_of_an_encrypted_segment_are_refused_or_harmless() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let len = (next() % 16) as usize * 3 + 1;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                *input.last_mut().unwrap() = 0xff;
            }
            super::read_encrypted_segment(&input);
        }
    }
}
