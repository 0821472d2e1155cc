//! Golden fixtures under `tests/data/`, decoded without a broker.
//!
//! * `librdkafka-*.bin`: the raw record bytes of a Fetch response from Apache Kafka 4.1.2 for
//!   batches that librdkafka (confluent-kafka) produced, one file per codec, captured by
//!   `KBS_BLESS=1 cargo test -p kbs-kafka --test kafka golden`; the `.json` sidecar holds the
//!   records as librdkafka reported writing them.
//! * `spec-transactions.fetch.bin`: a FetchResponse v11 body written byte by byte by
//!   `batch::spec` (commit and abort markers, an aborted-transaction list, compaction gaps, an
//!   empty batch, a truncated trailing batch, OFFSET_OUT_OF_RANGE and a corrupt batch); the
//!   `.json` sidecar is the expected outcome, derived from the scenario below, not from the
//!   decoder. `KBS_BLESS=1 cargo test -p kbs-kafka --lib golden` rewrites both.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::Decodable;
use serde_json::{Value, json};

use crate::batch::spec::{SpecBatch, SpecPartition, fetch_response_v11};
use crate::batch::{self, DecodeOptions};
use crate::fetch::{IsolationLevel, Params, PartitionFetch, process_partition};
use crate::{PartitionError, Record, RecordHeader, TimestampType};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn blessing() -> bool {
    std::env::var("KBS_BLESS").as_deref() == Ok("1")
}

fn b64(v: &Value) -> Option<Bytes> {
    v.as_str().map(|s| Bytes::from(BASE64.decode(s).unwrap()))
}

fn record_from_json(v: &Value) -> Record {
    Record {
        offset: v["offset"].as_i64().unwrap(),
        timestamp: v["timestamp"].as_i64().unwrap(),
        timestamp_type: match v["timestamp_type"].as_str().unwrap() {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            other => panic!("timestamp type {other}"),
        },
        key: b64(&v["key"]),
        value: b64(&v["value"]),
        headers: v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| RecordHeader {
                key: b64(&h[0]).unwrap(),
                value: b64(&h[1]),
            })
            .collect(),
    }
}

fn bytes_json(b: &Option<Bytes>) -> Value {
    b.as_ref().map_or(Value::Null, |b| Value::String(BASE64.encode(b)))
}

fn record_to_json(r: &Record) -> Value {
    json!({
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": match r.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        },
        "key": bytes_json(&r.key),
        "value": bytes_json(&r.value),
        "headers": r.headers.iter().map(|h| json!([BASE64.encode(&h.key), bytes_json(&h.value)])).collect::<Vec<_>>(),
    })
}

fn assert_records(name: &str, got: &[Record], want: &[Record]) {
    assert_eq!(got.len(), want.len(), "{name}: record count");
    for (g, w) in got.iter().zip(want) {
        assert!(g == w, "{name}: offset {} differs:\n got {g:?}\nwant {w:?}", w.offset);
    }
}

#[test]
fn librdkafka_fixtures_decode_to_the_records_librdkafka_wrote() {
    let mut codecs = Vec::new();
    for entry in std::fs::read_dir(data_dir()).expect("tests/data exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("librdkafka-") && name.ends_with(".json")) {
            continue;
        }
        let sidecar: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let bytes = Bytes::from(std::fs::read(path.with_extension("bin")).unwrap());
        let want: Vec<Record> = sidecar["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(record_from_json)
            .collect();
        let fetch_offset = sidecar["fetch_offset"].as_i64().unwrap();
        let options = DecodeOptions {
            read_committed: true,
            max_decompressed: 64 << 20,
        };
        let decoded = batch::decode_records(&bytes, fetch_offset, &[], options);
        assert_eq!(decoded.fault, None, "{name}");
        assert_eq!(decoded.partial, None, "{name}");
        assert_records(&name, &decoded.records, &want);
        assert_eq!(decoded.next_offset, sidecar["next_offset"].as_i64(), "{name}");
        assert_eq!(decoded.batches as u64, sidecar["batches"].as_u64().unwrap(), "{name}");
        // The trailing batch cut at every 97th byte: complete batches come back, no error.
        for cut in (0..bytes.len()).step_by(97) {
            let partial = batch::decode_records(&bytes.slice(..cut), fetch_offset, &[], options);
            assert_eq!(partial.fault, None, "{name} cut at {cut}");
            assert!(partial.records.len() <= want.len());
            assert_records(&name, &partial.records, &want[..partial.records.len()]);
        }
        // Every batch of the declared codec except those librdkafka left uncompressed because
        // compression did not make them smaller; at least the first one is compressed.
        let codec = sidecar["source"]["compression"].as_str().unwrap().to_owned();
        let mut pos = 0;
        let mut codecs_seen = Vec::new();
        while pos + batch::HEADER_LEN <= bytes.len() {
            let length = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let attributes = i16::from_be_bytes([bytes[pos + 21], bytes[pos + 22]]);
            codecs_seen.push(batch::Codec::from_attributes(attributes).unwrap().name());
            pos += batch::LOG_OVERHEAD + length;
        }
        assert_eq!(codecs_seen[0], codec, "{name}: {codecs_seen:?}");
        assert!(
            codecs_seen.iter().all(|c| *c == codec || *c == "none"),
            "{name}: {codecs_seen:?}"
        );
        codecs.push(codec);
    }
    codecs.sort();
    codecs.dedup();
    assert_eq!(
        codecs,
        ["gzip", "lz4", "none", "snappy", "zstd"],
        "one fixture per codec; capture them with KBS_BLESS=1 cargo test -p kbs-kafka --test kafka golden"
    );
}

