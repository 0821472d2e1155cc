//! Property tests: arbitrary records survive encode → decode through every reader, for every
//! codec and flag combination.

use bytes::Bytes;
use kbs_format::{Compression, Header, Record, SegmentWriter, WriterOptions, encode_segment};
use proptest::prelude::*;

use crate::common::decode_all_ways;

fn bytes_opt() -> impl Strategy<Value = Option<Bytes>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Bytes::new())),
        6 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|v| Some(Bytes::from(v))),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (proptest::collection::vec(any::<u8>(), 0..12), bytes_opt()).prop_map(|(k, v)| Header::new(Bytes::from(k), v))
}

/// Records with strictly increasing offsets (arbitrary gaps) and arbitrary timestamps.
fn records() -> impl Strategy<Value = Vec<Record>> {
    let one = (
        1i64..1_000,
        any::<i64>(),
        bytes_opt(),
        bytes_opt(),
        proptest::collection::vec(header(), 0..4),
    );
    (0i64..i64::MAX / 2, proptest::collection::vec(one, 1..40)).prop_map(|(start, items)| {
        let mut offset = start;
        items
            .into_iter()
            .map(|(gap, timestamp, key, value, headers)| {
                offset += gap;
                Record {
                    offset,
                    timestamp,
                    key,
                    value,
                    headers,
                }
            })
            .collect()
    })
}

fn options() -> impl Strategy<Value = WriterOptions> {
    (
        prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
        1i32..=9,
        prop_oneof![Just(1usize), 16usize..2048, Just(1 << 20)],
        any::<bool>(),
    )
        .prop_map(|(c, level, target, crc)| {
            WriterOptions::new(c)
                .zstd_level(level)
                .target_batch_bytes(target)
                .per_record_crc(crc)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_records_round_trip(records in records(), options in options()) {
        let (bytes, summary) = encode_segment(&records, options).unwrap();
        let (decoded, verified) = decode_all_ways(&bytes).unwrap();
        prop_assert_eq!(&decoded, &records);
        prop_assert_eq!(verified, summary);
        prop_assert_eq!(summary.record_count, records.len() as u64);
        prop_assert_eq!(summary.min_timestamp, records.iter().map(|r| r.timestamp).min().unwrap());
        prop_assert_eq!(summary.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        // Encoding is deterministic.
        let (again, _) = encode_segment(&decoded, options).unwrap();
        prop_assert_eq!(again, bytes);
    }
}

#[test]
fn extreme_timestamps_and_offsets_split_batches_instead_of_overflowing() {
    let records = vec![
        Record {
            offset: 0,
            timestamp: i64::MIN,
            ..Record::default()
        },
        Record {
            offset: 1,
            timestamp: i64::MAX,
            ..Record::default()
        },
        Record {
            offset: i64::from(i32::MAX) + 10,
            timestamp: 0,
            ..Record::default()
        },
        Record {
            offset: i64::MAX,
            timestamp: -1,
            ..Record::default()
        },
    ];
    for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let (bytes, summary) = encode_segment(&records, WriterOptions::new(c)).unwrap();
        assert!(summary.batch_count >= 3, "{c}: {summary:?}");
        assert_eq!(decode_all_ways(&bytes).unwrap().0, records);
    }
}

#[test]
fn writer_streams_to_a_file_at_a_nonzero_position() {
    use std::io::{Seek, Write};
    let mut file = tempfile_in_target();
    file.write_all(b"prefix").unwrap();
    let mut writer = SegmentWriter::new(&mut file, WriterOptions::new(Compression::Zstd)).unwrap();
    let records: Vec<Record> = (0..1000)
        .map(|i| Record {
            offset: i,
            timestamp: i,
            value: Some(Bytes::from(vec![i as u8; 300])),
            ..Record::default()
        })
        .collect();
    for r in &records {
        writer.append(r).unwrap();
    }
    let (_, summary) = writer.finish().unwrap();
    assert_eq!(file.stream_position().unwrap(), 6 + summary.size_bytes);
    file.rewind().unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut all).unwrap();
    assert_eq!(&all[..6], b"prefix");
    assert_eq!(decode_all_ways(&all[6..]).unwrap().0, records);
}

fn tempfile_in_target() -> std::fs::File {
    let dir = std::env::temp_dir().join(format!("kbs-format-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("segment.kbs");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = SegmentWriter::in_memory(WriterOptions::default()).unwrap();
    w.append(&Record {
        offset: 5,
        ..Record::default()
    })
    .unwrap();
    assert!(
        w.append(&Record {
            offset: 5,
            ..Record::default()
        })
        .is_err()
    );
    assert!(
        w.append(&Record {
            offset: 4,
            ..Record::default()
        })
        .is_err()
    );
    assert!(matches!(
        SegmentWriter::in_memory(WriterOptions::default()).unwrap().finish(),
        Err(kbs_format::FormatError::EmptySegment)
    ));
    assert!(SegmentWriter::in_memory(WriterOptions::new(Compression::Zstd).zstd_level(23)).is_err());
    assert!(SegmentWriter::in_memory(WriterOptions::new(Compression::Zstd).zstd_level(0)).is_err());
    assert!(SegmentWriter::in_memory(WriterOptions::default().target_batch_bytes(0)).is_err());
}
