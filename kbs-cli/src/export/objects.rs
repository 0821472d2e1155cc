//! One partition's export objects: which object each record goes to, when an object is cut,
//! and writing it unless an earlier run already did.
//!
//! Without `--partition-by` a partition has one open object at a time. With it, one per
//! folder; when more than [`MAX_OPEN_OBJECTS`] are open, or they hold more than
//! [`OPEN_BYTES_LIMIT`] (or `flush_bytes`, if larger), the largest is cut early. Every such
//! decision depends only on the records and the options, so a rerun cuts the same objects.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use kbs_format::Record;
use kbs_storage::ObjectStorage;
use tokio::task::JoinHandle;

use super::ExportOptions;
use super::encode::{EncodeSettings, Format, ObjectEncoder, TextEncoder};
use super::envelope::Envelope;
use crate::CliError;

/// Open objects of one partition above which the largest is cut early.
pub(super) const MAX_OPEN_OBJECTS: usize = 256;
/// Record bytes held by one partition's open objects above which the largest is cut early.
pub(super) const OPEN_BYTES_LIMIT: u64 = 128 << 20;
/// Objects of one partition being encoded and written at the same time.
const MAX_IN_FLIGHT: usize = 1;

/// What writing one object did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    /// An earlier run had written it already.
    pub was_present: bool,
    /// Records in it.
    pub records: u64,
    /// Its size.
    pub bytes: u64,
    /// Bytes of its records' keys, values and headers.
    pub record_bytes: u64,
}

struct OpenObject {
    key: String,
    encoder: Box<dyn ObjectEncoder>,
    records: u64,
    record_bytes: u64,
}

/// One partition's open objects and the writes under way.
pub(super) struct PartitionObjects<'a> {
    target: &'a Arc<dyn ObjectStorage>,
    options: &'a ExportOptions,
    topic: &'a str,
    partition: i32,
    timestamp_type: &'static str,
    open: BTreeMap<String, OpenObject>,
    open_bytes: u64,
    in_flight: VecDeque<JoinHandle<Result<Written, CliError>>>,
}

/// A new encoder for the object named `name`.
pub(super) fn new_encoder(settings: &EncodeSettings, name: &str) -> Result<Box<dyn ObjectEncoder>, CliError> {
    Ok(match settings.format {
        Format::Jsonl => Box::new(TextEncoder::new(*settings, false)),
        Format::Csv => Box::new(TextEncoder::new(*settings, true)),
        Format::Parquet => Box::new(super::parquet::ParquetEncoder::new(settings, name)?),
        Format::Avro => Box::new(super::avro::AvroEncoder::new(settings, name)),
    })
}

/// The bytes a record counts for against `--flush-bytes`: key, value and headers.
fn record_size(record: &Record) -> u64 {
    let len = |b: Option<&Bytes>| b.map_or(0, |b| b.len() as u64);
    len(record.key.as_ref())
        + len(record.value.as_ref())
        + record
            .headers
            .iter()
            .map(|h| h.key.len() as u64 + len(h.value.as_ref()))
            .sum::<u64>()
}

