//! Integration tests of kbs-kafka against a real broker: Apache Kafka in KRaft mode, started
//! per test on free loopback ports by kbs-testkit, with data produced and checked by an independent client
//! (confluent-kafka, i.e. librdkafka, from the venv `scripts/setup.sh` creates). Missing tools
//! fail the tests unless `KBS_SKIP_KAFKA=1`.

mod admin;
mod fetch;
mod golden;
mod groups;
mod harness;
mod membership;
mod msk_iam;
mod produce;
mod protocol;
mod proxy;
mod sasl;
mod tls;
