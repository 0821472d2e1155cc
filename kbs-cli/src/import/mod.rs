//! `kbs import`: envelope objects (kbs's own exports, or the S3 connectors' JSON envelope)
//! back into Kafka, exactly once and resumable.
//!
//! Import is two steps, both resumable:
//!
//! 1. **Stage** (`stage.rs`): the objects are read, checked and written as an ordinary kbs
//!    backup (segments in offset order per source partition, a complete manifest) in the
//!    staging storage (`--storage`). It can be listed, validated and restored like any other.
//! 2. **Restore**: `kbs restore` of that backup, with its exactly-once resume, topic maps,
//!    topic creation and rate limits.
//!
//! An interrupted import rerun with the same command skips staging when it finished, and the
//! restore continues where it stopped: no record is produced twice.

mod read;
mod stage;

use std::sync::Arc;

use kbs_manifest::BackupId;
use kbs_storage::ObjectStorage;
use serde::Serialize;

pub use read::{EnvelopeRecord, TextDecoding, read_avro, read_jsonl, read_parquet};
pub use stage::StageReport;

use crate::CliError;
use crate::export::BytesAs;
use crate::restore::{RestoreOptions, RestoreReport};

/// The envelope objects' format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// JSON Lines: `.jsonl`, `.json` and their `.gz` forms.
    Jsonl,
    /// Parquet: `.parquet`.
    Parquet,
    /// Avro object container files: `.avro`.
    Avro,
}

impl std::str::FromStr for ImportFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "jsonl" | "json" => Ok(ImportFormat::Jsonl),
            "parquet" => Ok(ImportFormat::Parquet),
            "avro" => Ok(ImportFormat::Avro),
            other => Err(format!("{other:?} is not jsonl, parquet or avro")),
        }
    }
}

impl ImportFormat {
    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            ImportFormat::Jsonl => "jsonl",
            ImportFormat::Parquet => "parquet",
            ImportFormat::Avro => "avro",
        }
    }

    /// The object name endings read.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ImportFormat::Jsonl => &[".jsonl", ".json", ".jsonl.gz", ".json.gz"],
            ImportFormat::Parquet => &[".parquet"],
            ImportFormat::Avro => &[".avro"],
        }
    }

    /// Whether an object of this name is read.
    pub fn reads(self, key: &str) -> bool {
        self.extensions().iter().any(|ext| key.ends_with(ext))
    }
}

/// What `kbs import` is asked to do.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The objects' format.
    pub format: ImportFormat,
    /// How text-format keys are read (`None`: as `_kbs_export.json` says, else as text).
    pub key_as: Option<BytesAs>,
    /// How text-format values are read (likewise).
    pub value_as: Option<BytesAs>,
    /// The id of the staged backup.
    pub staged_backup_id: BackupId,
    /// Bytes of overlapping objects merged in memory at most.
    pub memory_budget: u64,
    /// The restore of the staged backup (its `backup_id` is `staged_backup_id`).
    pub restore: RestoreOptions,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The staging step.
    pub staged: StageReport,
    /// The restore step.
    pub restore: RestoreReport,
}

/// The default staged backup id: `import-` and a hash of where the objects are and their
/// format, so the same command finds the same staged backup.
pub fn default_staged_backup_id(from: &str, format: ImportFormat) -> BackupId {
    let hash = crate::stable_hash::fnv1a(format!("{from}|{}", format.name()).as_bytes());
    BackupId::new(format!("import-{hash:016x}")).expect("a valid id")
}

/// Stages the objects of `from` as a backup in `staging`, then restores it.
pub async fn run(
    from: Arc<dyn ObjectStorage>,
    staging: Arc<dyn ObjectStorage>,
    mut options: ImportOptions,
    progress: Arc<dyn crate::backup::ProgressSink>,
) -> Result<ImportReport, CliError> {
    let staged = stage::stage(&from, &staging, &options, progress.as_ref()).await?;
    progress.note(&format!(
        "staged {} records of {} objects as backup {}{}",
        staged.records,
        staged.objects,
        staged.backup_id,
        if staged.already_staged {
            " (by an earlier run)"
        } else {
            ""
        }
    ));
    options.restore.backup_id = options.staged_backup_id.clone();
    let metrics = Arc::new(crate::metrics::RestoreMetrics::default());
    let restore = crate::restore::run_with_metrics(staging, options.restore, metrics, progress).await?;
    Ok(ImportReport { staged, restore })
}