impl<'a> PartitionObjects<'a> {
    pub(super) fn new(
        target: &'a Arc<dyn ObjectStorage>,
        options: &'a ExportOptions,
        topic: &'a str,
        partition: i32,
        timestamp_type: &'static str,
    ) -> Self {
        PartitionObjects {
            target,
            options,
            topic,
            partition,
            timestamp_type,
            open: BTreeMap::new(),
            open_bytes: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Adds a record; returns the writes that finished meanwhile.
    pub(super) async fn add(&mut self, record: &Record) -> Result<Vec<Written>, CliError> {
        let envelope = Envelope {
            record,
            topic: self.topic,
            partition: self.partition,
            timestamp_type: self.timestamp_type,
        };
        let folder = if self.options.partition_by.is_empty() {
            String::new()
        } else {
            self.options.partition_by.folder(&envelope)
        };
        let object = match self.open.entry(folder.clone()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let key = object_key(self.options, self.topic, self.partition, &folder, record.offset);
                entry.insert(OpenObject {
                    encoder: new_encoder(&self.options.encode, &key)?,
                    key,
                    records: 0,
                    record_bytes: 0,
                })
            }
        };
        object.encoder.add(&envelope)?;
        let size = record_size(record);
        object.records += 1;
        object.record_bytes += size;
        self.open_bytes += size;
        let full = object.records >= self.options.flush_records || object.record_bytes >= self.options.flush_bytes;
        let mut done = Vec::new();
        if full {
            self.cut(&folder, &mut done).await?;
        }
        let limit = OPEN_BYTES_LIMIT.max(self.options.flush_bytes);
        while self.open.len() > MAX_OPEN_OBJECTS || self.open_bytes > limit {
            let largest = self
                .open
                .iter()
                .max_by(|a, b| a.1.record_bytes.cmp(&b.1.record_bytes).then_with(|| b.0.cmp(a.0)))
                .map(|(folder, _)| folder.clone())
                .expect("objects are open");
            self.cut(&largest, &mut done).await?;
        }
        Ok(done)
    }

    /// Cuts every open object and waits for every write.
    pub(super) async fn finish(mut self) -> Result<Vec<Written>, CliError> {
        let mut done = Vec::new();
        let folders: Vec<String> = self.open.keys().cloned().collect();
        for folder in folders {
            self.cut(&folder, &mut done).await?;
        }
        while let Some(write) = self.in_flight.pop_front() {
            done.push(joined(write).await?);
        }
        Ok(done)
    }

    /// Starts writing the object of `folder`, after waiting for the oldest write when too many
    /// are under way.
    async fn cut(&mut self, folder: &str, done: &mut Vec<Written>) -> Result<(), CliError> {
        let Some(object) = self.open.remove(folder) else {
            return Ok(());
        };
        self.open_bytes -= object.record_bytes;
        let key = object.key;
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("not empty");
            done.push(joined(oldest).await?);
        }
        let target = self.target.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            let (records, record_bytes) = (object.records, object.record_bytes);
            let name = key.clone();
            let body = tokio::task::spawn_blocking(move || object.encoder.finish(&name))
                .await
                .map_err(|e| CliError::Export {
                    object: key.clone(),
                    message: format!("encoding task failed: {e}"),
                })??;
            let bytes = body.len() as u64;
            let was_present = write_unless_present(&target, &key, Bytes::from(body)).await?;
            Ok(Written {
                was_present,
                records,
                bytes,
                record_bytes,
            })
        }));
        Ok(())
    }
}

/// The name of the object whose first record is at `first_offset`: `<topic>/<partition>/<first
/// offset>.<ext>`, or `<folder>/<topic>+<partition>+<first offset>.<ext>` with `--partition-by`.
fn object_key(options: &ExportOptions, topic: &str, partition: i32, folder: &str, first_offset: i64) -> String {
    let extension = options.encode.format.extension(options.encode.compression);
    if folder.is_empty() {
        format!("{topic}/{partition}/{first_offset:020}.{extension}")
    } else {
        format!("{folder}/{topic}+{partition}+{first_offset:020}.{extension}")
    }
}

async fn joined(write: JoinHandle<Result<Written, CliError>>) -> Result<Written, CliError> {
    write.await.map_err(|e| CliError::Export {
        object: "an export object".into(),
        message: format!("writing task failed: {e}"),
    })?
}

/// Writes `body` under `key` unless an object of its size is there already (written by an
/// earlier run of the same export); returns whether it was.
async fn write_unless_present(target: &Arc<dyn ObjectStorage>, key: &str, body: Bytes) -> Result<bool, CliError> {
    match target.head(key).await {
        Ok(meta) if meta.size == body.len() as u64 => return Ok(true),
        // A different size can only be a partial object of another tool: replace it.
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    target.put(key, body).await?;
    Ok(false)
}
