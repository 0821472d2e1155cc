//! `manifest.json`: the commit point of a backup and the map a restore reads.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Document, ManifestError};
use crate::names::{BackupId, SegmentName, TopicName};
use crate::serde_util;
use crate::time::UtcTimestamp;

/// The backup manifest, `<backup-id>/manifest.json`.
///
/// Build one with [`ManifestBuilder`](crate::ManifestBuilder) (which derives every
/// summary field), read one with [`Manifest::from_json`], check one with
/// [`Manifest::validate`]. `docs/MANIFEST.md` is the full reference.
///
/// JSON layout (fields marked *additive* are extensions that plain 1.0 readers ignore;
/// optional fields are omitted when absent and read as absent when `null`):
///
/// ```json
/// {
///   "version": "1.0",
///   "backup_id": "nightly-2026-11-21",
///   "created_at": "2026-11-21T06:19:44.123Z",
///   "completed_at": "2026-11-21T06:25:02.481Z",      // optional: absent until complete
///   "status": "complete",                            // additive, optional
///   "source_cluster": { "cluster_id": "…", "bootstrap_servers": ["…"] },
///   "compression": { "algorithm": "zstd", "level": 3 },
///   "statistics": { "topics": 1, "partitions": 1, "segments": 1, "records": 10,
///                   "uncompressed_bytes": 1000, "compressed_bytes": 300 },
///   "time_range": { "earliest_timestamp": 1795241000000,
///                   "latest_timestamp": 1795241900000 },  // optional: absent with no records
///   "topics": [ TopicEntry, … ],
///   "consumer_groups": { … }                         // additive, optional
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, `"1.0"` when written by this crate.
    pub version: ManifestVersion,
    /// The backup's id; also the first component of its object keys.
    pub backup_id: BackupId,
    /// When the backup started.
    pub created_at: UtcTimestamp,
    /// When the backup completed; absent (or `null`) while it is not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<UtcTimestamp>,
    /// *Additive.* Where the backup stands. Absent in plain manifests: see
    /// [`Manifest::is_complete`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BackupStatus>,
    /// *Additive.* Why the last run stopped, when the status is `"failed"` (the error it
    /// ended with). A rerun that resumes the backup clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The Kafka cluster the records came from.
    pub source_cluster: SourceCluster,
    /// How segment payloads are compressed.
    pub compression: Compression,
    /// *Additive.* How segment payloads are encrypted; absent when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Totals over every topic, partition and segment file.
    pub statistics: Statistics,
    /// Timestamp range over every record; absent (or `null`) when there are no records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// The backed-up topics, sorted by name.
    pub topics: Vec<TopicEntry>,
    /// *Additive.* Snapshot of the source cluster's committed consumer-group offsets.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "serde_util::optional_group_map"
    )]
    pub consumer_groups: Option<ConsumerGroups>,
}

/// Consumer-group snapshot: group id → topic → partition → committed offset.
///
/// In JSON, partitions are object keys holding decimal numbers:
/// `{"billing": {"orders": {"0": {"offset": 1200, "metadata": ""}}}}`.
pub type ConsumerGroups = BTreeMap<String, BTreeMap<TopicName, BTreeMap<i32, CommittedOffset>>>;

impl Manifest {
    /// Parses `manifest.json`.
    ///
    /// The `version` is checked before anything else, so a document of an unknown major
    /// version fails with [`ManifestError::UnsupportedVersion`] whatever else it
    /// contains. Any 1.x document is read; fields this crate does not know are ignored.
    /// Names, timestamps and CRCs are validated while parsing; call
    /// [`validate`](Self::validate) to check that the numbers add up.
    ///
    /// ```
    /// use kbs_manifest::Manifest;
    ///
    /// let err = Manifest::from_json(br#"{"version": "2.0", "something": "else"}"#).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"manifest version "2.0" is not supported: this reader understands versions 1.x and writes 1.0"#
    /// );
    /// ```
    pub fn from_json(json: &[u8]) -> Result<Manifest, ManifestError> {
        let json_error = |source| ManifestError::Json {
            document: Document::Manifest,
            source,
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            version: Option<serde_json::Value>,
        }
        let peek: VersionOnly = serde_json::from_slice(json).map_err(json_error)?;
        match peek.version {
            None => {
                return Err(ManifestError::MissingVersion {
                    document: Document::Manifest,
                });
            }
            Some(serde_json::Value::String(text)) => {
                ManifestVersion::parse(&text)?;
            }
            Some(other) => return Err(unsupported_version(other.to_string())),
        }
        serde_json::from_slice(json).map_err(json_error)
    }

    /// Serialises as pretty-printed JSON (two-space indent, trailing newline).
    pub fn to_json_pretty(&self) -> Vec<u8> {
        to_json_pretty(self)
    }

    /// Whether the backup is complete: `status` is `"complete"`, or, for a plain manifest
    /// without `status`, `completed_at` is present.
    pub fn is_complete(&self) -> bool {
        match self.status {
            Some(status) => status == BackupStatus::Complete,
            None => self.completed_at.is_some(),
        }
    }

