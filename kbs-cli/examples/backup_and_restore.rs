//! Back up a topic to a local folder, check every byte of the backup, and restore it into a
//! new topic: what `kbs backup`, `kbs validate --deep` and `kbs restore` do, with kbs-cli as a
//! library.
//!
//! ```sh
//! # a broker: the quickstart's, or any Kafka you can reach
//! cargo run -p kbs-cli --example backup_and_restore -- 127.0.0.1:9092 orders /tmp/kbs-example
//! ```

use std::path::Path;
use std::sync::Arc;

use kbs_cli::backup::{BackupOptions, NoProgress, TopicFilter};
use kbs_cli::restore::RestoreOptions;
use kbs_cli::validate::Depth;
use kbs_cli::{kbs_format, kbs_kafka, kbs_manifest, kbs_storage};

/// What the example did.
#[derive(Debug)]
pub(crate) struct Summary {
    /// Records stored by the backup.
    pub(crate) backed_up: u64,
    /// Records the deep validation read back and checked.
    pub(crate) checked: u64,
    /// Records produced into the copy.
    pub(crate) restored: u64,
}

/// Backs up `topic` of the cluster at `bootstrap` into backup `example` under `folder` (LZ4
/// segments), validates it deeply, and restores it into `<topic>-copy` (created with the
/// source's partitions and configs).
pub(crate) async fn backup_and_restore(
    bootstrap: &str,
    topic: &str,
    folder: &Path,
) -> Result<Summary, Box<dyn std::error::Error>> {
    let storage = kbs_storage::open(&folder.display().to_string(), &Default::default()).await?;
    let backup_id = kbs_manifest::BackupId::new("example")?;
    let kafka = kbs_kafka::ClientConfig::new([bootstrap]);

    // A snapshot backup: every record up to each partition's end when it starts.
    let mut backup = BackupOptions::new(backup_id.clone(), kafka.clone());
    backup.topics = TopicFilter::new(vec![topic.to_owned()], Vec::new());
    backup.compression = kbs_format::Compression::Lz4;
    // A continuous backup (`backup.continuous = true`) runs until this turns true.
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let backed_up = kbs_cli::backup::run(storage.clone(), backup, Arc::new(NoProgress), shutdown).await?;

    // Every segment read back, every checksum and batch checked.
    let validation = kbs_cli::validate::validate(storage.clone(), &backup_id, Depth::Deep, None).await?;
    if !validation.is_valid() {
        return Err(format!("the backup has problems: {:?}", validation.problems).into());
    }

    // Restore into a renamed topic; rerunning the same restore resumes it without duplicates.
    let mut restore = RestoreOptions::new(backup_id, kafka);
    restore.topic_map.insert(topic.to_owned(), format!("{topic}-copy"));
    restore.create_topics = true;
    let restored = kbs_cli::restore::run(storage, restore, Arc::new(NoProgress)).await?;

    Ok(Summary {
        backed_up: backed_up.records,
        checked: validation.records_checked,
        restored: restored.records,
    })
}

#[allow(clippy::print_stdout)] // an example's output
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, folder] = args.as_slice() else {
        return Err("usage: backup_and_restore BOOTSTRAP TOPIC FOLDER".into());
    };
    let summary = backup_and_restore(bootstrap, topic, Path::new(folder)).await?;
    println!(
        "backed up {} records, checked {}, restored {} into {topic}-copy",
        summary.backed_up, summary.checked, summary.restored
    );
    Ok(())
}
