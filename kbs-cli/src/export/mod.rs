//! `kbs export`: a backup's records as envelope objects (Parquet, Avro, JSON Lines or CSV) for
//! query engines and other tools.
//!
//! Every record becomes one envelope (`envelope.rs`, docs/EXPORT.md): key, value, headers and
//! metadata `{topic, partition, offset, timestamp, timestamp_type}`. Objects are laid out as
//! `<to>/<topic>/<partition>/<first offset, 20 digits>.<ext>`, or with `--partition-by` under
//! folders named after record fields (`partition_by.rs`) as
//! `<to>/<folders>/<topic>+<partition>+<first offset, 20 digits>.<ext>`. An object is cut after
//! `flush_records` records or `flush_bytes` bytes of keys, values and headers.
//!
//! Names and contents depend only on the backup and the options, so a rerun of an interrupted
//! export writes only the objects that are missing. The options are recorded in
//! `<to>/_kbs_export.json`; a rerun with different ones is refused rather than mixing two
//! layouts. Partitions are exported in parallel; each segment is verified (and, when
//! encrypted, authenticated) before any of its records is exported.

mod avro;
mod encode;
mod envelope;
mod objects;
mod parquet;
mod partition_by;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use kbs_format::{Identities, Record};
use kbs_manifest::{BackupId, PartitionEntry, TopicEntry, layout};
use kbs_storage::ObjectStorage;
use serde::Serialize;
use serde_json::{Value, json};

pub use avro::schema_json as avro_schema_json;
pub use encode::{Compression, EncodeSettings, Format};
pub use envelope::{BytesAs, Envelope, Fields, bytes_value};
pub use parquet::schema as parquet_schema;
pub use partition_by::{DEFAULT_PARTITION, PartitionBy};

use crate::CliError;
use crate::backup::{Progress, ProgressSink, TopicFilter};

/// What `kbs export` is asked to do.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The backup to export.
    pub backup_id: BackupId,
    /// Which backed-up topics.
    pub topics: TopicFilter,
    /// Only records at or after this timestamp (ms).
    pub start_time: Option<i64>,
    /// Only records at or before this timestamp (ms).
    pub end_time: Option<i64>,
    /// Per partition, only records at or after this offset.
    pub start_offsets: BTreeMap<(String, i32), i64>,
    /// Per partition, only records at or before this offset.
    pub end_offsets: BTreeMap<(String, i32), i64>,
    /// Format, compression, fields and how keys and values are written.
    pub encode: EncodeSettings,
    /// Folders named after record fields; empty for `<topic>/<partition>/`.
    pub partition_by: PartitionBy,
    /// Cut an object after this many records.
    pub flush_records: u64,
    /// Cut an object once it holds this many bytes of keys, values and headers.
    pub flush_bytes: u64,
    /// Partitions exported at the same time, at most.
    pub concurrency: usize,
    /// Bytes the export may hold in memory; fewer partitions run at once when
    /// `concurrency` of them would need more (see [`partition_memory`]).
    pub memory_budget: u64,
    /// The identities that open an encrypted backup's segments.
    pub identities: Option<Identities>,
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    /// The backup exported.
    pub backup_id: String,
    /// Objects written by this run.
    pub objects_written: u64,
    /// Objects an earlier run had already written (left as they are).
    pub objects_present: u64,
    /// Records in the export (both kinds of object).
    pub records: u64,
    /// Bytes of the export's objects (both kinds).
    pub bytes: u64,
    /// Bytes of the records' keys, values and headers.
    pub record_bytes: u64,
    /// Segment bytes read from the backup.
    pub segment_bytes_read: u64,
    /// Seconds the export took.
    pub duration_secs: f64,
}

