//! Kafka throughput of kbs-kafka beside librdkafka (confluent-kafka), on the same Apache Kafka
//! broker in the same run: `cargo bench -p kbs-benches --bench kafka`.
//!
//! Starts one Apache Kafka node (KRaft, kbs-testkit's `KafkaCluster`, 1 GiB heap, full JIT) on
//! free loopback ports, seeds a 4-partition topic with
//! 200,000 records of 1 KiB values using librdkafka, then measures, best of three runs each:
//!
//! * fetch: a librdkafka consumer (`fetch.wait.max.ms=10`) reading the whole topic, and
//!   kbs-kafka's `fetch` loop (one Fetch per round for all partitions, `max_wait` 10 ms);
//! * produce: an idempotent librdkafka producer (`acks=all`, `linger.ms=5`, 1 MiB batches) and
//!   kbs-kafka's `IdempotentProducer` (1,000-record batches, up to five in flight per
//!   partition) writing the same records to fresh 4-partition topics.
//!
//! Prints a markdown table of records/s, MB/s (key + value bytes, 10^6) and kbs/librdkafka
//! ratios. Needs Kafka's jars and the venv from `scripts/setup.sh`; `KBS_SKIP_KAFKA=1` skips.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_kafka::{
    ClientConfig, FetchPosition, FetchRequest, IdempotentProducer, KafkaClient, NewTopic, ProduceRecord, ProducerConfig,
};
use kbs_testkit::{KAFKA_VERSION, KafkaCluster, KafkaOptions};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 200_000;
const VALUE_BYTES: usize = 1024;
const RUNS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Measurement {
    records: usize,
    bytes: usize,
    seconds: f64,
}

impl Measurement {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/librdkafka.py")
}

fn librdkafka(python: &Path, args: &[&str]) -> Option<Measurement> {
    let output = Command::new(python).arg(script()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "librdkafka.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last()?;
    let field = |name: &str| -> f64 {
        let at = line.find(&format!("\"{name}\": ")).unwrap() + name.len() + 4;
        line[at..].split([',', '}']).next().unwrap().trim().parse().unwrap()
    };
    Some(Measurement {
        records: field("records") as usize,
        bytes: field("bytes") as usize,
        seconds: field("seconds"),
    })
}

/// The same value librdkafka.py writes for record `i`.
fn value_of(i: usize, size: usize) -> Vec<u8> {
    let base = format!("{i:010}{}", "kbs-bench-".repeat(8)).into_bytes();
    base.iter().copied().cycle().take(size).collect()
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new([bootstrap]);
    config.client_id = "kbs-bench".into();
    config
}

async fn kbs_fetch(bootstrap: &str) -> Measurement {
    let start = Instant::now();
    let client = KafkaClient::connect(config(bootstrap)).await.unwrap();
    let mut positions: Vec<FetchPosition> = (0..PARTITIONS).map(|p| FetchPosition::new("bench", p, 0)).collect();
    let (mut records, mut bytes) = (0, 0);
    while !positions.is_empty() {
        let request = FetchRequest::new(positions.clone()).with_max_wait(Duration::from_millis(10));
        let mut next = Vec::new();
        for partition in client.fetch(&request).await.unwrap() {
            assert_eq!(partition.error, None);
            records += partition.records.len();
            for r in &partition.records {
                bytes += r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len);
            }
            if partition.next_offset < partition.high_watermark {
                next.push(FetchPosition::new("bench", partition.partition, partition.next_offset));
            }
        }
        positions = next;
    }
    Measurement {
        records,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    }
}

async fn kbs_produce(bootstrap: &str, topic: &str) -> Measurement {
    const BATCH: usize = 1000;
    let client = KafkaClient::connect(config(bootstrap)).await.unwrap();
    client.create_topics(&[NewTopic::new(topic, PARTITIONS)]).await.unwrap();
    // Records are built before the clock starts, as the Python side builds each one inline.
    let mut per_partition: Vec<Vec<ProduceRecord>> = vec![Vec::new(); PARTITIONS as usize];
    let mut bytes = 0;
    for i in 0..RECORDS {
        let key = Bytes::from(format!("key-{i}"));
        let value = Bytes::from(value_of(i, VALUE_BYTES));
        bytes += key.len() + value.len();
        per_partition[i % PARTITIONS as usize].push(ProduceRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(key),
            value: Some(value),
            headers: Vec::new(),
        });
    }
    let start = Instant::now();
    let producer = IdempotentProducer::new(client, ProducerConfig::default())
        .await
        .unwrap();
    let mut in_flight = VecDeque::new();
    let chunks: Vec<Vec<&[ProduceRecord]>> = per_partition.iter().map(|r| r.chunks(BATCH).collect()).collect();
    for round in 0..chunks[0].len() {
        for (partition, chunks) in chunks.iter().enumerate() {
            if let Some(chunk) = chunks.get(round) {
                in_flight.push_back(producer.produce(topic, partition as i32, chunk));
            }
        }
        while in_flight.len() > 5 * PARTITIONS as usize {
            in_flight.pop_front().unwrap().await.unwrap();
        }
    }
    for call in in_flight {
        call.await.unwrap();
    }
    Measurement {
        records: RECORDS,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn best(runs: &[Measurement]) -> Measurement {
    *runs.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds)).unwrap()
}

