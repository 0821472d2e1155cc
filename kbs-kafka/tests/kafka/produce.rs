//! The write path against Apache Kafka, read back by librdkafka.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kbs_kafka::{
    Error, FetchPosition, FetchRequest, IdempotentProducer, KafkaClient, NewTopic, ProduceRecord, ProducerCompression,
    ProducerConfig, Record, RecordHeader, TimestampType,
};

use kbs_testkit::{KafkaCluster, KafkaOptions};

use crate::harness::{client, consume};
use crate::proxy::{FrontProxy, ProxyOptions};

const CODECS: [ProducerCompression; 5] = [
    ProducerCompression::None,
    ProducerCompression::Gzip,
    ProducerCompression::Snappy,
    ProducerCompression::Lz4,
    ProducerCompression::Zstd,
];

/// Deterministic records with the edge cases: tombstones, null and empty keys and values,
/// duplicate and null headers, timestamps out of order, binary bytes.
fn records(partition: i32, count: usize) -> Vec<ProduceRecord> {
    (0..count)
        .map(|i| {
            let n = i as i64 + 1000 * i64::from(partition);
            let key = match i % 9 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(format!("key-{n}"))),
            };
            let value = match i % 13 {
                0 => None,
                1 => Some(Bytes::new()),
                2 => Some(Bytes::from(
                    (0..=255u8).cycle().skip(i % 256).take(300).collect::<Vec<u8>>(),
                )),
                _ => Some(Bytes::from(format!(
                    "{{\"order\":{n},\"note\":\"{}\"}}",
                    "x".repeat(i % 400)
                ))),
            };
            let mut headers = Vec::new();
            for h in 0..(i % 4) {
                headers.push(RecordHeader {
                    key: Bytes::from(if h % 2 == 0 { "trace" } else { "ünïcode" }),
                    value: if (i + h) % 5 == 0 {
                        None
                    } else {
                        Some(Bytes::from(format!("v{h}-{i}")))
                    },
                });
            }
            ProduceRecord {
                timestamp: 1_650_000_000_000 + n * 10 - (i % 7) as i64 * 3,
                key,
                value,
                headers,
            }
        })
        .collect()
}

fn as_fetched(records: &[ProduceRecord], first_offset: i64) -> Vec<Record> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: first_offset + i as i64,
            timestamp: r.timestamp,
            timestamp_type: TimestampType::CreateTime,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect()
}

