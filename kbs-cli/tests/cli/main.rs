//! Integration tests of the `kbs` binary against a real broker (Apache Kafka in KRaft mode), real storage
//! (filesystem, moto's S3) and an independent client (confluent-kafka).

mod auth;
mod backup;
mod embedding;
mod encryption;
mod export;
mod export_formats;
mod faults;
mod harness;
mod kafka_semantics;
mod lifecycle;
mod repartition;
mod resilience;
mod restore;
mod secrets;
mod usability;
mod workers;