/// The options that decide the objects' names and contents, recorded in `_kbs_export.json`.
fn layout_record(options: &ExportOptions) -> Value {
    let offsets = |map: &BTreeMap<(String, i32), i64>| {
        map.iter()
            .map(|((topic, partition), offset)| format!("{topic}:{partition}={offset}"))
            .collect::<Vec<_>>()
    };
    json!({
        "backup_id": options.backup_id.as_str(),
        "format": options.encode.format,
        "compression": options.encode.compression,
        "fields": options.encode.fields,
        "key_as": options.encode.key_as,
        "value_as": options.encode.value_as,
        "start_time": options.start_time,
        "end_time": options.end_time,
        "start_offsets": offsets(&options.start_offsets),
        "end_offsets": offsets(&options.end_offsets),
        "partition_by": options.partition_by.describe(),
        "hive": options.partition_by.hive(),
        "flush_records": options.flush_records,
        "flush_bytes": options.flush_bytes,
        "layout_version": 2,
    })
}

/// The file holding [`layout_record`] under the export's root.
pub const EXPORT_RECORD_KEY: &str = "_kbs_export.json";

/// Counters shared by the partitions exported in parallel.
#[derive(Default)]
struct Counters {
    objects_written: AtomicU64,
    objects_present: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    record_bytes: AtomicU64,
    segment_bytes_read: AtomicU64,
    partitions_done: AtomicU64,
}