/// One batch of the transaction scenario and whether a read-committed reader sees it.
struct Planned {
    batch: SpecBatch,
    committed_visible: bool,
}

fn plan(batch: SpecBatch, committed_visible: bool) -> Planned {
    Planned {
        batch,
        committed_visible,
    }
}

/// The records a batch holds, as the Kafka spec defines them.
fn spec_records(batch: &SpecBatch) -> Vec<Record> {
    if batch.attributes & crate::batch::spec::CONTROL != 0 {
        return Vec::new();
    }
    batch
        .records
        .iter()
        .map(|r| Record {
            offset: batch.base_offset + i64::from(r.offset_delta),
            timestamp: batch.base_timestamp + r.timestamp_delta,
            timestamp_type: TimestampType::CreateTime,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: Bytes::from(k.clone()),
                    value: v.clone().map(Bytes::from),
                })
                .collect(),
        })
        .collect()
}

struct ScenarioPartition {
    spec: SpecPartition,
    fetch_offset: i64,
    planned: Vec<Planned>,
    next_offset: i64,
    error: Value,
}

fn scenario() -> Vec<ScenarioPartition> {
    // Partition 0: interleaved transactions of producers 7, 8 and 9, plain records, and a
    // trailing batch cut short.
    let p0 = vec![
        plan(SpecBatch::data(0, 7, true, &["p7-aborted-a", "p7-aborted-b"]), false),
        plan(SpecBatch::data(2, 8, true, &["p8-committed-a", "p8-committed-b"]), true),
        plan(SpecBatch::data(4, -1, false, &["plain-4"]), true),
        plan(SpecBatch::control(5, 7, false), false),
        plan(SpecBatch::data(6, 7, true, &["p7-committed-a", "p7-committed-b"]), true),
        plan(SpecBatch::control(8, 8, true), false),
        plan(SpecBatch::data(9, 9, true, &["p9-aborted-a", "p9-aborted-b"]), false),
        plan(SpecBatch::control(11, 9, false), false),
        plan(SpecBatch::control(12, 7, true), false),
        plan(SpecBatch::data(13, -1, false, &["plain-13"]), true),
    ];
    let mut p0_bytes: Vec<u8> = p0.iter().flat_map(|p| p.batch.to_bytes()).collect();
    let trailing = SpecBatch::data(14, -1, false, &["cut", "short"]).to_bytes();
    p0_bytes.extend_from_slice(&trailing[..trailing.len() / 2]);

    // Partition 2: a zstd batch compacted down to offsets 3 and 7 of 0..=9, then a batch
    // emptied by compaction covering 10..=14; fetched from offset 5.
    let mut compacted = SpecBatch::data(0, -1, false, &["kept-3", "kept-7"]);
    compacted.records[0].offset_delta = 3;
    compacted.records[0].timestamp_delta = 3;
    compacted.records[1].offset_delta = 7;
    compacted.records[1].timestamp_delta = 7;
    compacted.last_offset_delta = 9;
    compacted.attributes |= 4;
    compacted.compress = Some(|plain| zstd::bulk::compress(plain, 3).unwrap());
    let mut emptied = SpecBatch::data(10, -1, false, &[]);
    emptied.last_offset_delta = 4;
    let p2 = vec![plan(compacted, true), plan(emptied, true)];
    let p2_bytes: Vec<u8> = p2.iter().flat_map(|p| p.batch.to_bytes()).collect();

    // Partition 3: a good batch, then one whose CRC does not match.
    let good = SpecBatch::data(0, -1, false, &["good-0", "good-1"]);
    let mut bad = SpecBatch::data(2, -1, false, &["bad-2", "bad-3"]).to_bytes();
    bad[20] ^= 0xff; // last byte of the stored CRC
    let p3_bytes = [good.to_bytes(), bad].concat();

    vec![
        ScenarioPartition {
            spec: SpecPartition {
                partition: 0,
                error_code: 0,
                high_watermark: 16,
                last_stable_offset: 16,
                log_start_offset: 0,
                aborted: Some(vec![(7, 0), (9, 9)]),
                records: Some(p0_bytes),
            },
            fetch_offset: 0,
            planned: p0,
            next_offset: 14,
            error: Value::Null,
        },
        ScenarioPartition {
            spec: SpecPartition {
                partition: 1,
                error_code: 1,
                high_watermark: 80,
                last_stable_offset: 80,
                log_start_offset: 50,
                aborted: None,
                records: None,
            },
            fetch_offset: 10,
            planned: Vec::new(),
            next_offset: 10,
            error: json!({"kind": "OffsetOutOfRange", "requested": 10, "log_start_offset": 50, "high_watermark": 80}),
        },
        ScenarioPartition {
            spec: SpecPartition {
                partition: 2,
                error_code: 0,
                high_watermark: 15,
                last_stable_offset: 15,
                log_start_offset: 0,
                aborted: Some(vec![]),
                records: Some(p2_bytes),
            },
            fetch_offset: 5,
            planned: p2,
            next_offset: 15,
            error: Value::Null,
        },
        ScenarioPartition {
            spec: SpecPartition {
                partition: 3,
                error_code: 0,
                high_watermark: 4,
                last_stable_offset: 4,
                log_start_offset: 0,
                aborted: Some(vec![]),
                records: Some(p3_bytes),
            },
            fetch_offset: 0,
            planned: vec![plan(good, true)],
            next_offset: 2,
            error: json!({"kind": "CorruptBatch", "offset": 2}),
        },
    ]
}