    /// The topic entry named `topic`.
    pub fn topic(&self, topic: &str) -> Option<&TopicEntry> {
        self.topics.iter().find(|t| t.name.as_str() == topic)
    }
}

/// Pretty JSON with a trailing newline; serialising these types cannot fail.
pub(crate) fn to_json_pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn unsupported_version(found: String) -> ManifestError {
    ManifestError::UnsupportedVersion {
        document: Document::Manifest,
        found,
        supported: ManifestVersion::CURRENT_STR,
    }
}

/// The manifest format version, `"MAJOR.MINOR"` in JSON.
///
/// This crate writes `"1.0"` and reads every `"1.x"`: minor versions only add fields,
/// which older readers ignore. Any other major version is refused, when parsing, with
/// an error naming both versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestVersion {
    /// Major version; only 1 is understood.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ManifestVersion {
    /// The version this crate writes, 1.0.
    pub const CURRENT: ManifestVersion = ManifestVersion { major: 1, minor: 0 };
    const CURRENT_STR: &'static str = "1.0";

    /// Parses `"MAJOR.MINOR"` and refuses a major version other than 1.
    fn parse(text: &str) -> Result<ManifestVersion, ManifestError> {
        let number = |s: &str| {
            let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
            if canonical { s.parse::<u32>().ok() } else { None }
        };
        let version = text.split_once('.').and_then(|(major, minor)| {
            Some(ManifestVersion {
                major: number(major)?,
                minor: number(minor)?,
            })
        });
        match version {
            Some(version) if version.major == Self::CURRENT.major => Ok(version),
            _ => Err(unsupported_version(format!("{text:?}"))),
        }
    }
}

impl fmt::Display for ManifestVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for ManifestVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ManifestVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ManifestVersion::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// *Additive.* Where a backup stands: `"in_progress"`, `"complete"` or `"failed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Segments are still being written; the manifest is a resumable snapshot.
    InProgress,
    /// Every segment listed is durable and the backup finished; `completed_at` is set.
    Complete,
    /// The backup stopped for good; what is listed is durable but incomplete.
    Failed,
}

/// The cluster the records were read from.
///
/// JSON: `{"cluster_id": "lkc-9x2m1", "bootstrap_servers": ["kafka-1:9092"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCluster {
    /// The Kafka cluster id.
    pub cluster_id: String,
    /// The bootstrap servers the backup connected to, as `host:port`.
    pub bootstrap_servers: Vec<String>,
}

/// Compression of segment payloads.
///
/// JSON: `{"algorithm": "zstd", "level": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// The codec.
    pub algorithm: CompressionAlgorithm,
    /// The codec's compression level (0 for `"none"`).
    pub level: i32,
}

/// Encryption at rest of every segment (segment format 1.1): each segment's random data key is
/// wrapped to these age X25519 recipients in the segment's key block.
///
/// JSON: `{"scheme": "age-x25519+chacha20poly1305", "recipients": ["age1…"]}`. The recipients
/// are public keys: the manifest holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The scheme: [`Encryption::SCHEME`].
    pub scheme: String,
    /// The recipients' public keys (`age1…`), in the order given to the backup.
    pub recipients: Vec<String>,
}

impl Encryption {
    /// The one scheme this version writes: age X25519 key wrapping, ChaCha20-Poly1305 payloads.
    pub const SCHEME: &'static str = "age-x25519+chacha20poly1305";

    /// Encryption to `recipients` with [`Encryption::SCHEME`].
    pub fn to_recipients(recipients: Vec<String>) -> Self {
        Encryption {
            scheme: Self::SCHEME.to_string(),
            recipients,
        }
    }
}

/// A compression codec: `"zstd"`, `"lz4"` or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionAlgorithm {
    /// Zstandard.
    Zstd,
    /// LZ4.
    Lz4,
    /// No compression.
    None,
}

/// Totals over the whole backup, derived by the builder.
///
/// JSON: `{"topics": 2, "partitions": 3, "segments": 4, "records": 9000,
/// "uncompressed_bytes": 1234567, "compressed_bytes": 345678}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statistics {
    /// Number of entries in `topics`.
    pub topics: u64,
    /// Number of partition entries over all topics (partitions with data or gaps).
    pub partitions: u64,
    /// Sum of the partitions' `segments`.
    pub segments: u64,
    /// Sum of the partitions' `records`.
    pub records: u64,
    /// Sum of the segment files' `uncompressed_bytes`.
    pub uncompressed_bytes: u64,
    /// Sum of the segment files' `size_bytes`.
    pub compressed_bytes: u64,
}

/// Range of record timestamps, in Unix milliseconds, over every segment.
///
/// JSON: `{"earliest_timestamp": 1795241000000, "latest_timestamp": 1795241900000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Smallest record timestamp (minimum of the segments' `min_timestamp`).
    pub earliest_timestamp: i64,
    /// Largest record timestamp (maximum of the segments' `max_timestamp`).
    pub latest_timestamp: i64,
}

