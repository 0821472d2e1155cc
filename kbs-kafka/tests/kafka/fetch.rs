//! The read path against Apache Kafka, with data written by librdkafka.

use std::collections::BTreeMap;
use std::time::Duration;

use kbs_kafka::{ErrorCode, FetchPosition, FetchRequest, IsolationLevel, NewTopic, OffsetSpec, PartitionError, Record};

use kbs_testkit::{KafkaCluster, KafkaOptions};

use crate::harness::{client, read_records, run_python};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Fetches every partition of `topic` from offset 0 to its high watermark.
async fn fetch_all(
    client: &kbs_kafka::KafkaClient,
    topic: &str,
    partitions: i32,
    isolation: IsolationLevel,
) -> (BTreeMap<i32, Vec<Record>>, usize) {
    let mut positions: Vec<FetchPosition> = (0..partitions).map(|p| FetchPosition::new(topic, p, 0)).collect();
    let mut got: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut requests = 0;
    while !positions.is_empty() {
        let request = FetchRequest::new(positions.clone())
            .with_max_wait(Duration::from_millis(10))
            .with_isolation(isolation);
        requests += 1;
        assert!(requests < 10_000, "fetch loop does not advance");
        let mut next = Vec::new();
        for partition in client.fetch(&request).await.unwrap() {
            assert_eq!(partition.error, None, "{}/{}", partition.topic, partition.partition);
            assert!(partition.high_watermark >= 0);
            got.entry(partition.partition).or_default().extend(partition.records);
            if partition.next_offset < partition.high_watermark {
                next.push(FetchPosition::new(topic, partition.partition, partition.next_offset));
            }
        }
        positions = next;
    }
    (got, requests)
}

