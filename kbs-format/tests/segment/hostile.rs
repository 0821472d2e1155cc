//! Hand-built segments with valid checksums but broken structure, hostile length fields, and
//! random bytes: every one is a clear error, never a panic or a large allocation.

use bytes::Bytes;
use kbs_format::{
    BatchFault, Compression, FormatError, ReadLimits, RecordFault, SegmentReader, SegmentStreamReader, verify_segment,
};
use proptest::prelude::*;

use crate::common::{decode_all_ways, reseal};

/// Zigzag varint, written by hand so the tests do not trust the crate's encoder.
fn varint(out: &mut Vec<u8>, n: i64) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A minimal record: no key, value `v`, no headers.
fn record(out: &mut Vec<u8>, offset_delta: i64, timestamp_delta: i64) {
    varint(out, offset_delta);
    varint(out, timestamp_delta);
    varint(out, -1);
    varint(out, 1);
    out.push(b'v');
    varint(out, 0);
}

struct Batch {
    base: i64,
    count: u32,
    payload: Vec<u8>,
}

/// Builds an uncompressed segment from raw batches with correct checksums.
fn segment(codec: Compression, first: i64, count: u64, last: i64, batches: &[Batch]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"KBS1");
    out.push(1);
    out.push(codec.code());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    for b in batches {
        out.extend_from_slice(&b.base.to_le_bytes());
        out.extend_from_slice(&b.count.to_le_bytes());
        out.extend_from_slice(&(b.payload.len() as u32).to_le_bytes());
        let uncompressed = match codec {
            Compression::Zstd => zstd::bulk::decompress(&b.payload, 1 << 20)
                .map(|v| v.len())
                .unwrap_or(0),
            _ => b.payload.len(),
        };
        out.extend_from_slice(&(uncompressed as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&b.payload);
    }
    out.extend_from_slice(&last.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(b"1SBK");
    reseal(&mut out);
    out
}

fn one_batch(payload: Vec<u8>, count: u32) -> Vec<Batch> {
    vec![Batch {
        base: 0,
        count,
        payload,
    }]
}

fn err(data: &[u8]) -> FormatError {
    decode_all_ways(data).expect_err("segment should be rejected")
}

#[test]
fn hand_built_segment_decodes() {
    let mut p = Vec::new();
    record(&mut p, 0, 1000);
    record(&mut p, 2, -5);
    let data = segment(Compression::None, 0, 2, 2, &one_batch(p, 2));
    let (records, summary) = decode_all_ways(&data).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!((records[1].offset, records[1].timestamp), (2, 995));
    assert_eq!((summary.min_timestamp, summary.max_timestamp), (995, 1000));
}

#[test]
fn non_canonical_varint_is_rejected() {
    let mut p = vec![0x80, 0x00]; // offset delta 0 in two bytes
    varint(&mut p, 1000);
    varint(&mut p, -1);
    varint(&mut p, -1);
    varint(&mut p, 0);
    let e = err(&segment(Compression::None, 0, 1, 0, &one_batch(p, 1)));
    assert!(
        matches!(
            e,
            FormatError::InvalidRecord {
                fault: RecordFault::NonCanonicalVarint,
                payload_offset: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn overlong_varint_is_rejected() {
    let mut p = Vec::new();
    varint(&mut p, 0);
    p.extend_from_slice(&[0xff; 11]); // timestamp varlong of 11 bytes
    let e = err(&segment(Compression::None, 0, 1, 0, &one_batch(p, 1)));
    assert!(
        matches!(
            e,
            FormatError::InvalidRecord {
                fault: RecordFault::VarintOverflow,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn offsets_must_strictly_increase_across_batches() {
    let mut a = Vec::new();
    record(&mut a, 0, 0);
    let mut b = Vec::new();
    record(&mut b, 0, 0);
    let batches = vec![
        Batch {
            base: 10,
            count: 1,
            payload: a,
        },
        Batch {
            base: 10,
            count: 1,
            payload: b,
        },
    ];
    let e = err(&segment(Compression::None, 10, 2, 10, &batches));
    assert!(
        matches!(
            e,
            FormatError::OffsetOrder {
                previous: 10,
                found: 10,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn negative_offset_delta_is_rejected() {
    let mut p = Vec::new();
    record(&mut p, -1, 0);
    let e = err(&segment(
        Compression::None,
        9,
        1,
        9,
        &[Batch {
            base: 10,
            count: 1,
            payload: p,
        }],
    ));
    assert!(
        matches!(
            e,
            FormatError::InvalidRecord {
                fault: RecordFault::InvalidOffsetDelta { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn trailing_bytes_in_a_payload_are_rejected() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    p.push(0);
    let e = err(&segment(Compression::None, 0, 1, 0, &one_batch(p, 1)));
    assert!(
        matches!(
            e,
            FormatError::InvalidRecord {
                fault: RecordFault::TrailingBytes { len: 1 },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn missing_records_are_rejected() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    let e = err(&segment(Compression::None, 0, 2, 0, &one_batch(p, 2)));
    assert!(
        matches!(
            e,
            FormatError::InvalidBatch {
                reason: BatchFault::MissingRecords { declared: 2, found: 1 },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn header_and_footer_must_match_the_records() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    record(&mut p, 1, 0);
    let b = || one_batch(p.clone(), 2);
    let e = err(&segment(Compression::None, 1, 2, 1, &b()));
    assert!(
        matches!(
            e,
            FormatError::SummaryMismatch {
                field: "first offset",
                ..
            }
        ),
        "{e}"
    );
    let e = err(&segment(Compression::None, 0, 2, 7, &b()));
    assert!(
        matches!(
            e,
            FormatError::SummaryMismatch {
                field: "last offset",
                ..
            }
        ),
        "{e}"
    );
    let e = err(&segment(Compression::None, 0, 3, 1, &b()));
    assert!(
        matches!(
            e,
            FormatError::SummaryMismatch {
                field: "record count",
                ..
            }
        ),
        "{e}"
    );
    let e = err(&segment(Compression::None, 0, 1, 1, &b()));
    assert!(
        matches!(
            e,
            FormatError::InvalidBatch {
                reason: BatchFault::ExcessRecords { declared: 1 },
                ..
            }
        ),
        "{e}"
    );
    let e = err(&segment(Compression::None, 0, 0, 1, &b()));
    assert!(matches!(e, FormatError::EmptySegment), "{e}");
}

#[test]
fn zero_record_batch_is_rejected() {
    let e = err(&segment(Compression::None, 0, 1, 0, &one_batch(Vec::new(), 0)));
    assert!(
        matches!(
            e,
            FormatError::InvalidBatch {
                reason: BatchFault::NoRecords,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn zstd_payload_with_two_frames_is_rejected() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    let mut frames = zstd::bulk::compress(&p, 3).unwrap();
    frames.extend(zstd::bulk::compress(&p, 3).unwrap());
    let mut data = segment(Compression::Zstd, 0, 1, 0, &one_batch(frames, 1));
    // Declare the size of one frame's content.
    data[32 + 16..32 + 20].copy_from_slice(&(p.len() as u32).to_le_bytes());
    reseal(&mut data);
    let e = err(&data);
    assert!(
        matches!(
            e,
            FormatError::Decompress {
                codec: Compression::Zstd,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn decompression_is_bounded_by_the_declared_size() {
    // A zstd bomb: 16 MiB of zeros compress to a few hundred bytes; declare 100 bytes.
    let bomb = zstd::bulk::compress(&vec![0u8; 16 << 20], 19).unwrap();
    let mut data = segment(Compression::Zstd, 0, 1, 0, &one_batch(bomb, 1));
    data[32 + 16..32 + 20].copy_from_slice(&100u32.to_le_bytes());
    reseal(&mut data);
    assert!(matches!(err(&data), FormatError::Decompress { .. }));

    let lz4_bomb = lz4::block::compress(&vec![0u8; 16 << 20], None, false).unwrap();
    let mut data = segment(Compression::Lz4, 0, 1, 0, &one_batch(lz4_bomb, 1));
    data[32 + 16..32 + 20].copy_from_slice(&100u32.to_le_bytes());
    reseal(&mut data);
    assert!(matches!(
        err(&data),
        FormatError::Decompress {
            codec: Compression::Lz4,
            ..
        }
    ));
}

#[test]
fn declared_sizes_over_the_limit_are_refused_before_allocating() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    let mut data = segment(Compression::Lz4, 0, 1, 0, &one_batch(p, 1));
    data[32 + 16..32 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut data);
    let e = verify_segment(&data, ReadLimits::default()).unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::BatchTooLarge {
                what: "uncompressed",
                size: u32::MAX,
                ..
            }
        ),
        "{e}"
    );
    let limits = ReadLimits::with_max_batch_bytes(16);
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    p.extend_from_slice(&[0; 20]);
    let data = segment(Compression::None, 0, 1, 0, &one_batch(p, 1));
    let e = SegmentReader::with_limits(Bytes::from(data), limits)
        .unwrap()
        .to_records()
        .unwrap_err();
    assert!(matches!(e, FormatError::BatchTooLarge { limit: 16, .. }), "{e}");
}

#[test]
fn stream_declaring_a_huge_payload_fails_without_allocating_it() {
    // A 3 GiB payload declared in a stream that ends right after the batch header: the limit
    // allows it, but the reader only grows its buffer as bytes arrive.
    let mut data = Vec::new();
    data.extend_from_slice(b"KBS1\x01\x00\x00\x00");
    data.extend_from_slice(&0i64.to_le_bytes());
    data.extend_from_slice(&1u64.to_le_bytes());
    data.extend_from_slice(&[0; 8]);
    data.extend_from_slice(&0i64.to_le_bytes());
    data.extend_from_slice(&1u32.to_le_bytes());
    data.extend_from_slice(&(3u32 << 30).to_le_bytes());
    data.extend_from_slice(&(3u32 << 30).to_le_bytes());
    data.extend_from_slice(&[0; 4]);
    let reader = SegmentStreamReader::with_limits(&data[..], ReadLimits::with_max_batch_bytes(u32::MAX));
    let e = reader.unwrap().read_to_records().unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::UnexpectedEnd {
                what: "batch payload",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn stream_reader_reports_trailing_bytes() {
    let mut p = Vec::new();
    record(&mut p, 0, 0);
    let mut data = segment(Compression::None, 0, 1, 0, &one_batch(p, 1));
    data.extend_from_slice(b"junk");
    let e = SegmentStreamReader::new(&data[..])
        .unwrap()
        .read_to_records()
        .unwrap_err();
    assert!(matches!(e, FormatError::TrailingBytes { .. }), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_all_ways(&data);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        codec in 0u8..3,
        count in 1u64..5,
    ) {
        let mut data = Vec::new();
        data.extend_from_slice(b"KBS1\x01");
        data.push(codec);
        data.extend_from_slice(&[0, 0]);
        data.extend_from_slice(&0i64.to_le_bytes());
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&body);
        data.extend_from_slice(&0i64.to_le_bytes());
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(b"1SBK");
        reseal(&mut data);
        let _ = decode_all_ways(&data);
    }
}