/// One backed-up topic.
///
/// JSON: `{"name": "orders", "partition_count": 3, "configs": {"cleanup.policy":
/// "delete"}, "partitions": [PartitionEntry, …]}`; `partition_count` and `configs` are
/// additive and optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    /// The topic name.
    pub name: TopicName,
    /// *Additive.* Partitions the topic had at backup time, including empty ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<u32>,
    /// *Additive.* Kafka's topic id (base64url, as Kafka prints it) of the topic backed up: a
    /// topic deleted and created again under the same name has another id, so a later run can
    /// tell it is not the topic this backup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// *Additive.* The topic's non-default configs, e.g. `cleanup.policy`, `retention.ms`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "serde_util::optional_string_map"
    )]
    pub configs: Option<BTreeMap<String, String>>,
    /// Partitions holding at least one segment or gap, sorted by number.
    pub partitions: Vec<PartitionEntry>,
}

impl TopicEntry {
    /// The entry of partition `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionEntry> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// One backed-up partition.
///
/// JSON: `{"partition": 0, "first_offset": 0, "last_offset": 999, "records": 1000,
/// "segments": 1, "segment_files": [SegmentFile, …], "gaps": [Gap, …]}`;
/// `segment_files` and `gaps` are additive and omitted when empty.
///
/// A partition without segments but with gaps has `records` 0, `segments` 0,
/// `first_offset` equal to its first gap's `from_offset` and `last_offset` one less
/// (an empty range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    /// The partition number.
    pub partition: i32,
    /// Offset of the first backed-up record (the first segment's `first_offset`).
    pub first_offset: i64,
    /// Offset of the last backed-up record (the last segment's `last_offset`).
    pub last_offset: i64,
    /// Records backed up (sum over the segment files).
    pub records: u64,
    /// Segment files written (length of `segment_files`).
    pub segments: u64,
    /// *Additive.* Every segment file, in offset order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<SegmentFile>,
    /// *Additive.* Offsets that existed in Kafka but are not in the backup, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// *Additive.* One segment object,
/// `<backup-id>/topics/<topic>/<partition>/<name>`.
///
/// Enough to pick segments for an offset range or a time window without opening them.
/// `min_timestamp`/`max_timestamp` are the smallest and largest record timestamps (not
/// the first and last: timestamps can be out of order).
///
/// JSON: `{"name": "segment-00000000.kbs", "first_offset": 0, "last_offset": 999,
/// "records": 1000, "min_timestamp": 1795241000000, "max_timestamp": 1795241900000,
/// "size_bytes": 48213, "uncompressed_bytes": 160000, "crc64": "995dc9bbdf1939fa"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    /// The segment's file name, which carries its sequence number.
    pub name: SegmentName,
    /// Offset of the segment's first record.
    pub first_offset: i64,
    /// Offset of the segment's last record.
    pub last_offset: i64,
    /// Number of records in the segment (at least 1).
    pub records: u64,
    /// Smallest record timestamp, Unix milliseconds.
    pub min_timestamp: i64,
    /// Largest record timestamp, Unix milliseconds.
    pub max_timestamp: i64,
    /// Size of the segment object in bytes.
    pub size_bytes: u64,
    /// Bytes of record data before compression.
    pub uncompressed_bytes: u64,
    /// CRC-64/XZ stored in the segment header (covering every byte after the header).
    pub crc64: Crc64,
}

/// *Additive.* Offsets `from_offset..=to_offset` that existed in Kafka but are not in
/// the backup.
///
/// JSON: `{"from_offset": 1000, "to_offset": 1499, "reason": "retention"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing offset.
    pub from_offset: i64,
    /// Last missing offset (inclusive).
    pub to_offset: i64,
    /// Why they are missing, e.g. [`Gap::RETENTION`].
    pub reason: String,
}

impl Gap {
    /// Reason for records that retention deleted before the backup read them.
    pub const RETENTION: &'static str = "retention";
}

/// *Additive.* A consumer group's committed position in one partition.
///
/// JSON: `{"offset": 1200, "metadata": ""}`; a missing `metadata` reads as `""`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The committed offset (the next record the group will read).
    pub offset: i64,
    /// The metadata string committed with it.
    #[serde(default)]
    pub metadata: String,
}

/// A CRC-64 written as 16 lowercase hexadecimal digits, e.g. `"995dc9bbdf1939fa"`.
///
/// Not a JSON number: integers above 2^53 lose precision in readers that use doubles
/// (JavaScript, jq). Parsing accepts exactly 16 lowercase hex digits.
///
/// ```
/// use kbs_manifest::Crc64;
///
/// assert_eq!(Crc64(0x995d_c9bb_df19_39fa).to_string(), "995dc9bbdf1939fa");
/// assert_eq!("000000000000002a".parse::<Crc64>().unwrap(), Crc64(42));
/// assert!("2a".parse::<Crc64>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Crc64(pub u64);

impl fmt::Display for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Crc64 {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            if let Ok(value) = u64::from_str_radix(s, 16) {
                return Ok(Crc64(value));
            }
        }
        Err(ManifestError::InvalidCrc64 { value: s.to_owned() })
    }
}

impl Serialize for Crc64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Crc64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
