//! `kbs export`: a backup's records as envelope objects for query engines and other tools.
//!
//! Each record becomes one JSON object on its own line (JSON Lines), in the envelope that
//! `docs/EXPORT.md` documents:
//!
//! ```text
//! {"key": …, "value": …, "headers": [{"key": "…", "value": …}, …],
//!  "metadata": {"topic": "…", "partition": 0, "offset": 42, "timestamp": 1700000000000,
//!               "timestamp_type": "CreateTime"}}
//! ```
//!
//! Objects are laid out as `<to>/<topic>/<partition>/<first offset, 20 digits>.jsonl` and cut
//! after `flush_records` records or `flush_bytes` bytes. Their names and contents depend only
//! on the backup and the options, so a rerun of an interrupted export writes only the objects
//! that are missing. The options are recorded in `<to>/_kbs_export.json`; a rerun with
//! different ones is refused rather than mixing two layouts.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kbs_format::{Identities, Record};
use kbs_manifest::{BackupId, Manifest, TopicEntry, layout};
use kbs_storage::ObjectStorage;
use serde::Serialize;
use serde_json::{Value, json};

use crate::CliError;
use crate::backup::TopicFilter;

/// How a key or value is written into the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BytesAs {
    /// Standard base64 (every byte string is representable).
    Bytes,
    /// A JSON string when the bytes are valid UTF-8; otherwise `{"base64": "…"}`.
    String,
    /// The parsed JSON value when the bytes are valid JSON; otherwise as [`BytesAs::String`].
    Json,
}

impl std::str::FromStr for BytesAs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "bytes" => Ok(BytesAs::Bytes),
            "string" => Ok(BytesAs::String),
            "json" => Ok(BytesAs::Json),
            other => Err(format!("{other:?} is not bytes, string or json")),
        }
    }
}

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
    /// How keys are written.
    pub key_as: BytesAs,
    /// How values are written.
    pub value_as: BytesAs,
    /// Cut an object after this many records.
    pub flush_records: u64,
    /// Cut an object once it holds this many bytes.
    pub flush_bytes: u64,
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
}

/// The options that decide the objects' names and contents, recorded in `_kbs_export.json`.
fn layout_record(options: &ExportOptions) -> Value {
    json!({
        "backup_id": options.backup_id.as_str(),
        "format": "jsonl",
        "start_time": options.start_time,
        "end_time": options.end_time,
        "key_as": options.key_as,
        "value_as": options.value_as,
        "flush_records": options.flush_records,
        "flush_bytes": options.flush_bytes,
    })
}

/// The file holding [`layout_record`] under the export's root.
pub const EXPORT_RECORD_KEY: &str = "_kbs_export.json";

