use bytes::Bytes;
use proptest::prelude::*;

use super::spec::{CONTROL, SpecBatch, SpecRecord, TRANSACTIONAL};
use super::*;

const OPTIONS: DecodeOptions = DecodeOptions {
    read_committed: true,
    max_decompressed: 64 << 20,
};
const CODECS: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

fn header(key: &[u8], value: Option<&[u8]>) -> RecordHeader {
    RecordHeader {
        key: Bytes::copy_from_slice(key),
        value: value.map(Bytes::copy_from_slice),
    }
}

fn sample_records() -> Vec<ProduceRecord> {
    vec![
        ProduceRecord {
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"{\"n\":1}")),
            headers: vec![
                header(b"trace", Some(b"a")),
                header(b"trace", Some(b"b")),
                header(b"null", None),
            ],
        },
        // Tombstone with an empty key.
        ProduceRecord {
            timestamp: 1_700_000_000_005,
            key: Some(Bytes::new()),
            value: None,
            headers: vec![],
        },
        // Null key, empty value, an earlier timestamp (negative delta).
        ProduceRecord {
            timestamp: 1_699_999_999_000,
            key: None,
            value: Some(Bytes::new()),
            headers: vec![header(b"", Some(b"")), header(b"\xff\x00bin", None)],
        },
    ]
}

fn expected(records: &[ProduceRecord], base_offset: i64) -> Vec<Record> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: base_offset + i as i64,
            timestamp: r.timestamp,
            timestamp_type: TimestampType::CreateTime,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect()
}

/// An encoded batch moved to `base_offset` (the base offset is outside the CRC).
fn batch_at(records: &[ProduceRecord], codec: Codec, base_offset: i64) -> Vec<u8> {
    let mut bytes = encode_batch(records, codec).unwrap().seal(42, 3, 0).to_vec();
    bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes
}

#[test]
fn round_trip_every_codec_with_exact_header_fields() {
    let records = sample_records();
    for codec in CODECS {
        let sealed = encode_batch(&records, codec).unwrap().seal(42, 3, 17);
        let header = BatchHeader::parse(&sealed);
        assert_eq!(header.magic, 2);
        assert_eq!(header.batch_length as usize, sealed.len() - LOG_OVERHEAD);
        assert_eq!(header.attributes, codec as i16);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_005);
        assert_eq!(
            (header.producer_id, header.producer_epoch, header.base_sequence),
            (42, 3, 17)
        );
        assert_eq!(header.record_count, 3);
        assert_eq!(header.partition_leader_epoch, -1);
        assert_eq!(header.crc, crc32c::crc32c(&sealed[CRC_START..]));
        let decoded = decode_records(&sealed, 0, &[], OPTIONS);
        assert_eq!(decoded.fault, None, "{codec:?}");
        assert_eq!(decoded.partial, None);
        assert_eq!(decoded.records, expected(&records, 0), "{codec:?}");
        assert_eq!(decoded.next_offset, Some(3));
    }
}

#[test]
fn uncompressed_fields_are_zero_copy_slices_of_the_response() {
    let data = Bytes::from(batch_at(&sample_records(), Codec::None, 0));
    let decoded = decode_records(&data, 0, &[], OPTIONS);
    let key = decoded.records[0].key.as_ref().unwrap();
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    assert!(range.contains(&(key.as_ptr() as usize)));
}

#[test]
fn encoder_rejects_empty_batches_and_unrepresentable_timestamps() {
    assert_eq!(encode_batch(&[], Codec::None).unwrap_err(), EncodeFault::Empty);
    let records = [
        ProduceRecord {
            timestamp: i64::MAX,
            ..ProduceRecord::default()
        },
        ProduceRecord {
            timestamp: -10,
            ..ProduceRecord::default()
        },
    ];
    assert!(matches!(
        encode_batch(&records, Codec::None),
        Err(EncodeFault::Timestamp(_))
    ));
}

#[test]
fn many_batches_truncated_anywhere_keep_every_complete_batch() {
    let first = batch_at(&sample_records(), Codec::Lz4, 100);
    let second = batch_at(&sample_records()[..1], Codec::None, 103);
    let data: Vec<u8> = [first.clone(), second.clone()].concat();
    let all = decode_records(&Bytes::from(data.clone()), 100, &[], OPTIONS);
    assert_eq!(all.records.len(), 4);
    assert_eq!(all.next_offset, Some(104));
    for cut in 0..data.len() {
        let decoded = decode_records(&Bytes::copy_from_slice(&data[..cut]), 100, &[], OPTIONS);
        assert_eq!(decoded.fault, None, "cut at {cut}");
        if cut < first.len() {
            assert!(decoded.records.is_empty());
            assert_eq!(decoded.next_offset, None);
            assert_eq!(decoded.partial.is_some(), cut > 0);
        } else {
            assert_eq!(decoded.records, all.records[..3], "cut at {cut}");
            assert_eq!(decoded.next_offset, Some(103));
            assert_eq!(decoded.partial.is_some(), cut > first.len());
        }
        if let Some(partial) = decoded.partial
            && partial.present >= LOG_OVERHEAD
        {
            let expected_size = if cut < first.len() { first.len() } else { second.len() };
            assert_eq!(partial.size, Some(expected_size));
        }
    }
}

