//! Captures the librdkafka golden fixtures (`KBS_BLESS=1 cargo test -p kbs-kafka --test kafka
//! golden`): confluent-kafka produces edge-case batches with each codec to Apache Kafka, a raw Fetch
//! (kafka-protocol messages over a plain socket, not the client under test) reads the record
//! bytes back, and they are written to `tests/data/librdkafka-<codec>.bin` with a JSON sidecar of
//! the records librdkafka reported writing. The unit tests (`src/golden_tests.rs`) decode them.
//! Without `KBS_BLESS=1` this only checks the fixtures are there.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kbs_kafka::NewTopic;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use kbs_testkit::KafkaCluster;

use crate::harness::{base64_of, client, read_records, run_python};

/// `(file stem, codec, idempotent)`.
const FIXTURES: [(&str, &str, bool); 6] = [
    ("librdkafka-none", "none", false),
    ("librdkafka-gzip", "gzip", false),
    ("librdkafka-snappy", "snappy", false),
    ("librdkafka-lz4", "lz4", false),
    ("librdkafka-zstd", "zstd", false),
    ("librdkafka-zstd-idempotent", "zstd", true),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// One Fetch v11 of a whole partition, by hand.
async fn raw_fetch(port: u16, topic: &str) -> Bytes {
    let version = 11;
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = 64 << 20;
    partition.current_leader_epoch = -1;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_owned()));
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_wait_ms = 10;
    request.min_bytes = 1;
    request.max_bytes = 64 << 20;
    request.topics = vec![fetch_topic];
    let mut header = RequestHeader::default();
    header.request_api_key = 1;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("kbs-golden"));
    let mut body = BytesMut::new();
    header.encode(&mut body, FetchRequest::header_version(version)).unwrap();
    request.encode(&mut body, version).unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_u32(body.len() as u32).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let size = stream.read_u32().await.unwrap() as usize;
    let mut frame = BytesMut::zeroed(size);
    stream.read_exact(&mut frame).await.unwrap();
    let mut frame = frame.freeze();
    let header = ResponseHeader::decode(&mut frame, FetchResponse::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 1);
    let response = FetchResponse::decode(&mut frame, version).unwrap();
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    data.records.clone().expect("records")
}

/// Counts complete batches by their length fields alone.
fn count_batches(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos + 12 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        if pos + 12 + len > bytes.len() {
            break;
        }
        pos += 12 + len;
        n += 1;
    }
    n
}

/// The versions of confluent-kafka / librdkafka and of the broker.
fn versions() -> (String, String) {
    let out = Command::new(kbs_testkit::python().expect("the venv python"))
        .args([
            "-c",
            "import confluent_kafka as c; print('confluent-kafka', c.version()[0], '/ librdkafka', c.libversion()[0])",
        ])
        .output()
        .unwrap();
    let client = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (client, format!("Apache Kafka {}", kbs_testkit::KAFKA_VERSION))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_librdkafka_fixtures() {
    if std::env::var("KBS_BLESS").as_deref() != Ok("1") {
        for (stem, _, _) in FIXTURES {
            for ext in ["bin", "json"] {
                let path = data_dir().join(format!("{stem}.{ext}"));
                assert!(
                    path.is_file(),
                    "{} is missing: capture it with KBS_BLESS=1 cargo test -p kbs-kafka --test kafka golden",
                    path.display()
                );
            }
        }
        return;
    }
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    let (client_version, broker_version) = versions();
    let dir = tempfile::tempdir().unwrap();
    for (stem, codec, idempotent) in FIXTURES {
        client.create_topics(&[NewTopic::new(stem, 1)]).await.unwrap();
        let out = dir.path().join(format!("{stem}.jsonl"));
        let mut args = vec![kafka.bootstrap(), stem.to_owned(), out.to_str().unwrap().to_owned()];
        args.extend(["--mode", "fixture", "--compression", codec].map(str::to_owned));
        if idempotent {
            args.push("--idempotent".into());
        }
        if codec == "lz4" {
            args.push("--big".into());
        }
        run_python("produce.py", &args.iter().map(String::as_str).collect::<Vec<_>>());
        let records: Vec<_> = read_records(&out).into_iter().map(|(_, r)| r).collect();
        let bytes = raw_fetch(kafka.nodes()[0].client_port, stem).await;
        let sidecar = json!({
            "description": format!("record bytes of a Fetch v11 response from {broker_version} for batches produced by {client_version}"),
            "source": {"client": client_version, "broker": broker_version, "compression": codec, "idempotent": idempotent},
            "fetch_offset": 0,
            "next_offset": records.last().unwrap().offset + 1,
            "batches": count_batches(&bytes),
            "records": records.iter().map(|r| json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "timestamp_type": "CreateTime",
                "key": base64_of(&r.key),
                "value": base64_of(&r.value),
                "headers": r.headers.iter().map(|h| json!([base64_of(&Some(h.key.clone())), base64_of(&h.value)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        std::fs::write(data_dir().join(format!("{stem}.bin")), &bytes).unwrap();
        std::fs::write(
            data_dir().join(format!("{stem}.json")),
            serde_json::to_string_pretty(&sidecar).unwrap() + "\n",
        )
        .unwrap();
    }
}
