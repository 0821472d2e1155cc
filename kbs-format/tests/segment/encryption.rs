//! Encrypted segments (format 1.1): round trips through every reader, the committed golden
//! vector, and every way a bucket owner could alter one — each must give a clear error, never a
//! record.

use std::path::PathBuf;

use bytes::Bytes;
use kbs_format::{
    Compression, FormatError, Identities, ReadLimits, Recipients, Record, SegmentReader, SegmentStreamReader,
    SegmentSummary, SegmentWriter, WriterOptions, verify_segment, verify_segment_keyless,
    verify_segment_with_identities,
};
use proptest::prelude::*;

use crate::common::{codec, decode_all_ways};

/// Decodes an encrypted segment with every reader and checks they agree.
fn decode_encrypted(data: &[u8], identities: &Identities) -> Result<(Vec<Record>, SegmentSummary), FormatError> {
    let limits = ReadLimits::default();
    let verified = verify_segment_with_identities(data, limits, identities);
    let in_memory =
        SegmentReader::with_identities(Bytes::copy_from_slice(data), limits, identities).and_then(|r| r.to_records());
    let streamed = SegmentStreamReader::with_identities(data, limits, identities).and_then(|r| r.read_to_records());
    match (verified, in_memory, streamed) {
        (Ok(summary), Ok(records), Ok((streamed_records, streamed_summary))) => {
            assert_eq!(records, streamed_records, "stream and memory readers disagree");
            assert_eq!(summary, streamed_summary, "stream reader and verifier disagree");
            Ok((records, summary))
        }
        (Err(e), Err(_), Err(_)) => Err(e),
        (v, m, s) => panic!(
            "readers disagree: verify={:?} memory={:?} stream={:?}",
            v.err(),
            m.err(),
            s.err()
        ),
    }
}

fn records(count: i64, value_bytes: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            offset: 100 + i * 2,
            timestamp: 1_700_000_000_000 + (i % 7) * 1000 - 3000,
            key: (i % 5 != 0).then(|| Bytes::from(format!("key-{}", i % 13))),
            value: (i % 11 != 0).then(|| Bytes::from(vec![b'a' + (i % 26) as u8; value_bytes])),
            headers: vec![kbs_format::Header::new(
                Bytes::from("h"),
                Some(Bytes::from(i.to_string())),
            )],
        })
        .collect()
}

fn encrypt(records: &[Record], options: WriterOptions, recipients: &Recipients) -> Vec<u8> {
    let mut writer = SegmentWriter::in_memory_encrypted(options, recipients).unwrap();
    for record in records {
        writer.append(record).unwrap();
    }
    writer.finish().unwrap().0.into_inner()
}

/// The positions of the batches of an encrypted segment: (header start, end of payload).
fn batches(data: &[u8]) -> Vec<(usize, usize)> {
    let block = u32::from_le_bytes(data[32..36].try_into().unwrap()) as usize;
    let end = data.len() - 16 - 40;
    let mut pos = 36 + block;
    let mut out = Vec::new();
    while pos < end {
        let size = u32::from_le_bytes(data[pos + 12..pos + 16].try_into().unwrap()) as usize;
        out.push((pos, pos + 24 + size));
        pos += 24 + size;
    }
    assert_eq!(pos, end, "batch walk must end at the trailer");
    out
}

/// Recomputes the batch CRC-32s, the footer's header CRC-32 and the CRC-64 after an edit, so
/// only the authentication tags can catch it.
fn fix_checksums(data: &mut [u8]) {
    for (start, end) in batches(data) {
        let crc = crc32fast::hash(&data[start + 24..end]);
        data[start + 20..start + 24].copy_from_slice(&crc.to_le_bytes());
    }
    let footer = data.len() - 16;
    let header_crc = crc32fast::hash(&data[..24]);
    data[footer + 8..footer + 12].copy_from_slice(&header_crc.to_le_bytes());
    let crc64 = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data[32..]);
    data[24..32].copy_from_slice(&crc64.to_le_bytes());
}

fn options(codec: Compression) -> WriterOptions {
    WriterOptions::new(codec).target_batch_bytes(2048)
}

fn keys() -> (Identities, Recipients) {
    let identities = Identities::generate();
    let recipients = Recipients::parse(identities.recipients()).unwrap();
    (identities, recipients)
}

