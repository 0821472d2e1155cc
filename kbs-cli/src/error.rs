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
    /// A restore was stopped (SIGINT/SIGTERM) before it was complete: what it restored is saved
    /// and the same command resumes it.
    #[error(
        "restore {restore_id} of backup {backup_id} is INCOMPLETE: stopped (SIGINT/SIGTERM) before every record was \
         restored. What was restored is saved; run the same command again to resume it (nothing is written twice)"
    )]
    RestoreStopped {
        /// The backup restored.
        backup_id: String,
        /// The restore id.
        restore_id: String,
    },
    /// A worker (`--workers`) was stopped (SIGINT/SIGTERM) before the shared job was complete;
    /// what it did is saved, and it left its group so the other workers take its partitions.
    #[error(
        "{job}: this worker stopped before the job was complete; what it did is saved and the other workers of \
         its group take its partitions over (or start one again with the same command)"
    )]
    WorkerStopped {
        /// The job (`backup B`, `restore R of backup B`).
        job: String,
    },
    /// A worker (`--workers`) lost a partition to another worker: its commit was refused by
    /// the partition's progress object (compare-and-swap), and nothing was written.
    #[error("{0}")]
    Fenced(String),
    /// A snapshot backup was stopped (SIGINT/SIGTERM) before every partition reached its end:
    /// what was read is stored and checkpointed, the manifest stays `in_progress`.
    #[error(
        "backup {backup_id} is INCOMPLETE: stopped before {partitions} of {total_partitions} partitions reached \
         their snapshot end ({records_left} records left to read). What was read is stored and checkpointed and \
         the backup is marked in_progress; run the same command again to resume it"
    )]
    Interrupted {
        /// The backup id.
        backup_id: String,
        /// Partitions that did not reach their end.
        partitions: usize,
        /// Partitions in the backup.
        total_partitions: usize,
        /// Offsets between the stopped partitions' positions and their ends (an upper bound of
        /// the records left).
        records_left: u64,
    },
    /// A snapshot backed up every partition but these, which had no leader for the whole
    /// `--leader-wait`; the backup stays incomplete and a rerun completes it.
    #[error(
        "backup {backup_id} is incomplete: {} had no leader for {waited_secs} s (all their replicas down) and \
         were not backed up; every other partition is. Rerun the same command once they have a leader to \
         complete it",
        partitions.join(", ")
    )]
    PartitionsWithoutLeader {
        /// The backup id.
        backup_id: String,
        /// `topic/partition` of each partition left out.
        partitions: Vec<String>,
        /// How long the backup waited.
        waited_secs: u64,
    },
    /// The broker's answer lacked a partition that was asked for.
    #[error("{api} gave no answer for {topic}/{partition}")]
    MissingAnswer {
        /// The request.
        api: &'static str,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A backup's source is not what the backup holds (another cluster; a topic deleted and
    /// created again).
    #[error("{0}")]
    SourceChanged(String),
    /// A segment verifies but is not the one the manifest records.
    #[error("{key} is not the segment the manifest records: {what}")]
    SegmentMismatch {
        /// The segment's key.
        key: String,
        /// What differs.
        what: String,
    },
    /// A restore's target is not what the restore wrote (deleted and created again, truncated).
    #[error("{0}")]
    TargetChanged(String),
    /// A local storage root that does not exist.
    #[error("storage root {root} does not exist (no backup was ever written there)")]
    StorageRootMissing {
        /// The root as given.
        root: String,
    },
    /// A restore was asked of a backup that is not complete.
    #[error(
        "backup {backup_id} is not complete (status {status}): it may lack records of its snapshot. Finish it by \
         rerunning its backup command, or pass --allow-incomplete to restore what it holds so far"
    )]
    Incomplete {
        /// The backup id.
        backup_id: String,
        /// The manifest's status.
        status: String,
    },
    /// The backup is being deleted (its deletion marker exists): it is gone for every reader.
    #[error(
        "backup {backup_id} is being deleted (a deletion started at {started}; rerun `kbs delete --backup-id \
         {backup_id}` or the prune to finish it): it can no longer be read or written"
    )]
    BeingDeleted {
        /// The backup id.
        backup_id: String,
        /// When the deletion started (RFC 3339).
        started: String,
    },
    /// The backup is encrypted and the key to read it is missing or is not one of its
    /// recipients; or a backup would mix encrypted and plain segments, or recipients.
    #[error("{0}")]
    Encryption(String),
    /// An export object could not be encoded.
    #[error("exporting {object}: {message}")]
    Export {
        /// The object being written.
        object: String,
        /// What went wrong.
        message: String,
    },
    /// An envelope object given to `kbs import` cannot be read as the envelope.
    #[error("importing {object}: {message}")]
    Import {
        /// The object being read.
        object: String,
        /// What is wrong with it (where known, which record).
        message: String,
    },
}

/// What [`CliError::BeingDeleted`] says; also `kbs list`'s status of such a backup.
pub(crate) const BEING_DELETED: &str = "being deleted";

impl CliError {
    /// The process exit code for this error (documented in the README): 2 for a wrong command
    /// line or config, 4 for an interrupted backup that a rerun resumes, 5 for a backup held by
    /// another writer, 1 for every other failure. (0 is success, 3 is a validation that found
    /// problems.)
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config { .. } | CliError::InvalidArgument { .. } => 2,
            CliError::Interrupted { .. }
            | CliError::PartitionsWithoutLeader { .. }
            | CliError::WorkerStopped { .. }
            | CliError::RestoreStopped { .. } => 4,
            CliError::Locked(_) | CliError::Fenced(_) => 5,
            _ => 1,
        }
    }

    /// A stable, machine-readable name of the kind of error (the `kind` of `--output json`
    /// errors).
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::Config { .. } => "config",
            CliError::InvalidArgument { .. } => "invalid_argument",
            CliError::Storage(_) => "storage",
            CliError::Manifest(_) => "manifest",
            CliError::Segment { .. } => "segment",
            CliError::Unparsable { .. } => "unparsable",
            CliError::BackupNotFound { .. } => "backup_not_found",
            CliError::ReadFile { .. } => "read_file",
            CliError::Kafka(_) => "kafka",
            CliError::Fetch { .. } => "fetch",
            CliError::Spool { .. } => "spool",
            CliError::Locked(_) => "locked",
            CliError::Fenced(_) => "fenced",
            CliError::WorkerStopped { .. } => "worker_stopped",
            CliError::RestoreStopped { .. } => "restore_stopped",
            CliError::Interrupted { .. } => "interrupted",
            CliError::PartitionsWithoutLeader { .. } => "partitions_without_leader",
            CliError::Incomplete { .. } => "incomplete",
            CliError::StorageRootMissing { .. } => "storage_root_missing",
            CliError::MissingAnswer { .. } => "missing_answer",
            CliError::TargetChanged(_) => "target_changed",
            CliError::SourceChanged(_) => "source_changed",
            CliError::SegmentMismatch { .. } => "segment_mismatch",
            CliError::BeingDeleted { .. } => "being_deleted",
            CliError::Encryption(_) => "encryption",
            CliError::Export { .. } => "export",
            CliError::Import { .. } => "import",
        }
    }
}