#[test]
fn records_before_the_fetch_offset_are_dropped() {
    let data = Bytes::from(batch_at(&sample_records(), Codec::Zstd, 10));
    let decoded = decode_records(&data, 12, &[], OPTIONS);
    assert_eq!(decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![12]);
    assert_eq!(decoded.next_offset, Some(13));
}

#[test]
fn a_corrupt_batch_stops_decoding_and_keeps_what_came_before() {
    let good = batch_at(&sample_records(), Codec::None, 0);
    let mut bad = batch_at(&sample_records(), Codec::Gzip, 3);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let data = Bytes::from([good, bad].concat());
    let decoded = decode_records(&data, 0, &[], OPTIONS);
    assert_eq!(decoded.records.len(), 3);
    assert_eq!(decoded.next_offset, Some(3));
    match decoded.fault {
        Some(BatchFault::Corrupt { base_offset: 3, reason }) => assert!(reason.contains("CRC-32C"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn legacy_message_formats_are_reported_not_misread() {
    let mut data = batch_at(&sample_records(), Codec::None, 0);
    data[16] = 1;
    let decoded = decode_records(&Bytes::from(data), 0, &[], OPTIONS);
    assert_eq!(
        decoded.fault,
        Some(BatchFault::UnsupportedMagic {
            base_offset: 0,
            magic: 1
        })
    );
}

#[test]
fn decompression_is_bounded() {
    let big = vec![ProduceRecord {
        value: Some(Bytes::from(vec![7u8; 1 << 20])),
        ..ProduceRecord::default()
    }];
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let data = Bytes::from(batch_at(&big, codec, 0));
        assert!(data.len() < 100_000, "{codec:?} compresses the repeated value");
        let options = DecodeOptions {
            read_committed: true,
            max_decompressed: 1 << 19,
        };
        let decoded = decode_records(&data, 0, &[], options);
        assert_eq!(
            decoded.fault,
            Some(BatchFault::TooLarge {
                base_offset: 0,
                limit: 1 << 19
            }),
            "{codec:?}"
        );
    }
}

#[test]
fn log_append_time_gives_every_record_the_max_timestamp() {
    let mut batch = SpecBatch::data(0, -1, false, &["a", "b"]);
    batch.attributes |= 0x08;
    batch.max_timestamp = 1_800_000_000_000;
    let decoded = decode_records(&Bytes::from(batch.to_bytes()), 0, &[], OPTIONS);
    assert!(
        decoded
            .records
            .iter()
            .all(|r| r.timestamp == 1_800_000_000_000 && r.timestamp_type == TimestampType::LogAppendTime)
    );
}

#[test]
fn compacted_and_emptied_batches_advance_the_next_offset() {
    // Compaction kept offsets 3 and 7 of a batch covering 0..=9, then emptied 10..=14 entirely.
    let mut compacted = SpecBatch::data(0, -1, false, &["x", "y"]);
    compacted.records[0].offset_delta = 3;
    compacted.records[1].offset_delta = 7;
    compacted.last_offset_delta = 9;
    let mut empty = SpecBatch::data(10, -1, false, &[]);
    empty.last_offset_delta = 4;
    let data = Bytes::from([compacted.to_bytes(), empty.to_bytes()].concat());
    let decoded = decode_records(&data, 0, &[], OPTIONS);
    assert_eq!(decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 7]);
    assert_eq!(decoded.next_offset, Some(15));
    assert_eq!(decoded.batches, 2);
    let only_empty = decode_records(&Bytes::from(empty.to_bytes()), 12, &[], OPTIONS);
    assert!(only_empty.records.is_empty());
    assert_eq!(only_empty.next_offset, Some(15));
}

#[test]
fn control_batches_are_dropped_and_aborted_transactions_filtered() {
    // Producer 7 aborts offsets 0-1, producer 8 commits 2-3 (interleaved), producer 7 then
    // commits a second transaction 6-7.
    let batches = [
        SpecBatch::data(0, 7, true, &["aborted-1", "aborted-2"]),
        SpecBatch::data(2, 8, true, &["committed-1", "committed-2"]),
        SpecBatch::control(4, 7, false),
        SpecBatch::control(5, 8, true),
        SpecBatch::data(6, 7, true, &["committed-3", "committed-4"]),
        SpecBatch::control(8, 7, true),
        SpecBatch::data(9, -1, false, &["plain"]),
    ];
    let data = Bytes::from(batches.iter().flat_map(SpecBatch::to_bytes).collect::<Vec<u8>>());
    let aborted = [AbortedTransaction {
        producer_id: 7,
        first_offset: 0,
    }];
    let committed = decode_records(&data, 0, &aborted, OPTIONS);
    let values: Vec<&[u8]> = committed.records.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(
        values,
        vec![
            &b"committed-1"[..],
            b"committed-2",
            b"committed-3",
            b"committed-4",
            b"plain"
        ]
    );
    assert_eq!(committed.next_offset, Some(10));
    let uncommitted = decode_records(
        &data,
        0,
        &aborted,
        DecodeOptions {
            read_committed: false,
            ..OPTIONS
        },
    );
    assert_eq!(uncommitted.records.len(), 7, "everything but the three control records");
    assert_eq!(
        uncommitted.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 6, 7, 9]
    );
}

#[test]
fn hostile_counts_do_not_allocate_and_are_reported() {
    let mut batch = SpecBatch::data(0, -1, false, &["a"]);
    batch.records[0].headers = vec![(b"k".to_vec(), None); 3];
    let mut bytes = batch.to_bytes();
    // Claim i32::MAX records, fix the CRC so the parser is reached.
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let decoded = decode_records(&Bytes::from(bytes), 0, &[], OPTIONS);
    assert!(
        matches!(decoded.fault, Some(BatchFault::Corrupt { .. })),
        "{:?}",
        decoded.fault
    );
    assert!(decoded.records.capacity() < 1000);
}

#[test]
fn snappy_from_librdkafka_is_raw_and_decodes() {
    let mut batch = SpecBatch::data(0, -1, false, &["raw", "snappy"]);
    batch.attributes |= Codec::Snappy as i16;
    batch.compress = Some(|plain| snap::raw::Encoder::new().compress_vec(plain).unwrap());
    let decoded = decode_records(&Bytes::from(batch.to_bytes()), 0, &[], OPTIONS);
    assert_eq!(decoded.fault, None);
    assert_eq!(decoded.records.len(), 2);
}

#[test]
fn spec_builder_and_encoder_agree_byte_for_byte() {
    let records = sample_records();
    let base = records[0].timestamp;
    let spec = SpecBatch {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta: 2,
        base_timestamp: base,
        max_timestamp: 1_700_000_000_005,
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 9,
        records: records
            .iter()
            .enumerate()
            .map(|(i, r)| SpecRecord {
                offset_delta: i as i32,
                timestamp_delta: r.timestamp - base,
                key: r.key.as_ref().map(|b| b.to_vec()),
                value: r.value.as_ref().map(|b| b.to_vec()),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.key.to_vec(), h.value.as_ref().map(|v| v.to_vec())))
                    .collect(),
            })
            .collect(),
        compress: None,
    };
    assert_eq!(
        encode_batch(&records, Codec::None).unwrap().seal(42, 3, 9).to_vec(),
        spec.to_bytes()
    );
}

