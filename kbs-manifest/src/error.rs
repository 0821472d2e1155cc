//! The crate's single error type.

use std::fmt;

use crate::checkpoint::PartitionCheckpoint;
use crate::names::TopicName;
use crate::validate::ValidationProblem;

/// Which JSON document an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Document {
    /// `manifest.json`.
    Manifest,
    /// `checkpoints/checkpoint.json`.
    Checkpoint,
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Document::Manifest => "manifest",
            Document::Checkpoint => "checkpoint",
        })
    }
}

/// Which kind of name failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A Kafka topic name.
    Topic,
    /// A backup id.
    BackupId,
    /// A segment file name (`segment-NNNNNNNN.kbs`).
    SegmentFile,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Topic => "topic name",
            NameKind::BackupId => "backup id",
            NameKind::SegmentFile => "segment file name",
        })
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The document is not valid JSON, or a field has the wrong type or an invalid value.
    ///
    /// The message of `source` names the offending value and its line and column.
    #[error("{document} cannot be parsed: {source}")]
    Json {
        /// The document being parsed.
        document: Document,
        /// The underlying serde_json error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest has no `version` field.
    #[error("{document} has no \"version\" field")]
    MissingVersion {
        /// The document being parsed.
        document: Document,
    },
    /// The document's version is not one this reader understands.
    #[error("{document} version {found} is not supported: this reader understands versions 1.x and writes {supported}")]
    UnsupportedVersion {
        /// The document being parsed.
        document: Document,
        /// The `version` value found, as JSON text (e.g. `"2.0"`).
        found: String,
        /// The version this crate writes.
        supported: &'static str,
    },
    /// A topic name, backup id or segment file name is not allowed.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidName {
        /// What the name is for.
        kind: NameKind,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A string is not an ISO-8601 UTC timestamp of the accepted form.
    #[error("invalid timestamp {value:?}: {reason} (expected e.g. \"2026-11-21T06:19:44.123Z\")")]
    InvalidTimestamp {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A Unix time cannot be written as a four-digit-year timestamp.
    #[error("Unix time {unix_millis} ms is outside the years 0000 to 9999")]
    TimestampOutOfRange {
        /// The rejected time in milliseconds since the Unix epoch.
        unix_millis: i64,
    },
    /// A `crc64` value is not 16 lowercase hexadecimal digits.
    #[error("invalid crc64 {value:?}: expected 16 lowercase hexadecimal digits")]
    InvalidCrc64 {
        /// The rejected value.
        value: String,
    },
    /// A partition number is negative, or a partition key is not a canonical decimal number.
    #[error("invalid partition {value:?}: expected a decimal integer from 0 to 2147483647")]
    InvalidPartition {
        /// The rejected value.
        value: String,
    },
    /// An object key is not a segment key of this layout.
    #[error("invalid segment key {key:?}: {reason}")]
    InvalidSegmentKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The builder was given a segment or gap for a topic it does not know.
    #[error("topic {topic} was not added to the manifest builder")]
    UnknownTopic {
        /// The unknown topic.
        topic: TopicName,
    },
    /// The builder was given a partition outside `0..partition_count`.
    #[error("partition {partition} of topic {topic} is outside 0..{partition_count}")]
    PartitionOutOfRange {
        /// The topic.
        topic: TopicName,
        /// The rejected partition.
        partition: i32,
        /// The topic's partition count.
        partition_count: u32,
    },
    /// The builder refused a change because it would make the manifest inconsistent.
    #[error("manifest builder refused the change: {problem}")]
    Rejected {
        /// What would have been wrong.
        problem: Box<ValidationProblem>,
    },
    /// A manifest to resume from is inconsistent.
    #[error("manifest is inconsistent ({} problem(s)); first: {}", problems.len(), first_problem(problems))]
    Inconsistent {
        /// Every problem [`Manifest::validate`](crate::Manifest::validate) found.
        problems: Vec<ValidationProblem>,
    },
    /// A manifest to resume from lists a partition's segments without their `segment_files`.
    #[error("topic {topic} partition {partition} has {segments} segment(s) but no segment_files: it cannot be resumed")]
    MissingSegmentFiles {
        /// The topic.
        topic: TopicName,
        /// The partition.
        partition: i32,
        /// The partition's `segments` count.
        segments: u64,
    },
    /// A checkpoint position has a negative offset.
    #[error("checkpoint of topic {topic} partition {partition} cannot record negative offset {offset}")]
    NegativeCheckpointOffset {
        /// The topic.
        topic: TopicName,
        /// The partition.
        partition: i32,
        /// The refused offset.
        offset: i64,
    },
    /// A checkpoint update would move a partition's position backwards.
    #[error(
        "checkpoint of topic {topic} partition {partition} cannot move back from offset {} in {} to offset {} in {}",
        current.offset, current.segment, proposed.offset, proposed.segment
    )]
    CheckpointRegression {
        /// The topic.
        topic: TopicName,
        /// The partition.
        partition: i32,
        /// The position already recorded.
        current: PartitionCheckpoint,
        /// The refused position.
        proposed: PartitionCheckpoint,
    },
}

fn first_problem(problems: &[ValidationProblem]) -> String {
    problems.first().map_or_else(|| "none".to_owned(), ToString::to_string)
}
