//! The error type of the kbs command's library.

use std::path::PathBuf;

/// Everything a kbs command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line is wrong (or `--help`/`--version` was asked for).
    #[error("{0}")]
    Usage(clap::Error),
    /// The config file cannot be read or has an unknown key.
    #[error("config file {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A flag's value is invalid.
    #[error("invalid --{flag}: {message}")]
    InvalidArgument {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A storage operation failed.
    #[error(transparent)]
    Storage(#[from] kbs_storage::Error),
    /// A manifest, checkpoint or name is invalid.
    #[error(transparent)]
    Manifest(#[from] kbs_manifest::ManifestError),
    /// A segment is invalid.
    #[error("{key}: {source}")]
    Segment {
        /// Where the segment is (key or path).
        key: String,
        /// What is wrong.
        source: kbs_format::FormatError,
    },
    /// A document that must be parsed before it may be replaced cannot be parsed.
    #[error("{key} exists but cannot be parsed ({message}); kbs will not overwrite it")]
    Unparsable {
        /// The key.
        key: String,
        /// The parse error.
        message: String,
    },
    /// The backup does not exist.
    #[error("no backup {backup_id:?} under {storage} ({key} not found)")]
    BackupNotFound {
        /// The backup id.
        backup_id: String,
        /// The storage root.
        storage: String,
        /// The manifest key looked for.
        key: String,
    },
    /// Reading a local file failed.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A Kafka operation failed.
    #[error(transparent)]
    Kafka(#[from] kbs_kafka::Error),
    /// A fetch failed for one partition.
    #[error("fetching {topic}/{partition}: {error}")]
    Fetch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the broker or decoder reported.
        error: kbs_kafka::PartitionError,
    },
    /// Spooling a segment to a temporary file failed.
    #[error("{key}: spooling to a temporary file failed: {source}")]
    Spool {
        /// The segment.
        key: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the backup's lease.
    #[error("{0}")]
    Locked(String),
}