fn assert_auth_failure(result: Result<(Vec<Record>, SegmentSummary), FormatError>, what: &str) {
    match result {
        Err(FormatError::AuthenticationFailed { .. }) => {}
        other => panic!("{what}: expected an authentication failure, got {other:?}"),
    }
}

#[test]
fn every_codec_round_trips_through_every_reader_and_headers_stay_readable_without_a_key() {
    let (identities, recipients) = keys();
    let input = records(400, 50);
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let data = encrypt(&input, options(codec), &recipients);
        assert_eq!(data[6] & 0x02, 0x02, "flag bit 1 marks the segment encrypted");
        let (decoded, summary) = decode_encrypted(&data, &identities).unwrap();
        assert_eq!(decoded, input, "{codec}");
        assert!(summary.encrypted && summary.batch_count > 3, "{codec}: {summary:?}");
        assert_eq!(summary.last_timestamp, input.last().unwrap().timestamp);

        // No value bytes in the clear: the payloads are sealed.
        let needle = vec![b'a'; 50];
        assert!(
            !data.windows(50).any(|w| w == needle.as_slice()),
            "{codec}: plaintext visible"
        );

        // Without a key: header and footer, and everything keyless verification checks.
        let head: &[u8; 32] = data[..32].try_into().unwrap();
        let tail: &[u8; 16] = data[data.len() - 16..].try_into().unwrap();
        let (header, footer) = kbs_format::decode_header_and_footer(head, tail, data.len() as u64).unwrap();
        assert!(header.encrypted);
        assert_eq!(
            (header.first_offset, footer.last_offset, header.record_count),
            (100, 898, 400)
        );
        let keyless = verify_segment_keyless(&data, ReadLimits::default()).unwrap();
        assert_eq!(keyless, summary, "{codec}: keyless summary equals the decrypted one");

        // Reading records without a key is refused, clearly.
        for result in [
            verify_segment(&data, ReadLimits::default()).map(|_| ()),
            SegmentReader::new(Bytes::from(data.clone())).map(|_| ()),
            SegmentStreamReader::new(&data[..]).map(|_| ()),
        ] {
            assert!(matches!(result, Err(FormatError::KeyRequired)), "{codec}: {result:?}");
        }
    }
}

#[test]
fn several_recipients_each_open_the_segment_and_a_stranger_does_not() {
    let alice = Identities::generate();
    let bob = Identities::generate();
    let recipients = Recipients::parse(alice.recipients().into_iter().chain(bob.recipients())).unwrap();
    let input = records(20, 10);
    let data = encrypt(&input, options(Compression::Lz4), &recipients);
    assert_eq!(decode_encrypted(&data, &alice).unwrap().0, input);
    assert_eq!(decode_encrypted(&data, &bob).unwrap().0, input);
    let stranger = Identities::generate();
    for result in [
        verify_segment_with_identities(&data, ReadLimits::default(), &stranger).map(|_| ()),
        SegmentReader::with_identities(Bytes::from(data.clone()), ReadLimits::default(), &stranger).map(|_| ()),
        SegmentStreamReader::with_identities(&data[..], ReadLimits::default(), &stranger).map(|_| ()),
    ] {
        assert!(matches!(result, Err(FormatError::NoMatchingIdentity)), "{result:?}");
    }
    // An identity file may hold several keys; one matching is enough.
    let both = Identities::parse(&format!(
        "# created for a test\n{}\n\n{}",
        stranger.to_file_text().as_str(),
        bob.to_file_text().as_str()
    ))
    .unwrap();
    assert_eq!(decode_encrypted(&data, &both).unwrap().0, input);
}