fn assert_same(partition: i32, got: &[Record], want: &[Record]) {
    assert_eq!(got.len(), want.len(), "partition {partition}: record count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "partition {partition}, offset {}", w.offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_partition_fetch_reproduces_100k_librdkafka_records_with_every_codec() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("bulk", 5)]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("produced.jsonl");
    run_python(
        "produce.py",
        &[
            &kafka.bootstrap(),
            "bulk",
            out.to_str().unwrap(),
            "--mode",
            "bulk",
            "--partition-codecs",
            &CODECS.join(","),
            "--count",
            "20500",
        ],
    );
    let mut want: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (partition, record) in read_records(&out) {
        want.entry(partition).or_default().push(record);
    }
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total >= 100_000, "{total} records");
    // Edge cases are really in the data.
    let all = || want.values().flatten();
    assert!(all().any(|r| r.value.is_none()) && all().any(|r| r.value.as_deref() == Some(&b""[..])));
    assert!(all().any(|r| r.key.is_none()) && all().any(|r| r.key.as_deref() == Some(&b""[..])));
    assert!(all().any(|r| r.headers.iter().any(|h| h.value.is_none())));
    assert!(all().any(|r| r.headers.len() >= 2 && r.headers[0].key == r.headers[1].key));

    let (got, requests) = fetch_all(&client, "bulk", 5, IsolationLevel::ReadCommitted).await;
    for (partition, records) in &want {
        assert_same(*partition, &got[partition], records);
    }
    // Many partitions per request: far fewer requests than partitions x responses.
    assert!(requests < 200, "{requests} fetch requests");

    let (uncommitted, _) = fetch_all(&client, "bulk", 5, IsolationLevel::ReadUncommitted).await;
    assert_eq!(uncommitted, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_mid_batch_past_the_end_and_of_unknown_partitions() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("small", 1)]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("produced.jsonl");
    run_python(
        "produce.py",
        &[
            &kafka.bootstrap(),
            "small",
            out.to_str().unwrap(),
            "--mode",
            "fixture",
            "--compression",
            "lz4",
        ],
    );
    let want: Vec<Record> = read_records(&out).into_iter().map(|(_, r)| r).collect();
    let end = want.len() as i64;

    // Starting inside a batch returns only records from that offset on, each exactly as
    // written: Kafka serves the whole batch holding the fetch offset, and the decoder drops
    // its records before that offset.
    let request = FetchRequest::new(vec![FetchPosition::new("small", 0, 3)]).with_max_wait(Duration::from_millis(10));
    let fetched = client.fetch(&request).await.unwrap().remove(0);
    assert!(!fetched.records.is_empty());
    for record in &fetched.records {
        assert!(record.offset >= 3);
        assert!(
            record == &want[record.offset as usize],
            "offset {} differs",
            record.offset
        );
    }
    assert_eq!(fetched.next_offset, fetched.records.last().unwrap().offset + 1);

    // At the end: nothing, no error, next offset unchanged.
    let request = FetchRequest::new(vec![FetchPosition::new("small", 0, end)]).with_max_wait(Duration::from_millis(10));
    let at_end = client.fetch(&request).await.unwrap().remove(0);
    assert!(at_end.records.is_empty());
    assert_eq!(
        (at_end.next_offset, at_end.high_watermark, at_end.error.clone()),
        (end, end, None)
    );

    // Past the end (OFFSET_OUT_OF_RANGE, with the log start and high watermark looked up), an
    // unknown topic and an unknown partition, in one call.
    let request = FetchRequest::new(vec![
        FetchPosition::new("small", 0, end + 1000),
        FetchPosition::new("no-such-topic", 0, 0),
        FetchPosition::new("small", 7, 0),
    ])
    .with_max_wait(Duration::from_millis(10));
    let results = client.fetch(&request).await.unwrap();
    assert!(results[0].records.is_empty());
    assert_eq!(results[0].next_offset, end + 1000);
    assert_eq!(
        results[0].error,
        Some(PartitionError::OffsetOutOfRange {
            requested: end + 1000,
            log_start_offset: 0,
            high_watermark: end
        })
    );
    for unknown in &results[1..] {
        assert_eq!(
            unknown.error,
            Some(PartitionError::Broker {
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            })
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("offsets", 2)]).await.unwrap();
    let empty = client
        .list_offsets(&[("offsets", 0, OffsetSpec::Earliest), ("offsets", 0, OffsetSpec::Latest)])
        .await
        .unwrap();
    assert_eq!((empty[0].offset, empty[1].offset), (Some(0), Some(0)));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("produced.jsonl");
    run_python(
        "produce.py",
        &[
            &kafka.bootstrap(),
            "offsets",
            out.to_str().unwrap(),
            "--mode",
            "fixture",
        ],
    );
    let want: Vec<Record> = read_records(&out).into_iter().map(|(_, r)| r).collect();
    let offsets = client
        .list_offsets(&[
            ("offsets", 0, OffsetSpec::Earliest),
            ("offsets", 0, OffsetSpec::Latest),
            ("offsets", 1, OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(offsets[0].offset, Some(0));
    // Latest is the high watermark.
    assert_eq!(offsets[1].offset, Some(want.len() as i64));
    assert_eq!(offsets[2].offset, Some(0));
    let request = FetchRequest::new(vec![FetchPosition::new("offsets", 0, 0)]).with_max_wait(Duration::from_millis(10));
    assert_eq!(
        client.fetch(&request).await.unwrap()[0].high_watermark,
        want.len() as i64
    );

    // By timestamp: the first offset whose timestamp is at or after the one asked for (the
    // records' own CreateTime), none past the last.
    let middle = &want[want.len() / 2];
    let expected = want.iter().find(|r| r.timestamp >= middle.timestamp).unwrap().offset;
    let by_time = client
        .list_offsets(&[
            ("offsets", 0, OffsetSpec::Timestamp(1_000)),
            ("offsets", 0, OffsetSpec::Timestamp(middle.timestamp)),
            ("offsets", 0, OffsetSpec::Timestamp(i64::MAX / 2)),
        ])
        .await
        .unwrap();
    let first_at_or_after_1000 = want.iter().find(|r| r.timestamp >= 1_000).map(|r| r.offset);
    assert_eq!(by_time[0].offset, first_at_or_after_1000, "{:?}", by_time[0]);
    assert_eq!(by_time[1].offset, Some(expected), "{:?}", by_time[1]);
    assert_eq!(by_time[2].offset, None, "{:?}", by_time[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_leader_changes_denied_partitions_and_hostile_counts() {
    use crate::proxy::{FetchFault, FrontProxy, ProxyOptions};

    let broker_port = kbs_testkit::free_port();
    let options = ProxyOptions::default();
    let fetch_faults = options.fetch_faults.clone();
    let proxy = FrontProxy::start(broker_port, options).await;
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::behind_proxy(broker_port, proxy.port)) else {
        return;
    };
    let client = client(&kafka).await;
    client
        .create_topics(&[NewTopic::new("gap", 1), NewTopic::new("cut", 2)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("produced.jsonl");
    run_python(
        "produce.py",
        &[&kafka.bootstrap(), "gap", out.to_str().unwrap(), "--mode", "fixture"],
    );

    // Kafka answers a fetch below the log start with OFFSET_OUT_OF_RANGE and -1 for the log
    // start and high watermark; the client looks both up.
    fetch_faults.lock().unwrap().push_back(FetchFault::Error(1));
    let request = FetchRequest::new(vec![FetchPosition::new("gap", 0, 0)]).with_max_wait(Duration::from_millis(10));
    let fetched = client.fetch(&request).await.unwrap().remove(0);
    assert!(fetched.records.is_empty());
    assert_eq!(fetched.next_offset, 0);
    match fetched.error {
        Some(PartitionError::OffsetOutOfRange {
            requested: 0,
            log_start_offset: 0,
            high_watermark,
        }) => {
            assert!(high_watermark > 0);
            assert_eq!(fetched.log_start_offset, 0);
        }
        other => panic!("{other:?}"),
    }
    // The next fetch from the reported log start works.
    let fetched = client.fetch(&request).await.unwrap().remove(0);
    assert_eq!(
        (fetched.error, fetched.records.first().map(|r| r.offset)),
        (None, Some(0))
    );

    // Leader changes are retried inside the client after a metadata refresh.
    // NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION
    fetch_faults.lock().unwrap().extend([6, 74, 3].map(FetchFault::Error));
    let retried = client.fetch(&request).await.unwrap().remove(0);
    assert_eq!(retried.error, None);
    assert_eq!(retried.records.len(), fetched.records.len());
    assert!(fetch_faults.lock().unwrap().is_empty());

    // A code that is not retriable comes back typed, for that partition.
    fetch_faults.lock().unwrap().push_back(FetchFault::Error(29)); // TOPIC_AUTHORIZATION_FAILED
    let denied = client.fetch(&request).await.unwrap().remove(0);
    assert_eq!(denied.error, Some(PartitionError::Broker { code: ErrorCode(29) }));
    assert_eq!(
        denied.error.unwrap().to_string(),
        "broker error TOPIC_AUTHORIZATION_FAILED (29)"
    );

    // A partition that got only part of its first batch (the response's byte budget ran out)
    // is asked again alone, within the same call.
    let out = dir.path().join("cut.jsonl");
    run_python(
        "produce.py",
        &[&kafka.bootstrap(), "cut", out.to_str().unwrap(), "--mode", "fixture"],
    );
    fetch_faults.lock().unwrap().push_back(FetchFault::CutAllButFirst);
    let both = FetchRequest::new(vec![FetchPosition::new("gap", 0, 0), FetchPosition::new("cut", 0, 0)])
        .with_max_wait(Duration::from_millis(10));
    let results = client.fetch(&both).await.unwrap();
    assert!(fetch_faults.lock().unwrap().is_empty());
    assert_eq!(
        (results[1].error.clone(), results[1].records.first().map(|r| r.offset)),
        (None, Some(0))
    );
    assert_eq!(results[0].records.len(), fetched.records.len());

    // A broken or hostile broker counts 2^32 - 2 topics in a response of a few hundred bytes:
    // a protocol error that says so, not an attempt to reserve the counted topics (which
    // aborted the process before responses were checked against their schema).
    fetch_faults.lock().unwrap().push_back(FetchFault::HostileTopicCount);
    let error = client.fetch(&request).await.unwrap_err().to_string();
    assert!(fetch_faults.lock().unwrap().is_empty());
    assert!(
        error.contains("Fetch") && error.contains("declares 4294967294 elements"),
        "{error}"
    );
    // The client goes on working.
    let again = client.fetch(&request).await.unwrap().remove(0);
    assert_eq!(again.records.len(), fetched.records.len());
}
