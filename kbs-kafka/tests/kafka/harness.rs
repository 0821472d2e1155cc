//! What the kbs-kafka tests add to kbs-testkit (which starts Apache Kafka and runs the Python
//! scripts): client settings for tests, this suite's own confluent-kafka scripts under
//! `tests/kafka/py`, and reading records from the scripts' JSON lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kbs_kafka::{ClientConfig, KafkaClient, Record, RecordHeader, RetryConfig, TimestampType};
use kbs_testkit::KafkaCluster;

/// Client settings for tests: short timeouts, quick retries.
pub(crate) fn test_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new([bootstrap]);
    config.client_id = "kbs-kafka-tests".into();
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(20);
    config.retry = RetryConfig::new(8, Duration::from_millis(50), Duration::from_millis(500));
    config
}

/// A client of `kafka` with [`test_config`].
pub(crate) async fn client(kafka: &KafkaCluster) -> KafkaClient {
    KafkaClient::connect(test_config(&kafka.bootstrap())).await.unwrap()
}

/// Path of a script of this suite, under `tests/kafka/py`.
pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/py").join(name)
}

/// Runs a script of this suite with the venv's Python; panics with its output on failure.
pub(crate) fn run_python(name: &str, args: &[&str]) {
    kbs_testkit::run_python(&script(name), args);
}

/// Reads all of `topic` with kbs-testkit's `consume.py` (librdkafka, read_committed) into
/// `out`, and returns its records.
pub(crate) fn consume(bootstrap: &str, topic: &str, out: &Path) -> Vec<(i32, Record)> {
    kbs_testkit::run_script("consume.py", &[bootstrap, out.to_str().unwrap(), topic]);
    read_records(out)
}

fn bytes_of(value: &serde_json::Value) -> Option<Bytes> {
    value
        .as_str()
        .map(|s| Bytes::from(BASE64.decode(s).expect("base64 in script output")))
}

/// Reads the JSON lines of `consume.py` and `produce.py`, `[topic, partition, offset,
/// timestamp, key, value, headers, timestamp_type]`, as `(partition, record)` pairs.
pub(crate) fn read_records(path: &Path) -> Vec<(i32, Record)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let headers = v[6].as_array().unwrap().iter().map(|h| RecordHeader {
                key: bytes_of(&h[0]).unwrap(),
                value: bytes_of(&h[1]),
            });
            let record = Record {
                offset: v[2].as_i64().unwrap(),
                timestamp: v[3].as_i64().unwrap(),
                timestamp_type: match v[7].as_i64() {
                    Some(1) => TimestampType::CreateTime,
                    Some(2) => TimestampType::LogAppendTime,
                    other => panic!("timestamp type {other:?} in {line}"),
                },
                key: bytes_of(&v[4]),
                value: bytes_of(&v[5]),
                headers: headers.collect(),
            };
            (v[1].as_i64().unwrap() as i32, record)
        })
        .collect()
}

/// Bytes as base64 for the JSON fixtures.
pub(crate) fn base64_of(bytes: &Option<Bytes>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => serde_json::Value::String(BASE64.encode(b)),
    }
}

/// Sets a client quota (`key` = `value`, e.g. `producer_byte_rate`) for client id `client_id`
/// with AlterClientQuotas, as `kafka-configs --alter --entity-type clients` does.
pub(crate) async fn set_client_quota(address: &str, client_id: &str, key: &str, value: f64) {
    use bytes::BytesMut;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::{
        AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let version = 1;
    let mut entity = EntityData::default();
    entity.entity_type = StrBytes::from_static_str("client-id");
    entity.entity_name = Some(StrBytes::from_string(client_id.to_owned()));
    let mut op = OpData::default();
    op.key = StrBytes::from_string(key.to_owned());
    op.value = value;
    let mut entry = EntryData::default();
    entry.entity = vec![entity];
    entry.ops = vec![op];
    let mut request = AlterClientQuotasRequest::default();
    request.entries = vec![entry];
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::AlterClientQuotas as i16;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("kbs-kafka-tests-admin"));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, AlterClientQuotasRequest::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_u32(body.len() as u32).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let size = stream.read_u32().await.unwrap() as usize;
    let mut answer = vec![0; size];
    stream.read_exact(&mut answer).await.unwrap();
    let mut answer = Bytes::from(answer);
    ResponseHeader::decode(&mut answer, AlterClientQuotasResponse::header_version(version)).unwrap();
    let response = AlterClientQuotasResponse::decode(&mut answer, version).unwrap();
    for entry in &response.entries {
        assert_eq!(entry.error_code, 0, "{:?}", entry.error_message);
    }
}