async fn fetch_partition(client: &KafkaClient, topic: &str, partition: i32) -> Vec<Record> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::new(vec![FetchPosition::new(topic, partition, offset)])
            .with_max_wait(Duration::from_millis(10));
        let fetched = client.fetch(&request).await.unwrap().remove(0);
        assert_eq!(fetched.error, None);
        out.extend(fetched.records);
        offset = fetched.next_offset;
        if offset >= fetched.high_watermark {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_is_read_back_identically_by_librdkafka() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("restored", 5)]).await.unwrap();
    let mut want: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (partition, codec) in (0..).zip(CODECS) {
        let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default().with_compression(codec))
            .await
            .unwrap();
        assert!(producer.producer_id() >= 0);
        let all = records(partition, 2000);
        // Every call is made before any is awaited: sequences follow call order, five batches
        // are on the wire at once.
        let calls: Vec<_> = all
            .chunks(100)
            .map(|chunk| producer.produce("restored", partition, chunk))
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let ack = call.await.unwrap();
            assert_eq!(ack.base_offset, Some(i as i64 * 100), "{codec:?}");
            assert_eq!(ack.record_count, 100);
        }
        want.insert(partition, as_fetched(&all, 0));
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("consumed.jsonl");
    let mut consumed: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (partition, record) in consume(&kafka.bootstrap(), "restored", &out) {
        consumed.entry(partition).or_default().push(record);
    }
    assert!(consumed.keys().eq(want.keys()), "partitions read by librdkafka");
    for (partition, records) in &want {
        let got = &consumed[partition];
        assert_eq!(got.len(), records.len(), "partition {partition}");
        for (g, w) in got.iter().zip(records) {
            assert!(
                g == w,
                "librdkafka reads partition {partition} offset {} differently",
                w.offset
            );
        }
        let fetched = fetch_partition(&client, "restored", *partition).await;
        assert!(&fetched == records, "kbs-kafka reads partition {partition} differently");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_and_a_continued_producer_never_write_twice() {
    let broker_port = kbs_testkit::free_port();
    let drops = Arc::new(AtomicUsize::new(1));
    let options = ProxyOptions {
        drop_produce_responses: drops.clone(),
        ..ProxyOptions::default()
    };
    let proxy = FrontProxy::start(broker_port, options).await;
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::behind_proxy(broker_port, proxy.port)) else {
        return;
    };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("resend", 1)]).await.unwrap();
    let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let all = records(0, 300);
    let calls: Vec<_> = all
        .chunks(100)
        .map(|chunk| producer.produce("resend", 0, chunk))
        .collect();
    let mut acks = Vec::new();
    for call in calls {
        acks.push(call.await.unwrap());
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the proxy dropped a response");
    // The first batch was written before its answer was lost; its resend is recognised as a
    // duplicate: Kafka answers the resend with the offset of the batch it already has.
    assert_eq!(acks[0].base_offset, Some(0), "{:?}", acks[0]);
    assert_eq!(acks[1].base_offset, Some(100));
    assert_eq!(acks[2].base_offset, Some(200));
    let fetched = fetch_partition(&client, "resend", 0).await;
    assert_eq!(fetched.len(), 300, "exactly once");
    assert!(fetched == as_fetched(&all, 0));

    // The leader reports the producer and the last sequence it appended.
    let known = client.describe_producers("resend", 0).await.unwrap();
    assert!(
        known
            .iter()
            .any(|p| p.producer_id == producer.producer_id() && p.last_sequence == 299),
        "{known:?}"
    );
    // Another process continues the producer (a restore rerun): a batch sent again with the
    // sequence numbers it had is answered as the duplicate it is; the next one is new.
    let more = records(0, 400);
    let resumed = IdempotentProducer::resume(
        client.clone(),
        ProducerConfig::default(),
        producer.producer_id(),
        producer.producer_epoch(),
    )
    .unwrap();
    resumed.continue_sequence("resend", 0, 200).unwrap();
    let again = resumed.produce("resend", 0, &more[200..300]).await.unwrap();
    assert_eq!(again.base_offset, Some(200), "{again:?}");
    let next = resumed.produce("resend", 0, &more[300..400]).await.unwrap();
    assert_eq!(next.base_offset, Some(300), "{next:?}");
    assert!(resumed.continue_sequence("resend", 0, 0).is_err(), "set after batches");
    // A batch cut at other records is refused, never written twice.
    let miscut = IdempotentProducer::resume(
        client.clone(),
        ProducerConfig::default(),
        producer.producer_id(),
        producer.producer_epoch(),
    )
    .unwrap();
    miscut.continue_sequence("resend", 0, 250).unwrap();
    let refused = miscut.produce("resend", 0, &more[250..300]).await.unwrap_err();
    assert!(
        refused.to_string().contains("OUT_OF_ORDER_SEQUENCE_NUMBER"),
        "{refused}"
    );
    let fetched = fetch_partition(&client, "resend", 0).await;
    assert!(fetched == as_fetched(&more, 0), "exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_errors_are_typed_and_fail_the_partition() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    let mut config = ProducerConfig::default();
    config.max_in_flight_per_partition = 6;
    assert!(matches!(
        IdempotentProducer::new(client.clone(), config).await,
        Err(Error::Config { .. })
    ));

    let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    match producer.produce("t", 0, &[]).await {
        Err(Error::InvalidBatch {
            topic,
            partition: 0,
            reason,
        }) => {
            assert_eq!(topic, "t");
            assert!(reason.contains("at least one record"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let one = records(0, 1);
    match producer.produce("no-such-topic", 0, &one).await {
        Err(Error::ProducerFailed {
            topic,
            partition: 0,
            reason,
            code: None,
        }) => {
            assert_eq!(topic, "no-such-topic");
            assert!(reason.contains("unknown topic"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The partition stays failed; other partitions are unaffected.
    assert!(matches!(
        producer.produce("no-such-topic", 0, &one).await,
        Err(Error::ProducerFailed { .. })
    ));
    client.create_topics(&[NewTopic::new("fine", 1)]).await.unwrap();
    assert_eq!(producer.produce("fine", 0, &one).await.unwrap().base_offset, Some(0));
}

/// Counts what the client reports through its events hook.
#[derive(Default)]
struct Counted {
    throttled: std::sync::Mutex<Vec<(String, Duration)>>,
    retried: std::sync::Mutex<Vec<(String, String)>>,
}

impl kbs_kafka::ClientEvents for Counted {
    fn retrying(&self, operation: &str, error: &Error, _attempt: u32, _delay: Duration) {
        self.retried
            .lock()
            .unwrap()
            .push((operation.to_owned(), error.to_string()));
    }
    fn throttled(&self, _broker: &str, api: &str, throttle: Duration) {
        self.throttled.lock().unwrap().push((api.to_owned(), throttle));
    }
}

/// A produce quota (KIP-13): the broker answers with throttle times; the client waits them out,
/// reports them through its events hook, and writes every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_quota_is_waited_out_and_reported() {
    // Rates over two one-second windows (the default, eleven, lets 10 s of quota go first).
    let options = KafkaOptions::default()
        .with_config("quota.window.num", "2")
        .with_config("quota.window.size.seconds", "1");
    let Some(kafka) = KafkaCluster::start_with(options) else {
        return;
    };
    let counted = Arc::new(Counted::default());
    let mut config = crate::harness::test_config(&kafka.bootstrap()).with_events(counted.clone());
    config.client_id = "kbs-quota-test".into();
    let client = KafkaClient::connect(config).await.unwrap();
    client.create_topics(&[NewTopic::new("quota", 1)]).await.unwrap();
    crate::harness::set_client_quota(&kafka.bootstrap(), "kbs-quota-test", "producer_byte_rate", 1_000_000.0).await;
    let uncompressed = ProducerConfig::default().with_compression(ProducerCompression::None);
    let producer = IdempotentProducer::new(client.clone(), uncompressed).await.unwrap();
    let value = Bytes::from(vec![b'q'; 10_000]);
    let all: Vec<ProduceRecord> = (0..300)
        .map(|i| ProduceRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(value.clone()),
            ..ProduceRecord::default()
        })
        .collect();
    let started = std::time::Instant::now();
    let calls: Vec<_> = all
        .chunks(20)
        .map(|chunk| producer.produce("quota", 0, chunk))
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let took = started.elapsed();
    let throttled = counted.throttled.lock().unwrap().clone();
    assert!(!throttled.is_empty(), "no throttle reported in {took:?}");
    assert!(throttled.iter().all(|(api, _)| api == "Produce"), "{throttled:?}");
    let total: Duration = throttled.iter().map(|(_, t)| *t).sum();
    assert!(total >= Duration::from_millis(500), "{total:?}");
    // 3 MB at 1 MB/s: the quota slowed the producer down.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let fetched = fetch_partition(&client, "quota", 0).await;
    assert_eq!(fetched.len(), all.len(), "exactly once");
}