/// Exports `options.backup_id` from `source` into `target`.
pub async fn run(
    source: Arc<dyn ObjectStorage>,
    target: Arc<dyn ObjectStorage>,
    options: ExportOptions,
) -> Result<ExportReport, CliError> {
    crate::prune::refuse_if_deleted(&source, &options.backup_id).await?;
    let manifest_key = layout::manifest_key(&options.backup_id);
    let manifest = match source.get(&manifest_key).await {
        Ok(got) => Manifest::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
            key: manifest_key.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.is_not_found() => {
            return Err(CliError::BackupNotFound {
                backup_id: options.backup_id.to_string(),
                storage: source.describe().to_string(),
                key: manifest_key,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let identities = crate::encryption::identities_for(&manifest, options.identities.as_ref())?.cloned();
    check_layout_record(&target, &options).await?;
    let mut report = ExportReport {
        backup_id: options.backup_id.to_string(),
        ..ExportReport::default()
    };
    for topic in &manifest.topics {
        if !options.topics.selects(topic.name.as_str(), false) {
            continue;
        }
        for partition in &topic.partitions {
            let mut writer = ObjectWriter::new(&target, topic, partition.partition, &options);
            for file in &partition.segment_files {
                let outside = options.start_time.is_some_and(|start| file.max_timestamp < start)
                    || options.end_time.is_some_and(|end| file.min_timestamp > end);
                if outside {
                    continue;
                }
                let key = layout::segment_key(&options.backup_id, &topic.name, partition.partition, file.name)?;
                for record in read_segment(&source, &key, identities.clone()).await? {
                    let inside = options.start_time.is_none_or(|start| record.timestamp >= start)
                        && options.end_time.is_none_or(|end| record.timestamp <= end);
                    if inside {
                        writer.add(&record, &mut report).await?;
                    }
                }
            }
            writer.flush(&mut report).await?;
        }
    }
    Ok(report)
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

/// Every record of one segment, verified (and decrypted) before any is returned.
async fn read_segment(
    storage: &Arc<dyn ObjectStorage>,
    key: &str,
    identities: Option<Identities>,
) -> Result<Vec<Record>, CliError> {
    let bytes = storage.get(key).await?.bytes;
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        crate::encryption::open_segment(bytes, identities.as_ref())
            .and_then(|reader| reader.to_records())
            .map_err(|source| CliError::Segment { key, source })
    })
    .await
    .map_err(|e| CliError::Locked(format!("reading task failed: {e}")))?
}

/// Collects one partition's envelope lines and writes them in objects of bounded size.
struct ObjectWriter<'a> {
    target: &'a Arc<dyn ObjectStorage>,
    topic: &'a str,
    partition: i32,
    timestamp_type: &'static str,
    options: &'a ExportOptions,
    buffer: Vec<u8>,
    records: u64,
    first_offset: i64,
}

impl<'a> ObjectWriter<'a> {
    fn new(
        target: &'a Arc<dyn ObjectStorage>,
        topic: &'a TopicEntry,
        partition: i32,
        options: &'a ExportOptions,
    ) -> Self {
        let log_append = topic
            .configs
            .as_ref()
            .and_then(|configs| configs.get("message.timestamp.type"))
            .is_some_and(|t| t == "LogAppendTime");
        ObjectWriter {
            target,
            topic: topic.name.as_str(),
            partition,
            timestamp_type: if log_append { "LogAppendTime" } else { "CreateTime" },
            options,
            buffer: Vec::new(),
            records: 0,
            first_offset: 0,
        }
    }

    async fn add(&mut self, record: &Record, report: &mut ExportReport) -> Result<(), CliError> {
        if self.records == 0 {
            self.first_offset = record.offset;
        }
        let line = envelope(record, self.topic, self.partition, self.timestamp_type, self.options);
        serde_json::to_writer(&mut self.buffer, &line).expect("json to memory");
        self.buffer.push(b'\n');
        self.records += 1;
        if self.records >= self.options.flush_records || self.buffer.len() as u64 >= self.options.flush_bytes {
            self.flush(report).await?;
        }
        Ok(())
    }

    /// Writes the collected lines as one object, unless an earlier run already wrote it.
    async fn flush(&mut self, report: &mut ExportReport) -> Result<(), CliError> {
        if self.records == 0 {
            return Ok(());
        }
        let key = format!("{}/{}/{:020}.jsonl", self.topic, self.partition, self.first_offset);
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        report.records += self.records;
        report.bytes += body.len() as u64;
        self.records = 0;
        match self.target.head(&key).await {
            Ok(meta) if meta.size == body.len() as u64 => {
                report.objects_present += 1;
                return Ok(());
            }
            Ok(_) => {
                // A different size can only be a partial object of another tool: replace it.
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        self.target.put(&key, body).await?;
        report.objects_written += 1;
        Ok(())
    }
}

/// One record's envelope.
fn envelope(record: &Record, topic: &str, partition: i32, timestamp_type: &str, options: &ExportOptions) -> Value {
    json!({
        "key": bytes_value(record.key.as_deref(), options.key_as),
        "value": bytes_value(record.value.as_deref(), options.value_as),
        "headers": record
            .headers
            .iter()
            .map(|h| json!({
                "key": bytes_value(Some(&h.key), BytesAs::String),
                "value": bytes_value(h.value.as_deref(), BytesAs::String),
            }))
            .collect::<Vec<_>>(),
        "metadata": {
            "topic": topic,
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "timestamp_type": timestamp_type,
        },
    })
}

/// A key, value or header as the envelope holds it: `null` for null; otherwise as `how`
/// asks, falling back per record (documented in docs/EXPORT.md).
pub fn bytes_value(bytes: Option<&[u8]>, how: BytesAs) -> Value {
    let Some(bytes) = bytes else {
        return Value::Null;
    };
    let base64 = || json!({ "base64": B64.encode(bytes) });
    match how {
        BytesAs::Bytes => Value::String(B64.encode(bytes)),
        BytesAs::String => std::str::from_utf8(bytes).map_or_else(|_| base64(), |s| Value::String(s.to_owned())),
        BytesAs::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => json!({ "json": value }),
            Err(_) => bytes_value(Some(bytes), BytesAs::String),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_has_one_unambiguous_form() {
        assert_eq!(bytes_value(None, BytesAs::String), Value::Null);
        assert_eq!(bytes_value(Some(b""), BytesAs::Bytes), json!(""));
        assert_eq!(bytes_value(Some(b"k"), BytesAs::Bytes), json!("aw=="));
        assert_eq!(bytes_value(Some(b"k"), BytesAs::String), json!("k"));
        assert_eq!(bytes_value(Some(&[0xff]), BytesAs::String), json!({"base64": "/w=="}));
        assert_eq!(
            bytes_value(Some(br#"{"a":1}"#), BytesAs::Json),
            json!({"json": {"a": 1}})
        );
        assert_eq!(bytes_value(Some(b"{not json"), BytesAs::Json), json!("{not json"));
        assert_eq!(bytes_value(Some(&[0xff]), BytesAs::Json), json!({"base64": "/w=="}));
    }
}