#[test]
fn control_attribute_without_a_record_is_corrupt() {
    let mut batch = SpecBatch::data(0, 7, true, &[]);
    batch.attributes |= CONTROL | TRANSACTIONAL;
    batch.last_offset_delta = 0;
    let decoded = decode_records(&Bytes::from(batch.to_bytes()), 0, &[], OPTIONS);
    assert!(matches!(decoded.fault, Some(BatchFault::Corrupt { .. })));
}

fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Bytes::new())),
        4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Some(Bytes::from(v))),
    ]
}

fn arb_record() -> impl Strategy<Value = ProduceRecord> {
    let header = (
        proptest::collection::vec(prop_oneof![Just(b'k'), any::<u8>()], 0..4),
        arb_bytes(),
    )
        .prop_map(|(k, value)| RecordHeader {
            key: Bytes::from(k),
            value,
        });
    (
        1_600_000_000_000i64..1_800_000_000_000,
        arb_bytes(),
        arb_bytes(),
        proptest::collection::vec(header, 0..5),
    )
        .prop_map(|(timestamp, key, value, headers)| ProduceRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_records_round_trip_with_every_codec(
        records in proptest::collection::vec(arb_record(), 1..40),
        codec in 0usize..5,
        base_offset in 0i64..1_000_000,
        sequence in 0i32..i32::MAX,
    ) {
        let codec = CODECS[codec];
        let mut bytes = encode_batch(&records, codec).unwrap().seal(1, 0, sequence).to_vec();
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        let decoded = decode_records(&Bytes::from(bytes), base_offset, &[], OPTIONS);
        prop_assert_eq!(decoded.fault, None);
        prop_assert_eq!(decoded.records, expected(&records, base_offset));
        prop_assert_eq!(decoded.next_offset, Some(base_offset + records.len() as i64));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let decoded = decode_records(&Bytes::from(data), 0, &[], OPTIONS);
        prop_assert!(decoded.records.len() <= 400);
    }

    #[test]
    fn mutated_batches_with_valid_crc_never_panic(
        records in proptest::collection::vec(arb_record(), 1..5),
        codec in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = encode_batch(&records, CODECS[codec]).unwrap().seal(1, 0, 0).to_vec();
        for (index, value) in flips {
            let at = CRC_START + index.index(bytes.len() - CRC_START);
            bytes[at] = value;
        }
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_records(&Bytes::from(bytes), 0, &[], OPTIONS);
        if decoded.fault.is_none() {
            prop_assert!(decoded.next_offset.is_some());
        }
    }
}
