//! Golden vectors under `tests/data/`: each `NAME.kbs` beside `NAME.json`, which holds the writer
//! options and the expected records (bytes as standard base64, `null` for null).
//!
//! Decoding each `.kbs` must give exactly the sidecar's records, and encoding the sidecar's
//! records with its options must give the `.kbs` byte for byte. Run with `KBS_BLESS=1` to
//! rewrite the vectors from the cases below (then review the diff).

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kbs_format::{Compression, Header, Record, WriterOptions, encode_segment};
use serde::{Deserialize, Serialize};

use crate::common::{codec, decode_all_ways};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Sidecar {
    description: String,
    options: Options,
    summary: SummaryJson,
    records: Vec<RecordJson>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Options {
    compression: String,
    zstd_level: i32,
    target_batch_bytes: usize,
    per_record_crc: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct SummaryJson {
    first_offset: i64,
    last_offset: i64,
    record_count: u64,
    batch_count: u64,
    min_timestamp: i64,
    max_timestamp: i64,
    size_bytes: u64,
    crc64: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct RecordJson {
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<HeaderJson>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct HeaderJson {
    key: String,
    value: Option<String>,
}

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

fn rec(offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>, headers: Vec<Header>) -> Record {
    Record {
        offset,
        timestamp,
        key,
        value,
        headers,
    }
}

fn h(key: &str, value: Option<&str>) -> Header {
    Header::new(
        Bytes::copy_from_slice(key.as_bytes()),
        value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    )
}

const T0: i64 = 1_763_700_000_000;

fn basic_records() -> Vec<Record> {
    (0..5)
        .map(|i| {
            rec(
                100 + i,
                T0 + i * 10,
                b(&format!("user-{i}")),
                b(&format!(
                    "{{\"id\":{i},\"name\":\"n{i}\",\"pad\":\"{}\"}}",
                    "x".repeat(40)
                )),
                vec![h("trace-id", Some(&format!("t{i}")))],
            )
        })
        .collect()
}

struct Case {
    name: &'static str,
    description: &'static str,
    options: Options,
    records: Vec<Record>,
}

fn opts(compression: &str) -> Options {
    Options {
        compression: compression.into(),
        zstd_level: 3,
        target_batch_bytes: 1 << 20,
        per_record_crc: false,
    }
}

fn cases() -> Vec<Case> {
    let mixed = vec![
        rec(0, T0, None, None, vec![]),
        rec(1, T0 + 5, b("k"), Some(Bytes::new()), vec![]),
        rec(
            2,
            T0 - 1000,
            b(""),
            b("v"),
            vec![h("a", Some("1")), h("a", Some("2")), h("n", None), h("", Some(""))],
        ),
        rec(7, T0 + 3, None, b("after a gap"), vec![]),
    ];
    vec![
        Case {
            name: "tiny",
            description: "one record, no compression: the segment of the worked hex dump in docs/FORMAT.md",
            options: opts("none"),
            records: vec![rec(5, 1_700_000_000_000, b("k"), b("v"), vec![h("h", Some("x"))])],
        },
        Case {
            name: "none-basic",
            description: "five records, no compression",
            options: opts("none"),
            records: basic_records(),
        },
        Case {
            name: "lz4-basic",
            description: "five records, lz4",
            options: opts("lz4"),
            records: basic_records(),
        },
        Case {
            name: "zstd-basic",
            description: "five records, zstd level 3",
            options: opts("zstd"),
            records: basic_records(),
        },
        Case {
            name: "null-key-value",
            description: "null keys, null values (tombstones) and both null",
            options: opts("none"),
            records: vec![
                rec(0, T0, None, b("v"), vec![]),
                rec(1, T0, b("k"), None, vec![]),
                rec(2, T0, None, None, vec![]),
            ],
        },
        Case {
            name: "empty-value",
            description: "empty (not null) key and value",
            options: opts("lz4"),
            records: vec![
                rec(0, T0, Some(Bytes::new()), Some(Bytes::new()), vec![]),
                rec(1, T0, b("k"), Some(Bytes::new()), vec![]),
            ],
        },
        Case {
            name: "headers-duplicate-null",
            description: "duplicate header keys kept in order, null header values, empty header key and value",
            options: opts("zstd"),
            records: vec![rec(
                0,
                T0,
                b("k"),
                b("v"),
                vec![
                    h("dup", Some("first")),
                    h("dup", Some("second")),
                    h("null", None),
                    h("", Some("")),
                    h("dup", None),
                ],
            )],
        },
        Case {
            name: "timestamps-out-of-order",
            description: "timestamps going backwards within a batch (negative deltas), including before 1970",
            options: opts("none"),
            records: vec![
                rec(0, T0, None, b("a"), vec![]),
                rec(1, T0 - 60_000, None, b("b"), vec![]),
                rec(2, T0 + 60_000, None, b("c"), vec![]),
                rec(3, -5, None, b("d"), vec![]),
            ],
        },
        Case {
            name: "offset-gaps",
            description: "offset gaps as after compaction or aborted transactions",
            options: opts("lz4"),
            records: vec![
                rec(10, T0, b("a"), b("1"), vec![]),
                rec(11, T0, b("b"), b("2"), vec![]),
                rec(500, T0, b("c"), b("3"), vec![]),
                rec(1_000_000, T0, b("d"), b("4"), vec![]),
            ],
        },
        Case {
            name: "per-record-crc",
            description: "flag bit 0: every record followed by its CRC-32, zstd",
            options: Options {
                per_record_crc: true,
                ..opts("zstd")
            },
            records: mixed.clone(),
        },
        Case {
            name: "multi-batch",
            description: "batches closed at 64 bytes of payload, no compression: several batches in one segment",
            options: Options {
                target_batch_bytes: 64,
                ..opts("none")
            },
            records: basic_records(),
        },
        Case {
            name: "mixed-lz4",
            description: "null and empty keys and values, duplicate and null headers, an out-of-order timestamp and an offset gap, lz4",
            options: opts("lz4"),
            records: mixed,
        },
    ]
}

fn writer_options(o: &Options) -> WriterOptions {
    WriterOptions::new(codec(&o.compression))
        .zstd_level(o.zstd_level)
        .target_batch_bytes(o.target_batch_bytes)
        .per_record_crc(o.per_record_crc)
}

fn enc(bytes: &Option<Bytes>) -> Option<String> {
    bytes.as_ref().map(|b| B64.encode(b))
}

fn dec(s: &Option<String>) -> Option<Bytes> {
    s.as_ref()
        .map(|s| Bytes::from(B64.decode(s).expect("base64 in sidecar")))
}

fn to_json(records: &[Record]) -> Vec<RecordJson> {
    records
        .iter()
        .map(|r| RecordJson {
            offset: r.offset,
            timestamp: r.timestamp,
            key: enc(&r.key),
            value: enc(&r.value),
            headers: r
                .headers
                .iter()
                .map(|h| HeaderJson {
                    key: B64.encode(&h.key),
                    value: enc(&h.value),
                })
                .collect(),
        })
        .collect()
}

fn from_json(records: &[RecordJson]) -> Vec<Record> {
    records
        .iter()
        .map(|r| Record {
            offset: r.offset,
            timestamp: r.timestamp,
            key: dec(&r.key),
            value: dec(&r.value),
            headers: r
                .headers
                .iter()
                .map(|h| Header {
                    key: dec(&Some(h.key.clone())).unwrap(),
                    value: dec(&h.value),
                })
                .collect(),
        })
        .collect()
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn bless(case: &Case) {
    let (bytes, s) = encode_segment(&case.records, writer_options(&case.options)).unwrap();
    let sidecar = Sidecar {
        description: case.description.into(),
        options: case.options.clone(),
        summary: SummaryJson {
            first_offset: s.first_offset,
            last_offset: s.last_offset,
            record_count: s.record_count,
            batch_count: s.batch_count,
            min_timestamp: s.min_timestamp,
            max_timestamp: s.max_timestamp,
            size_bytes: s.size_bytes,
            crc64: format!("{:016x}", s.crc64),
        },
        records: to_json(&case.records),
    };
    let dir = data_dir();
    std::fs::write(dir.join(format!("{}.kbs", case.name)), &bytes).unwrap();
    let mut json = serde_json::to_string_pretty(&sidecar).unwrap();
    json.push('\n');
    std::fs::write(dir.join(format!("{}.json", case.name)), json).unwrap();
}

#[test]
fn golden_vectors_decode_and_reencode_exactly() {
    let blessing = std::env::var_os("KBS_BLESS").is_some();
    let cases = cases();
    for case in &cases {
        if blessing {
            bless(case);
        }
        let dir = data_dir();
        let bytes = std::fs::read(dir.join(format!("{}.kbs", case.name)))
            .unwrap_or_else(|e| panic!("{}.kbs missing ({e}); run with KBS_BLESS=1", case.name));
        let sidecar: Sidecar =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{}.json", case.name))).unwrap()).unwrap();
        let expected = from_json(&sidecar.records);

        // The committed sidecar is what the case describes.
        assert_eq!(expected, case.records, "{}: sidecar differs from the case", case.name);
        assert_eq!(sidecar.options, case.options, "{}: options differ", case.name);

        // Decode equality, through every reader.
        let (records, summary) = decode_all_ways(&bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(records, expected, "{}: decoded records differ", case.name);
        assert_eq!(summary.record_count, sidecar.summary.record_count, "{}", case.name);
        assert_eq!(summary.batch_count, sidecar.summary.batch_count, "{}", case.name);
        assert_eq!(
            (summary.first_offset, summary.last_offset),
            (sidecar.summary.first_offset, sidecar.summary.last_offset)
        );
        assert_eq!(
            (summary.min_timestamp, summary.max_timestamp),
            (sidecar.summary.min_timestamp, sidecar.summary.max_timestamp)
        );
        assert_eq!(
            format!("{:016x}", summary.crc64),
            sidecar.summary.crc64,
            "{}",
            case.name
        );
        assert_eq!(summary.size_bytes, bytes.len() as u64);
        assert_eq!(summary.compression, codec(&sidecar.options.compression));

        // Byte-identical re-encode.
        let (reencoded, _) = encode_segment(&expected, writer_options(&sidecar.options)).unwrap();
        assert!(reencoded == bytes, "{}: re-encoding is not byte-identical", case.name);
    }
    let covered: Vec<_> = cases.iter().map(|c| codec(&c.options.compression)).collect();
    for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
        assert!(covered.contains(&c), "no golden vector for {c}");
    }
}

#[test]
fn tiny_vector_matches_the_documented_hex_dump() {
    // docs/FORMAT.md walks through these exact bytes.
    let bytes = std::fs::read(data_dir().join("tiny.kbs")).unwrap();
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md")).unwrap();
    let start = doc.find("<!-- hexdump:tiny -->").expect("hex dump marker in FORMAT.md");
    let block = &doc[start..];
    let block = &block[block.find("```text").unwrap() + 7..];
    let block = &block[..block.find("```").unwrap()];
    let mut from_doc = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        // "00000000  4b 42 53 31 ...  |KBS1....|"
        let hex = line.split("  ").nth(1).unwrap_or("");
        for pair in hex.split_whitespace() {
            from_doc.push(u8::from_str_radix(pair, 16).expect("hex byte"));
        }
    }
    assert_eq!(from_doc, bytes, "docs/FORMAT.md hex dump is out of date");
}