#[test]
fn reordered_dropped_spliced_and_flipped_batches_fail_their_tags_behind_valid_checksums() {
    let (identities, recipients) = keys();
    let input = records(300, 40);
    let data = encrypt(&input, options(Compression::None), &recipients);
    let spans = batches(&data);
    assert!(spans.len() >= 4);

    // Two batches swapped (sizes differ, so rebuild the body).
    let mut swapped = data[..spans[0].0].to_vec();
    swapped.extend_from_slice(&data[spans[1].0..spans[1].1]);
    swapped.extend_from_slice(&data[spans[0].0..spans[0].1]);
    swapped.extend_from_slice(&data[spans[1].1..]);
    fix_checksums(&mut swapped);
    assert_auth_failure(decode_encrypted(&swapped, &identities), "swapped batches");

    // A batch repeated in place of the next one.
    let mut repeated = data[..spans[1].0].to_vec();
    repeated.extend_from_slice(&data[spans[0].0..spans[0].1]);
    repeated.extend_from_slice(&data[spans[1].1..]);
    fix_checksums(&mut repeated);
    assert!(decode_encrypted(&repeated, &identities).is_err(), "repeated batch");

    // One ciphertext bit flipped.
    let mut flipped = data.clone();
    flipped[spans[2].0 + 30] ^= 0x01;
    fix_checksums(&mut flipped);
    assert_auth_failure(decode_encrypted(&flipped, &identities), "flipped bit");

    // A batch header's base offset changed (it is associated data).
    let mut moved = data.clone();
    moved[spans[1].0] ^= 0x01;
    fix_checksums(&mut moved);
    assert_auth_failure(decode_encrypted(&moved, &identities), "changed base offset");

    // The first offset in the segment header changed (associated data of every batch).
    let mut renumbered = data.clone();
    renumbered[8] ^= 0x01;
    fix_checksums(&mut renumbered);
    assert!(
        decode_encrypted(&renumbered, &identities).is_err(),
        "changed first offset"
    );

    // The trailer's timestamps changed.
    let mut retimed = data.clone();
    let trailer = data.len() - 16 - 40;
    retimed[trailer] ^= 0x01;
    fix_checksums(&mut retimed);
    assert_auth_failure(decode_encrypted(&retimed, &identities), "changed trailer");

    // The last batch cut off, with the header's record count and the footer's last offset
    // rewritten to match what remains: only the trailer's tag can tell.
    let (last_start, last_end) = *spans.last().unwrap();
    let kept: Vec<Record> = input
        .iter()
        .filter(|r| r.offset < i64::from_le_bytes(data[last_start..last_start + 8].try_into().unwrap()))
        .cloned()
        .collect();
    let mut truncated = data[..last_start].to_vec();
    truncated.extend_from_slice(&data[last_end..]);
    truncated[16..24].copy_from_slice(&(kept.len() as u64).to_le_bytes());
    let footer = truncated.len() - 16;
    truncated[footer..footer + 8].copy_from_slice(&kept.last().unwrap().offset.to_le_bytes());
    fix_checksums(&mut truncated);
    assert_auth_failure(decode_encrypted(&truncated, &identities), "truncated");

    // A batch spliced in from another segment of the same records and recipients.
    let other = encrypt(&input, options(Compression::None), &recipients);
    let other_spans = batches(&other);
    assert_eq!(other_spans.len(), spans.len());
    let mut spliced = data[..spans[1].0].to_vec();
    spliced.extend_from_slice(&other[other_spans[1].0..other_spans[1].1]);
    spliced.extend_from_slice(&data[spans[1].1..]);
    fix_checksums(&mut spliced);
    assert_auth_failure(decode_encrypted(&spliced, &identities), "spliced batch");

    // Another segment's key block in front of this segment's batches.
    let other_block = u32::from_le_bytes(other[32..36].try_into().unwrap()) as usize;
    let block = u32::from_le_bytes(data[32..36].try_into().unwrap()) as usize;
    let mut rekeyed = data[..32].to_vec();
    rekeyed.extend_from_slice(&other[32..36 + other_block]);
    rekeyed.extend_from_slice(&data[36 + block..]);
    fix_checksums(&mut rekeyed);
    assert_auth_failure(decode_encrypted(&rekeyed, &identities), "swapped key block");

    // The untouched segment still reads.
    assert_eq!(decode_encrypted(&data, &identities).unwrap().0, input);
}

#[test]
fn hostile_key_blocks_give_clear_errors_without_allocating() {
    let (identities, recipients) = keys();
    let data = encrypt(&records(5, 10), options(Compression::Lz4), &recipients);
    for (declared, what) in [(0u32, "outside"), (u32::MAX, "outside"), (60_000, "runs past")] {
        let mut bad = data.clone();
        bad[32..36].copy_from_slice(&declared.to_le_bytes());
        fix_checksums_header_only(&mut bad);
        for result in [
            verify_segment_with_identities(&bad, ReadLimits::default(), &identities).map(|_| ()),
            verify_segment_keyless(&bad, ReadLimits::default()).map(|_| ()),
            SegmentStreamReader::with_identities(&bad[..], ReadLimits::default(), &identities).map(|_| ()),
        ] {
            match result {
                Err(FormatError::InvalidKeyBlock { reason }) => assert!(reason.contains(what), "{reason}"),
                other => panic!("declared {declared}: {other:?}"),
            }
        }
    }
    // A key block that is not an age file.
    let mut garbage = data.clone();
    garbage[40..60].fill(b'x');
    fix_checksums_header_only(&mut garbage);
    let result = verify_segment_with_identities(&garbage, ReadLimits::default(), &identities);
    assert!(matches!(result, Err(FormatError::InvalidKeyBlock { .. })), "{result:?}");
}

