//! Test harness shared by the kbs integration tests (kbs-kafka, kbs-storage, kbs-cli): real
//! servers on loopback, started per test on free ports, polled until they answer (with a
//! deadline) and killed on drop, and the independent Python clients (confluent-kafka) from the
//! venv that `scripts/setup.sh` creates.
//!
//! | item | what |
//! | --- | --- |
//! | [`KafkaCluster`] | Apache Kafka in KRaft mode: one node, or several with per-node stop, SIGKILL and restart; PLAINTEXT, SSL, mTLS, SASL (PLAIN, SCRAM, OAUTHBEARER) |
//! | [`MskIamEndpoint`] | a local Amazon MSK IAM endpoint in front of a Kafka node: `AWS_MSK_IAM` and MSK OAUTHBEARER signatures checked with botocore |
//! | [`Pki`] | a test CA with server and client certificates, as PEM files |
//! | [`Moto`] | an S3 server with AWS conditional-write semantics, with a bucket |
//! | [`Garage`] | a single-node Garage S3 cluster (ignores conditional headers), with a bucket and a key |
//! | [`find_program`], [`python`], [`cache_dir`] | where set-up installed the tools |
//! | [`require`], [`note`] | the skip rule, and notes on stderr |
//! | [`run_script`], [`run_python`], [`python_command`], [`script`] | running Python scripts with the venv |
//! | [`HttpStub`] | a stand-in for a remote HTTP service (token endpoint, STS, metadata endpoints): answers by a function of the request and keeps the requests |
//! | [`free_port`], [`wait_until`], [`http_request`], [`Server`] | building blocks |
//!
//! ```no_run
//! let Some(kafka) = kbs_testkit::KafkaCluster::start() else { return }; // skipped: see below
//! let bootstrap = kafka.bootstrap(); // 127.0.0.1:PORT, for the code under test
//! kbs_testkit::run_script("seed.py", &[&kafka.internal_bootstrap(), "simple", "t", "100", "2"]);
//! ```
//!
//! A missing tool fails the test with a message naming `scripts/setup.sh`, unless its skip
//! variable is `1`: `KBS_SKIP_KAFKA` (Kafka's jars, Java or the venv's Python),
//! `KBS_SKIP_MOTO` (moto_server), `KBS_SKIP_GARAGE` (garage). The variable only skips when the
//! tool really is missing, and says so on stderr: tests are never skipped silently, and never
//! skipped when they can run.
//!
//! Python scripts used by more than one test suite live in `kbs-testkit/py` (see [`script`]),
//! e.g. `seed.py` (produces datasets) and `consume.py` (reads whole topics as JSON lines); a
//! suite's own scripts stay with the suite and run with [`run_python`].

mod faults;
mod http;
mod kafka;
mod msk;
mod oauth;
mod pki;
mod python;
mod s3;
mod server;
mod tools;

pub use faults::{S3Fault, S3FaultProxy};
pub use http::{HttpRequest, HttpStub};
pub use kafka::{KAFKA_VERSION, KafkaCluster, KafkaNode, KafkaOptions, Listener, SASL_PASSWORD, SASL_USER};
pub use msk::{AwsKey, MskAuthentication, MskIamEndpoint};
pub use oauth::{TokenEndpoint, unsecured_jwt};
pub use pki::Pki;
pub use python::{python_command, run_python, run_script, script};
pub use s3::{Garage, Moto, http_request};
pub use server::{Server, free_port, wait_until};
pub use tools::{cache_dir, find_program, note, python, require};
