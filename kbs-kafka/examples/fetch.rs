//! Prints every record of a topic, from the start of each partition to its high watermark.
//!
//! ```sh
//! cargo run -p kbs-kafka --example fetch -- localhost:9092 orders
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use kbs_kafka::{ClientConfig, FetchPosition, FetchRequest, KafkaClient, OffsetSpec};

fn show(bytes: &Option<bytes::Bytes>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(topic)) = (args.next(), args.next()) else {
        eprintln!("usage: fetch BOOTSTRAP_SERVER TOPIC");
        std::process::exit(2);
    };
    let client = KafkaClient::connect(ClientConfig::new([bootstrap])).await?;
    let metadata = client.metadata(Some(&[topic.as_str()])).await?;
    let partitions: Vec<i32> = metadata.topics[0].partitions.iter().map(|p| p.partition).collect();
    let queries: Vec<(&str, i32, OffsetSpec)> = partitions
        .iter()
        .map(|&p| (topic.as_str(), p, OffsetSpec::Earliest))
        .collect();
    let mut positions: Vec<FetchPosition> = client
        .list_offsets(&queries)
        .await?
        .into_iter()
        .map(|o| FetchPosition::new(&topic, o.partition, o.offset.unwrap_or(0)))
        .collect();
    let mut total = 0usize;
    while !positions.is_empty() {
        let request = FetchRequest::new(positions.clone()).with_max_wait(Duration::from_millis(50));
        let mut next = Vec::new();
        for partition in client.fetch(&request).await? {
            if let Some(error) = &partition.error {
                eprintln!("{}/{}: {error}", partition.topic, partition.partition);
                continue;
            }
            for r in &partition.records {
                let headers: Vec<String> = r
                    .headers
                    .iter()
                    .map(|h| format!("{}={}", String::from_utf8_lossy(&h.key), show(&h.value)))
                    .collect();
                println!(
                    "{}/{} offset={} timestamp={} ({:?}) key={} value={} headers=[{}]",
                    partition.topic,
                    partition.partition,
                    r.offset,
                    r.timestamp,
                    r.timestamp_type,
                    show(&r.key),
                    show(&r.value),
                    headers.join(", ")
                );
            }
            total += partition.records.len();
            if partition.next_offset < partition.high_watermark {
                next.push(FetchPosition::new(&topic, partition.partition, partition.next_offset));
            }
        }
        positions = next;
    }
    eprintln!("{total} records");
    Ok(())
}