fn main() {
    // `cargo test --benches` runs harness-less benches without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let options = KafkaOptions {
        heap_mib: 1024,
        tuned_for_throughput: true,
        ..KafkaOptions::default()
    };
    let Some(broker) = KafkaCluster::start_with(options) else {
        eprintln!("KBS_SKIP_KAFKA=1: skipping the kafka bench");
        return;
    };
    let python = kbs_testkit::python().expect("checked by KafkaCluster::start_with");
    let bootstrap = broker.bootstrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match KafkaClient::connect(config(&bootstrap)).await {
                Ok(client) => {
                    client
                        .create_topics(&[NewTopic::new("bench", PARTITIONS)])
                        .await
                        .unwrap();
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for Kafka: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("Kafka did not answer: {e}"),
            }
        }
    });
    let (partitions, records, value_bytes) = (PARTITIONS.to_string(), RECORDS.to_string(), VALUE_BYTES.to_string());
    eprintln!("seeding {RECORDS} records of {VALUE_BYTES} bytes into {PARTITIONS} partitions with librdkafka");
    librdkafka(
        &python,
        &["seed", &bootstrap, "bench", &partitions, &records, &value_bytes],
    );

    let mut rows = Vec::new();
    let mut fetch_rd = Vec::new();
    let mut fetch_kbs = Vec::new();
    let mut produce_rd = Vec::new();
    let mut produce_kbs = Vec::new();
    for run in 0..RUNS {
        eprintln!("run {}/{RUNS}", run + 1);
        let rd = librdkafka(&python, &["consume", &bootstrap, "bench", &partitions, &records]).unwrap();
        let kbs = runtime.block_on(kbs_fetch(&bootstrap));
        assert_eq!(
            (kbs.records, kbs.bytes),
            (rd.records, rd.bytes),
            "both clients read the same data"
        );
        fetch_rd.push(rd);
        fetch_kbs.push(kbs);
        let topic = format!("librdkafka-produce-{run}");
        runtime.block_on(async {
            let client = KafkaClient::connect(config(&bootstrap)).await.unwrap();
            client
                .create_topics(&[NewTopic::new(&topic, PARTITIONS)])
                .await
                .unwrap();
        });
        let rd = librdkafka(
            &python,
            &["produce", &bootstrap, &topic, &partitions, &records, &value_bytes],
        )
        .unwrap();
        let kbs = runtime.block_on(kbs_produce(&bootstrap, &format!("kbs-produce-{run}")));
        assert_eq!(
            (kbs.records, kbs.bytes),
            (rd.records, rd.bytes),
            "both clients write the same data"
        );
        produce_rd.push(rd);
        produce_kbs.push(kbs);
    }
    for (workload, rd, kbs) in [
        ("fetch", best(&fetch_rd), best(&fetch_kbs)),
        ("produce (idempotent)", best(&produce_rd), best(&produce_kbs)),
    ] {
        rows.push(format!(
            "| {workload} | librdkafka (confluent-kafka) | {:.0} | {:.1} | |",
            rd.records_per_second(),
            rd.megabytes_per_second()
        ));
        rows.push(format!(
            "| {workload} | kbs-kafka | {:.0} | {:.1} | {:.2}x |",
            kbs.records_per_second(),
            kbs.megabytes_per_second(),
            kbs.records_per_second() / rd.records_per_second()
        ));
    }
    println!(
        "\n{RECORDS} records, {VALUE_BYTES}-byte values, {PARTITIONS} partitions, Apache Kafka {KAFKA_VERSION} (one KRaft node), best of {RUNS}\n"
    );
    println!("| workload | client | records/s | MB/s | kbs / librdkafka |");
    println!("|---|---|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