/// Only the CRC-64 and footer CRC (the batch walk cannot be trusted after a key block edit).
fn fix_checksums_header_only(data: &mut [u8]) {
    let crc64 = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data[32..]);
    data[24..32].copy_from_slice(&crc64.to_le_bytes());
}

#[test]
fn keys_parse_strictly_and_never_quote_a_secret() {
    let identities = Identities::generate();
    let secret = identities.to_file_text();
    assert!(secret.starts_with("AGE-SECRET-KEY-1"));
    assert!(!format!("{identities:?}").contains("AGE-SECRET-KEY"));
    // One character of the checksum changed: bech32 detects every single substitution.
    let key = secret.trim();
    let last = if key.ends_with('Q') { 'P' } else { 'Q' };
    let almost = format!("{}{last}", &key[..key.len() - 1]);
    let err = Identities::parse(&almost).unwrap_err().to_string();
    assert!(!err.contains(&almost[10..]), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(Identities::parse("# nothing\n\n").is_err());
    let err = Recipients::parse(["age1notakey"]).unwrap_err().to_string();
    assert!(err.contains("age1notakey"), "public keys may be quoted: {err}");
    assert!(Recipients::parse(Vec::<String>::new()).is_err());
    let public = identities.recipients();
    let twice = Recipients::parse([public[0].as_str(), public[0].as_str()]).unwrap();
    assert_eq!(twice.to_strings(), public, "duplicates dropped");
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The committed encrypted vectors: `encrypted-NAME.kbs` hold the records of the plain vector
/// `NAME.kbs`, encrypted to the test identity in `encrypted.identity` (a key made for these
/// tests only). Encryption is randomized, so `KBS_BLESS=1` writes new bytes each time.
#[test]
fn golden_encrypted_vectors_decode_to_their_plain_twins() {
    let identities =
        Identities::parse(&std::fs::read_to_string(data_dir().join("encrypted.identity")).unwrap()).unwrap();
    for name in ["none-basic", "lz4-basic", "mixed-lz4"] {
        let plain = std::fs::read(data_dir().join(format!("{name}.kbs"))).unwrap();
        let (expected, plain_summary) = decode_all_ways(&plain).unwrap();
        let path = data_dir().join(format!("encrypted-{name}.kbs"));
        if std::env::var_os("KBS_BLESS").is_some() {
            let recipients = Recipients::parse(identities.recipients()).unwrap();
            let codec = codec(plain_summary.compression.name());
            let reader = SegmentReader::new(Bytes::from(plain.clone())).unwrap();
            let options = WriterOptions::new(codec).per_record_crc(reader.header().per_record_crc);
            let options = if name == "mixed-lz4" {
                options.target_batch_bytes(256)
            } else {
                options
            };
            std::fs::write(&path, encrypt(&expected, options, &recipients)).unwrap();
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}; run with KBS_BLESS=1"));
        let (records, summary) = decode_encrypted(&data, &identities).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(records, expected, "{name}");
        assert!(summary.encrypted);
        assert_eq!(summary.compression, plain_summary.compression);
        assert_eq!(
            (summary.first_offset, summary.last_offset, summary.record_count),
            (
                plain_summary.first_offset,
                plain_summary.last_offset,
                plain_summary.record_count
            )
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn arbitrary_records_round_trip_encrypted(
        count in 1i64..200,
        value_bytes in 0usize..300,
        codec in prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
        batch in 64usize..4096,
        per_record_crc: bool,
    ) {
        let (identities, recipients) = keys();
        let input = records(count, value_bytes);
        let options = WriterOptions::new(codec).target_batch_bytes(batch).per_record_crc(per_record_crc);
        let data = encrypt(&input, options, &recipients);
        let (decoded, summary) = decode_encrypted(&data, &identities).unwrap();
        prop_assert_eq!(decoded, input);
        prop_assert_eq!(verify_segment_keyless(&data, ReadLimits::default()).unwrap(), summary);
    }
}
