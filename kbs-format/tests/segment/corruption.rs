//! Every single-bit flip and every truncation of small golden segments is an error for every
//! reader: never wrong records, never a panic.

use std::path::PathBuf;

use bytes::Bytes;
use kbs_format::{ReadLimits, SegmentReader, SegmentStreamReader, verify_segment};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// Asserts that no reader accepts `data`.
fn assert_rejected(data: &[u8], what: &str) {
    assert!(
        verify_segment(data, ReadLimits::default()).is_err(),
        "verify accepted {what}"
    );
    let memory = SegmentReader::new(Bytes::copy_from_slice(data)).and_then(|r| r.to_records());
    assert!(memory.is_err(), "in-memory reader accepted {what}");
    let stream = SegmentStreamReader::new(data).and_then(|r| r.read_to_records());
    assert!(stream.is_err(), "stream reader accepted {what}");
}

const SMALL_VECTORS: &[&str] = &[
    "tiny.kbs",
    "lz4-basic.kbs",
    "zstd-basic.kbs",
    "per-record-crc.kbs",
    "multi-batch.kbs",
    "mixed-lz4.kbs",
];

#[test]
fn every_bit_flip_is_detected() {
    for name in SMALL_VECTORS {
        let original = golden(name);
        let mut data = original.clone();
        for byte in 0..data.len() {
            for bit in 0..8 {
                data[byte] ^= 1 << bit;
                assert_rejected(&data, &format!("{name} with bit {bit} of byte {byte} flipped"));
                data[byte] ^= 1 << bit;
            }
        }
        assert_eq!(data, original);
    }
}

#[test]
fn every_truncation_is_detected() {
    for name in SMALL_VECTORS {
        let data = golden(name);
        for len in 0..data.len() {
            assert_rejected(&data[..len], &format!("{name} truncated to {len} bytes"));
        }
    }
}

#[test]
fn appended_bytes_are_detected() {
    for name in SMALL_VECTORS {
        let mut data = golden(name);
        data.push(0);
        assert_rejected(&data, &format!("{name} with a byte appended"));
    }
}

#[test]
fn memory_reader_yields_no_record_from_a_damaged_segment() {
    // The in-memory reader checks the CRC-64 before handing out anything: a flip anywhere
    // fails at open, so not even a prefix of records is produced.
    let mut data = golden("multi-batch.kbs");
    let last = data.len() - 20;
    data[last] ^= 0x10;
    let err = SegmentReader::new(Bytes::from(data)).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn errors_say_where() {
    let mut data = golden("multi-batch.kbs");
    // Damage the payload of the second batch: the error names that batch's position.
    let first_size = u32::from_le_bytes(data[32 + 12..32 + 16].try_into().unwrap()) as usize;
    let second = 32 + 24 + first_size;
    data[second + 24 + 2] ^= 0xff;
    let err = verify_segment(&data, ReadLimits::default()).unwrap_err();
    match err {
        kbs_format::FormatError::BatchChecksumMismatch { position, .. } => assert_eq!(position, second as u64),
        other => panic!("expected a batch checksum error, got {other}"),
    }
    assert!(err_string(&data).contains(&format!("byte {second}")));
}

fn err_string(data: &[u8]) -> String {
    verify_segment(data, ReadLimits::default()).unwrap_err().to_string()
}