/// The expected outcome of the scenario, from its plan.
fn expected_json(partitions: &[ScenarioPartition]) -> Value {
    let side = |committed: bool| -> Vec<Value> {
        partitions
            .iter()
            .map(|p| {
                let records: Vec<Value> = p
                    .planned
                    .iter()
                    .filter(|planned| !committed || planned.committed_visible)
                    .flat_map(|planned| spec_records(&planned.batch))
                    .filter(|r| r.offset >= p.fetch_offset)
                    .map(|r| record_to_json(&r))
                    .collect();
                json!({
                    "partition": p.spec.partition,
                    "fetch_offset": p.fetch_offset,
                    "next_offset": p.next_offset,
                    "high_watermark": p.spec.high_watermark,
                    "last_stable_offset": p.spec.last_stable_offset,
                    "log_start_offset": p.spec.log_start_offset,
                    "error": p.error,
                    "records": records,
                })
            })
            .collect()
    };
    json!({
        "description": "FetchResponse v11 for topic \"txn\", written byte by byte from the Kafka protocol spec \
                        by kbs-kafka/src/batch/spec.rs (scenario in src/golden_tests.rs)",
        "fetch_response_version": 11,
        "topic": "txn",
        "read_committed": side(true),
        "read_uncommitted": side(false),
    })
}

fn error_json(error: &Option<PartitionError>) -> Value {
    match error {
        None => Value::Null,
        Some(PartitionError::OffsetOutOfRange {
            requested,
            log_start_offset,
            high_watermark,
        }) => json!({
            "kind": "OffsetOutOfRange", "requested": requested, "log_start_offset": log_start_offset,
            "high_watermark": high_watermark
        }),
        Some(PartitionError::CorruptBatch { offset, .. }) => json!({"kind": "CorruptBatch", "offset": offset}),
        Some(other) => json!({"kind": format!("{other:?}")}),
    }
}

