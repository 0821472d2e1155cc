//! Manifest, checkpoint and object-key layout model for kbs Kafka backups.
//!
//! A backup lives under `<backup-id>/` in a storage root:
//!
//! - [`Manifest`] (`manifest.json`) is the commit point of the backup and the map a
//!   restore reads: topics, partitions, every segment file with its offset and
//!   timestamp range, and derived totals. [`ManifestBuilder`] accumulates segments as
//!   they become durable and derives the totals; [`Manifest::validate`] checks that a
//!   manifest is consistent.
//! - [`Checkpoint`] (`checkpoints/checkpoint.json`) records how far each partition is
//!   durably backed up, so a backup can resume.
//! - [`layout`] makes and parses the object keys. Every name that reaches a key is
//!   validated ([`TopicName`], [`BackupId`], [`SegmentName`]), so no crafted document
//!   can point a reader outside its backup.
//!
//! This crate is a pure model: serde and serde_json, no I/O, no clock, no printing. The
//! JSON formats and their compatibility rules are documented in `docs/MANIFEST.md`.
//!
//! ```
//! use kbs_manifest::{BackupStatus, Manifest};
//!
//! let json = br#"{
//!   "version": "1.3",
//!   "backup_id": "b1",
//!   "created_at": "2026-11-21T06:19:44.123Z",
//!   "status": "in_progress",
//!   "source_cluster": {"cluster_id": "c1", "bootstrap_servers": ["kafka:9092"]},
//!   "compression": {"algorithm": "none", "level": 0},
//!   "statistics": {"topics": 0, "partitions": 0, "segments": 0, "records": 0,
//!                  "uncompressed_bytes": 0, "compressed_bytes": 0},
//!   "topics": [],
//!   "added_in_1_3": {"ignored": true}
//! }"#;
//! let manifest = Manifest::from_json(json)?;
//! assert_eq!(manifest.status, Some(BackupStatus::InProgress));
//! assert!(manifest.validate().is_empty());
//! # Ok::<(), kbs_manifest::ManifestError>(())
//! ```

#![forbid(unsafe_code)]

mod builder;
mod checkpoint;
mod error;
pub mod layout;
mod manifest;
mod names;
mod serde_util;
mod time;
mod validate;

pub use builder::ManifestBuilder;
pub use checkpoint::{Checkpoint, PartitionCheckpoint};
pub use error::{Document, ManifestError, NameKind};
pub use manifest::{
    BackupStatus, CommittedOffset, Compression, CompressionAlgorithm, ConsumerGroups, Crc64, Encryption, Gap, Manifest,
    ManifestVersion, PartitionEntry, SegmentFile, SourceCluster, Statistics, TimeRange, TopicEntry,
};
pub use names::{BackupId, MAX_NAME_LEN, SegmentName, TopicName};
pub use time::UtcTimestamp;
pub use validate::{ProblemKind, ValidationProblem};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