/// Exports `options.backup_id` from `source` into `target`, reporting progress to `progress`.
pub async fn run(
    source: Arc<dyn ObjectStorage>,
    target: Arc<dyn ObjectStorage>,
    options: ExportOptions,
    progress: Arc<dyn ProgressSink>,
) -> Result<ExportReport, CliError> {
    let started = Instant::now();
    let manifest = crate::describe::load_manifest(&source, &options.backup_id).await?;
    let identities = crate::encryption::identities_for(&manifest, options.identities.as_ref())?.cloned();
    let options = Arc::new(options);
    let counters = Arc::new(Counters::default());
    let selected: Vec<(&TopicEntry, &PartitionEntry)> = manifest
        .topics
        .iter()
        .filter(|topic| options.topics.selects(topic.name.as_str(), false))
        .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
        .collect();
    let total_records: u64 = selected.iter().map(|(_, p)| p.records).sum();
    let largest_segment = selected
        .iter()
        .flat_map(|(_, p)| p.segment_files.iter().map(|f| f.size_bytes))
        .max()
        .unwrap_or(0);
    let per_partition = partition_memory(&options, largest_segment);
    if per_partition > options.memory_budget {
        return Err(CliError::InvalidArgument {
            flag: "memory-budget",
            message: format!(
                "{} is less than one partition's export needs ({per_partition} bytes: its largest segment, \
                 its open objects and one being written); raise it, or lower --flush-bytes",
                options.memory_budget
            ),
        });
    }
    let concurrency = options
        .concurrency
        .min(usize::try_from(options.memory_budget / per_partition).unwrap_or(usize::MAX))
        .max(1);
    check_layout_record(&target, &options).await?;
    let partitions_total = selected.len() as u64;
    let report_progress = |counters: &Counters| {
        let records = counters.records.load(Ordering::Relaxed);
        progress.report(&Progress {
            records,
            bytes_in: counters.segment_bytes_read.load(Ordering::Relaxed),
            bytes_out: counters.bytes.load(Ordering::Relaxed),
            remaining_offsets: Some(total_records.saturating_sub(records)),
            partitions_done: counters.partitions_done.load(Ordering::Relaxed),
            partitions_total,
            elapsed: started.elapsed(),
        });
    };
    // Each partition is a task of its own, so encoding runs on every core.
    let jobs: Vec<PartitionJob> = selected
        .iter()
        .map(|(topic, partition)| PartitionJob {
            source: source.clone(),
            target: target.clone(),
            options: options.clone(),
            identities: identities.clone(),
            counters: counters.clone(),
            topic: (*topic).clone(),
            partition: (*partition).clone(),
        })
        .collect();
    let mut partitions = futures::stream::iter(jobs.into_iter().map(|job| {
        let topic = format!("{}/{}", job.topic.name, job.partition.partition);
        async move {
            let mut task = AbortOnDrop(tokio::spawn(job.run()));
            (&mut task.0).await.map_err(|e| CliError::Export {
                object: topic,
                message: format!("export task failed: {e}"),
            })?
        }
    }))
    .buffer_unordered(concurrency);
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            next = partitions.next() => match next {
                Some(result) => {
                    result?;
                    counters.partitions_done.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            },
            _ = ticker.tick() => report_progress(&counters),
        }
    }
    report_progress(&counters);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Ok(ExportReport {
        backup_id: options.backup_id.to_string(),
        objects_written: load(&counters.objects_written),
        objects_present: load(&counters.objects_present),
        records: load(&counters.records),
        bytes: load(&counters.bytes),
        record_bytes: load(&counters.record_bytes),
        segment_bytes_read: load(&counters.segment_bytes_read),
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

/// The most one partition's export holds in memory: its largest segment (compressed) and two
/// decoded batches, its open objects (JSON Lines and CSV at up to 1.5 × their records' bytes;
/// Parquet and Avro hold theirs encoded, at most their records' bytes), and one object being
/// written.
pub fn partition_memory(options: &ExportOptions, largest_segment: u64) -> u64 {
    let object = match options.encode.format {
        Format::Jsonl | Format::Csv => options.flush_bytes.saturating_mul(3) / 2,
        Format::Parquet | Format::Avro => options.flush_bytes,
    };
    let open = if options.partition_by.is_empty() {
        object
    } else {
        object.max(objects::OPEN_BYTES_LIMIT)
    };
    const BATCHES: u64 = 2 * (1 << 20);
    largest_segment
        .saturating_add(BATCHES)
        .saturating_add(open)
        .saturating_add(object)
}

/// A task that is stopped when the export stops waiting for it (an error elsewhere, or the
/// export's future dropped), so no partition goes on writing objects on its own.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One partition's export.
struct PartitionJob {
    source: Arc<dyn ObjectStorage>,
    target: Arc<dyn ObjectStorage>,
    options: Arc<ExportOptions>,
    identities: Option<Identities>,
    counters: Arc<Counters>,
    topic: TopicEntry,
    partition: PartitionEntry,
}

impl PartitionJob {
    async fn run(self) -> Result<(), CliError> {
        let options = &*self.options;
        let topic = self.topic.name.as_str();
        let number = self.partition.partition;
        let start_offset = options.start_offsets.get(&(topic.to_owned(), number)).copied();
        let end_offset = options.end_offsets.get(&(topic.to_owned(), number)).copied();
        let log_append = self
            .topic
            .configs
            .as_ref()
            .and_then(|configs| configs.get("message.timestamp.type"))
            .is_some_and(|t| t == "LogAppendTime");
        let mut objects = objects::PartitionObjects::new(
            &self.target,
            options,
            topic,
            number,
            if log_append { "LogAppendTime" } else { "CreateTime" },
        );
        for file in &self.partition.segment_files {
            let outside = options.start_time.is_some_and(|start| file.max_timestamp < start)
                || options.end_time.is_some_and(|end| file.min_timestamp > end)
                || start_offset.is_some_and(|start| file.last_offset < start)
                || end_offset.is_some_and(|end| file.first_offset > end);
            if outside {
                continue;
            }
            let key = layout::segment_key(&options.backup_id, &self.topic.name, number, file.name)?;
            let mut batches = segment_batches(&self.source, &key, self.identities.clone()).await?;
            self.counters
                .segment_bytes_read
                .fetch_add(file.size_bytes, Ordering::Relaxed);
            let inside = |record: &Record| {
                options.start_time.is_none_or(|start| record.timestamp >= start)
                    && options.end_time.is_none_or(|end| record.timestamp <= end)
                    && start_offset.is_none_or(|start| record.offset >= start)
                    && end_offset.is_none_or(|end| record.offset <= end)
            };
            while let Some(batch) = batches.recv().await {
                for record in batch?.iter().filter(|r| inside(r)) {
                    for written in objects.add(record).await? {
                        self.count(written);
                    }
                }
            }
        }
        for written in objects.finish().await? {
            self.count(written);
        }
        Ok(())
    }

    fn count(&self, written: objects::Written) {
        let c = &self.counters;
        if written.was_present {
            c.objects_present.fetch_add(1, Ordering::Relaxed);
        } else {
            c.objects_written.fetch_add(1, Ordering::Relaxed);
        }
        c.records.fetch_add(written.records, Ordering::Relaxed);
        c.bytes.fetch_add(written.bytes, Ordering::Relaxed);
        c.record_bytes.fetch_add(written.record_bytes, Ordering::Relaxed);
    }
}

/// Writes the layout record on a new export, or checks it on a rerun.
async fn check_layout_record(target: &Arc<dyn ObjectStorage>, options: &ExportOptions) -> Result<(), CliError> {
    let wanted = layout_record(options);
    match target.get(EXPORT_RECORD_KEY).await {
        Ok(got) => {
            let found: Value = serde_json::from_slice(&got.bytes).map_err(|e| CliError::Unparsable {
                key: EXPORT_RECORD_KEY.into(),
                message: e.to_string(),
            })?;
            if found != wanted {
                return Err(CliError::InvalidArgument {
                    flag: "to",
                    message: format!(
                        "it holds an export made with other options ({found}); export into an empty place, or \
                         rerun with the same options to finish that one"
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            let body = Bytes::from(serde_json::to_vec_pretty(&wanted).expect("json"));
            target.put(EXPORT_RECORD_KEY, body).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The records of one segment, batch by batch: the whole segment's CRC-64 is checked (and,
/// when encrypted, its key opened) before the first batch is sent, and each batch is
/// decompressed and checked as it is read. At most two decoded batches wait in the channel.
async fn segment_batches(
    storage: &Arc<dyn ObjectStorage>,
    key: &str,
    identities: Option<Identities>,
) -> Result<tokio::sync::mpsc::Receiver<Result<Vec<Record>, CliError>>, CliError> {
    let bytes = storage.get(key).await?.bytes;
    let key = key.to_string();
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let failed = |source| CliError::Segment {
            key: key.clone(),
            source,
        };
        let reader = match crate::encryption::open_segment(bytes, identities.as_ref()) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = sender.blocking_send(Err(failed(e)));
                return;
            }
        };
        for batch in reader.batches() {
            let records = batch.map(|b| b.into_records().collect::<Vec<_>>()).map_err(failed);
            let stop = records.is_err();
            // A closed channel: the export stopped (an error elsewhere); nothing more to do.
            if sender.blocking_send(records).is_err() || stop {
                return;
            }
        }
    });
    Ok(receiver)
}

/// Sample records and objects for the tests of the encoders and of the import's readers.
#[cfg(test)]
pub(crate) mod testing {
    use bytes::Bytes;
    use kbs_format::{Header, Record};

    use super::encode::EncodeSettings;
    use super::envelope::Envelope;

    /// Record `i` of a sample partition. Keys: null when `i % 7 == 0`, the byte 0xff (not
    /// UTF-8) at 5, empty at 6, else `k<i>`. Values: null when `i % 4 == 0`, the JSON text
    /// `{"n": <i>}` at 1, else `i % 300` bytes `v`. Every third record has the headers
    /// `h: null, h: x`. Timestamps `i - 5` (the first ones before 1970).
    pub(crate) fn sample_record(i: i64) -> Record {
        let key = match i % 7 {
            0 => None,
            5 => Some(Bytes::from_static(&[0xff])),
            6 => Some(Bytes::new()),
            _ => Some(Bytes::from(format!("k{i}"))),
        };
        let value = match i % 4 {
            0 => None,
            1 => Some(Bytes::from(format!("{{\"n\": {i}}}"))),
            _ => Some(Bytes::from(vec![b'v'; (i % 300) as usize])),
        };
        let headers = if i % 3 == 0 {
            vec![Header::new("h", None), Header::new("h", Some(Bytes::from_static(b"x")))]
        } else {
            Vec::new()
        };
        Record {
            offset: i,
            timestamp: i - 5,
            key,
            value,
            headers,
        }
    }

    /// One object named `name` of records `0..count` of topic `t`, partition 2.
    pub(crate) fn sample_object(settings: &EncodeSettings, name: &str, count: i64) -> Vec<u8> {
        let mut encoder = super::objects::new_encoder(settings, name).unwrap();
        for i in 0..count {
            let record = sample_record(i);
            let envelope = Envelope {
                record: &record,
                topic: "t",
                partition: 2,
                timestamp_type: "CreateTime",
            };
            encoder.add(&envelope).unwrap();
        }
        encoder.finish(name).unwrap()
    }
}
