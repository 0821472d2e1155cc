//! Helpers shared by the segment tests.

use bytes::Bytes;
use kbs_format::{
    Compression, FormatError, ReadLimits, Record, SegmentReader, SegmentStreamReader, SegmentSummary, verify_segment,
};

/// Decodes `data` with every reader and checks they agree; returns the records or the error
/// of the in-memory reader.
pub(crate) fn decode_all_ways(data: &[u8]) -> Result<(Vec<Record>, SegmentSummary), FormatError> {
    let verified = verify_segment(data, ReadLimits::default());
    let in_memory = SegmentReader::new(Bytes::copy_from_slice(data)).and_then(|r| r.to_records());
    let streamed = SegmentStreamReader::new(data).and_then(|r| r.read_to_records());
    match (verified, in_memory, streamed) {
        (Ok(summary), Ok(records), Ok((streamed_records, streamed_summary))) => {
            assert_eq!(records, streamed_records, "stream and memory readers disagree");
            assert_eq!(
                summary, streamed_summary,
                "stream reader and verifier disagree on the summary"
            );
            Ok((records, summary))
        }
        (Err(e), Err(_), Err(_)) => Err(e),
        (v, m, s) => panic!(
            "readers disagree: verify={:?} memory={:?} stream={:?}",
            v.err(),
            m.err(),
            s.err().map(|e| e.to_string())
        ),
    }
}

/// A parsed codec name.
pub(crate) fn codec(name: &str) -> Compression {
    name.parse().expect("codec name")
}

/// Recomputes every checksum of a segment (batch CRC-32s, footer header CRC-32, CRC-64) after a
/// test has edited it, so structural checks can be exercised behind valid checksums. Batches
/// are found by walking their headers; `compression` must be none for edits inside payloads to
/// keep the walk valid.
pub(crate) fn reseal(data: &mut [u8]) {
    let len = data.len();
    let footer = len - 16;
    let mut pos = 32;
    while pos + 24 <= footer {
        let size = u32::from_le_bytes(data[pos + 12..pos + 16].try_into().unwrap()) as usize;
        if pos + 24 + size > footer {
            break;
        }
        let crc = crc32fast::hash(&data[pos + 24..pos + 24 + size]);
        data[pos + 20..pos + 24].copy_from_slice(&crc.to_le_bytes());
        pos += 24 + size;
    }
    let header_crc = crc32fast::hash(&data[..24]);
    data[footer + 8..footer + 12].copy_from_slice(&header_crc.to_le_bytes());
    let crc64 = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data[32..]);
    data[24..32].copy_from_slice(&crc64.to_le_bytes());
}