#[test]
fn spec_built_transaction_fixtures_decode_as_the_spec_says() {
    let partitions = scenario();
    let body = fetch_response_v11("txn", &partitions.iter().map(|p| p.spec.clone()).collect::<Vec<_>>());
    let expected = serde_json::to_string_pretty(&expected_json(&partitions)).unwrap() + "\n";
    let bin_path = data_dir().join("spec-transactions.fetch.bin");
    let json_path = data_dir().join("spec-transactions.json");
    if blessing() {
        std::fs::write(&bin_path, &body).unwrap();
        std::fs::write(&json_path, &expected).unwrap();
    }
    let committed_bin = std::fs::read(&bin_path).expect("run KBS_BLESS=1 cargo test -p kbs-kafka --lib golden");
    let committed_json = std::fs::read_to_string(&json_path).unwrap();
    assert!(
        committed_bin == body,
        "the builder no longer writes the committed fixture bytes"
    );
    assert_eq!(
        committed_json, expected,
        "the scenario no longer matches the committed expectation"
    );

    let sidecar: Value = serde_json::from_str(&committed_json).unwrap();
    let mut buf = Bytes::from(committed_bin);
    let response = FetchResponse::decode(&mut buf, 11).unwrap();
    assert!(buf.is_empty());
    let topic = &response.responses[0];
    assert_eq!(topic.topic.0.as_str(), "txn");
    for (side, isolation) in [
        ("read_committed", IsolationLevel::ReadCommitted),
        ("read_uncommitted", IsolationLevel::ReadUncommitted),
    ] {
        for want in sidecar[side].as_array().unwrap() {
            let partition = want["partition"].as_i64().unwrap() as i32;
            let data = topic
                .partitions
                .iter()
                .find(|p| p.partition_index == partition)
                .unwrap();
            let params = Params {
                max_wait: std::time::Duration::ZERO,
                min_bytes: 1,
                max_bytes: 1 << 20,
                partition_max_bytes: 1 << 20,
                isolation,
                max_decompressed: 1 << 20,
            };
            let (got, partial_only): (PartitionFetch, bool) =
                process_partition("txn", partition, want["fetch_offset"].as_i64().unwrap(), data, &params).unwrap();
            assert!(!partial_only, "{side} partition {partition}");
            let name = format!("{side} partition {partition}");
            let want_records: Vec<Record> = want["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(record_from_json)
                .collect();
            assert_records(&name, &got.records, &want_records);
            assert_eq!(got.next_offset, want["next_offset"].as_i64().unwrap(), "{name}");
            assert_eq!(got.high_watermark, want["high_watermark"].as_i64().unwrap(), "{name}");
            assert_eq!(
                got.last_stable_offset,
                want["last_stable_offset"].as_i64().unwrap(),
                "{name}"
            );
            assert_eq!(
                got.log_start_offset,
                want["log_start_offset"].as_i64().unwrap(),
                "{name}"
            );
            assert_eq!(error_json(&got.error), want["error"], "{name}");
        }
    }
}

#[test]
fn retriable_partition_errors_are_left_to_the_retry_loop() {
    let mut body = fetch_response_v11(
        "t",
        &[SpecPartition {
            partition: 0,
            error_code: 6,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: None,
            records: None,
        }],
    );
    let response = FetchResponse::decode(&mut Bytes::from(std::mem::take(&mut body)), 11).unwrap();
    let params = Params {
        max_wait: std::time::Duration::ZERO,
        min_bytes: 1,
        max_bytes: 1,
        partition_max_bytes: 1,
        isolation: IsolationLevel::ReadCommitted,
        max_decompressed: 1,
    };
    let data = &response.responses[0].partitions[0];
    assert_eq!(
        process_partition("t", 0, 0, data, &params).unwrap_err(),
        crate::ErrorCode::NOT_LEADER_OR_FOLLOWER
    );
}

#[test]
fn a_response_holding_only_part_of_the_first_batch_is_flagged() {
    let batch = SpecBatch::data(0, -1, false, &["a", "b"]).to_bytes();
    let partial = batch[..batch.len() - 3].to_vec();
    let body = fetch_response_v11(
        "t",
        &[SpecPartition {
            partition: 0,
            high_watermark: 2,
            last_stable_offset: 2,
            log_start_offset: 0,
            aborted: Some(vec![]),
            records: Some(partial),
            ..SpecPartition::default()
        }],
    );
    let response = FetchResponse::decode(&mut Bytes::from(body), 11).unwrap();
    let params = Params {
        max_wait: std::time::Duration::ZERO,
        min_bytes: 1,
        max_bytes: 100,
        partition_max_bytes: 50,
        isolation: IsolationLevel::ReadCommitted,
        max_decompressed: 1 << 20,
    };
    let (fetch, partial_only) = process_partition("t", 0, 0, &response.responses[0].partitions[0], &params).unwrap();
    assert!(partial_only);
    assert!(fetch.records.is_empty());
    assert_eq!(fetch.next_offset, 0);
    assert_eq!(
        fetch.error,
        Some(PartitionError::BatchTooLarge {
            offset: 0,
            size: batch.len(),
            limit: 50
        })
    );
}
