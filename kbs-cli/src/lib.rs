//! The library half of the `kbs` command: each subcommand's work, composed from the kbs
//! crates. The binary (`main.rs`) only parses arguments, sets up logging and the runtime,
//! and hands this library a writer for the report; the library never prints on its own.
//!
//! Back up a topic and restore it under another name:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kbs_cli::backup::{BackupOptions, NoProgress, TopicFilter};
//! use kbs_cli::restore::RestoreOptions;
//! use kbs_cli::{kbs_kafka, kbs_manifest, kbs_storage};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = kbs_storage::open("/var/backups/kafka", &Default::default()).await?;
//! let kafka = kbs_kafka::ClientConfig::new(["127.0.0.1:9092"]);
//! let id = kbs_manifest::BackupId::new("nightly")?;
//!
//! let mut backup = BackupOptions::new(id.clone(), kafka.clone());
//! backup.topics = TopicFilter::new(vec!["orders".into()], Vec::new());
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! kbs_cli::backup::run(storage.clone(), backup, Arc::new(NoProgress), shutdown).await?;
//!
//! let mut restore = RestoreOptions::new(id, kafka);
//! restore.topic_map.insert("orders".into(), "orders-copy".into());
//! restore.create_topics = true;
//! kbs_cli::restore::run(storage, restore, Arc::new(NoProgress)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! * [`backup`] — snapshot and continuous backups ([`backup::run`]); [`workers`] shares one
//!   among many processes through a Kafka group.
//! * [`restore`] — restores, one to one or repartitioned, to a point in time, with
//!   consumer-group offsets translated ([`restore::run`]).
//! * [`validate`], [`describe`], [`list`], [`status`], [`running`] — reading backups and what
//!   runs them; [`prune`] — retention and deletion; [`export`] and [`import`] — Parquet,
//!   Avro, JSON Lines and CSV.
//! * [`execute`] — a parsed command line ([`cli::Cli`]) run as `kbs` runs it.

mod args;
pub mod backup;
pub mod cli;
mod commands;
pub mod config;
pub mod describe;
pub mod encryption;
mod error;
pub mod export;
pub mod import;
pub mod inspect;
pub mod lease;
pub mod list;
pub mod metrics;
pub mod options;
pub mod prune;
mod rate;
pub mod restore;
pub mod running;
mod stable_hash;
pub mod status;
pub mod storage;
pub mod validate;
pub mod workers;

pub use commands::{backup_summary_text, execute};
pub use error::CliError;
/// The crates the engines are composed of, re-exported so that an embedder's options and
/// types come from the versions this crate was built with.
pub use {kbs_format, kbs_kafka, kbs_manifest, kbs_storage};

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything held.
    Success,
    /// The command ran but found problems (e.g. `validate` on a damaged backup).
    ProblemsFound,
}

/// What the binary hands the library besides the parsed command line.
pub struct Context {
    /// Where long-running commands report progress.
    pub progress: std::sync::Arc<dyn backup::ProgressSink>,
    /// Turns true when the process is asked to stop (SIGINT/SIGTERM).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
