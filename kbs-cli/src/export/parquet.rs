//! Parquet objects: the envelope as typed columns, written as the records come in batches of
//! [`BATCH_ROWS`] (row groups of up to a million rows), so an open object holds its encoded
//! pages and one batch.
//!
//! ```text
//! key          binary, or (with --key-as string|json) utf8 `key` + binary `key_bytes`
//! value        the same, for values
//! headers      list<struct<key: binary, value: binary>>   (order and duplicates kept)
//! metadata     struct<topic: utf8, partition: int32, offset: int64,
//!                     timestamp: timestamp[ms, UTC], timestamp_type: utf8>
//! ```
//!
//! Columns of fields left out with `--fields` are not written. Null and empty stay apart: a
//! null key is a null cell, an empty one an empty binary or string. Written with the arrow-rs
//! `parquet` crate; `created_by` names kbs, so the same records give the same bytes.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields as ArrowFields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::encode::{Compression, EncodeSettings, ObjectEncoder};
use super::envelope::{BytesAs, Envelope, TypedBytes, typed_bytes};
use crate::CliError;

/// Rows collected before they are handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;

/// A key or value column, or the pair of columns that text with a byte fallback needs.
struct BytesColumn {
    how: BytesAs,
    bytes: BinaryBuilder,
    text: StringBuilder,
}

impl BytesColumn {
    fn new(how: BytesAs) -> BytesColumn {
        BytesColumn {
            how,
            bytes: BinaryBuilder::new(),
            text: StringBuilder::new(),
        }
    }

    fn add(&mut self, value: Option<&[u8]>) {
        if self.how == BytesAs::Bytes {
            // One binary column: the text column is not written.
            self.bytes.append_option(value);
            return;
        }
        match typed_bytes(value, self.how) {
            TypedBytes::Null => {
                self.bytes.append_null();
                self.text.append_null();
            }
            TypedBytes::Text(text) => {
                self.bytes.append_null();
                self.text.append_value(text);
            }
            TypedBytes::Bytes(bytes) => {
                self.bytes.append_value(bytes);
                self.text.append_null();
            }
        }
    }

    /// The column(s) collected since the last call (the order of [`bytes_fields`]).
    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        if self.how == BytesAs::Bytes {
            out.push(Arc::new(self.bytes.finish()));
        } else {
            out.push(Arc::new(self.text.finish()));
            out.push(Arc::new(self.bytes.finish()));
        }
    }
}

/// The field(s) of a key or value column named `name`.
fn bytes_fields(name: &str, how: BytesAs, out: &mut Vec<Field>) {
    if how == BytesAs::Bytes {
        out.push(Field::new(name, DataType::Binary, true));
    } else {
        out.push(Field::new(name, DataType::Utf8, true));
        out.push(Field::new(format!("{name}_bytes"), DataType::Binary, true));
    }
}

/// The item of the headers list.
fn header_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(header_fields()), false))
}

/// The Parquet schema of the envelope for `settings` (see the module docs).
pub fn schema(settings: &EncodeSettings) -> Schema {
    let mut fields = Vec::new();
    if settings.fields.key {
        bytes_fields("key", settings.key_as, &mut fields);
    }
    if settings.fields.value {
        bytes_fields("value", settings.value_as, &mut fields);
    }
    if settings.fields.headers {
        fields.push(Field::new("headers", DataType::List(header_item()), false));
    }
    if settings.fields.metadata {
        fields.push(Field::new("metadata", DataType::Struct(metadata_fields()), false));
    }
    Schema::new(fields)
}

/// The struct of one header.
fn header_fields() -> ArrowFields {
    ArrowFields::from(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The struct of the metadata.
fn metadata_fields() -> ArrowFields {
    ArrowFields::from(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestamp_type", DataType::Utf8, false),
    ])
}

/// Collects rows column by column and hands them to the writer every [`BATCH_ROWS`].
pub(super) struct ParquetEncoder {
    settings: EncodeSettings,
    schema: Arc<Schema>,
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
    key: BytesColumn,
    value: BytesColumn,
    header_offsets: Vec<i32>,
    header_keys: BinaryBuilder,
    header_values: BinaryBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: StringBuilder,
}

impl ParquetEncoder {
    pub(super) fn new(settings: &EncodeSettings, name: &str) -> Result<ParquetEncoder, CliError> {
        let compression = match settings.compression {
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
            Compression::Lz4 => ParquetCompression::LZ4_RAW,
            _ => ParquetCompression::UNCOMPRESSED,
        };
        let mut properties = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("kbs {}", env!("CARGO_PKG_VERSION")));
        // Values are rarely repeated and never ranged over: no dictionary and no min/max
        // statistics for them (both cost time on every row). Keys and metadata keep both, for
        // filters on key, topic, offset and timestamp.
        for column in ["value", "value_bytes"] {
            properties = properties
                .set_column_dictionary_enabled(ColumnPath::from(column), false)
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
        }
        let properties = properties.build();
        let schema = Arc::new(schema(settings));
        let writer =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties)).map_err(|e| encoding_error(name, e))?;
        Ok(ParquetEncoder {
            settings: *settings,
            schema,
            writer,
            rows: 0,
            key: BytesColumn::new(settings.key_as),
            value: BytesColumn::new(settings.value_as),
            header_offsets: vec![0],
            header_keys: BinaryBuilder::new(),
            header_values: BinaryBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            timestamp_type: StringBuilder::new(),
        })
    }

    /// Hands the collected rows to the writer as one batch.
    fn write_batch(&mut self, name: &str) -> Result<(), CliError> {
        if self.rows == 0 {
            return Ok(());
        }
        let fields = self.settings.fields;
        let mut columns: Vec<ArrayRef> = Vec::new();
        if fields.key {
            self.key.finish(&mut columns);
        }
        if fields.value {
            self.value.finish(&mut columns);
        }
        if fields.headers {
            let structs = StructArray::try_new(
                header_fields(),
                vec![
                    Arc::new(self.header_keys.finish()) as ArrayRef,
                    Arc::new(self.header_values.finish()),
                ],
                None,
            )
            .map_err(|e| encoding_error(name, e))?;
            let offsets = std::mem::replace(&mut self.header_offsets, vec![0]);
            let list = ListArray::try_new(
                header_item(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Arc::new(structs),
                None,
            )
            .map_err(|e| encoding_error(name, e))?;
            columns.push(Arc::new(list));
        }
        if fields.metadata {
            let metadata = StructArray::try_new(
                metadata_fields(),
                vec![
                    Arc::new(self.topic.finish()) as ArrayRef,
                    Arc::new(self.partition.finish()),
                    Arc::new(self.offset.finish()),
                    Arc::new(self.timestamp.finish()),
                    Arc::new(self.timestamp_type.finish()),
                ],
                None,
            )
            .map_err(|e| encoding_error(name, e))?;
            columns.push(Arc::new(metadata));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| encoding_error(name, e))?;
        self.writer.write(&batch).map_err(|e| encoding_error(name, e))?;
        self.rows = 0;
        Ok(())
    }
}

fn encoding_error(name: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Export {
        object: name.to_owned(),
        message: format!("Parquet encoding failed: {e}"),
    }
}

impl ObjectEncoder for ParquetEncoder {
    fn add(&mut self, envelope: &Envelope<'_>) -> Result<(), CliError> {
        let record = envelope.record;
        let fields = self.settings.fields;
        if fields.key {
            self.key.add(record.key.as_deref());
        }
        if fields.value {
            self.value.add(record.value.as_deref());
        }
        if fields.headers {
            for header in &record.headers {
                self.header_keys.append_value(&header.key);
                self.header_values.append_option(header.value.as_deref());
            }
            let last = *self.header_offsets.last().expect("starts with 0");
            let end = i32::try_from(record.headers.len())
                .ok()
                .and_then(|n| last.checked_add(n))
                .ok_or_else(|| CliError::Export {
                    object: format!("{}/{}", envelope.topic, envelope.partition),
                    message: "more than 2^31 headers in one batch of records".into(),
                })?;
            self.header_offsets.push(end);
        }
        if fields.metadata {
            self.topic.append_value(envelope.topic);
            self.partition.append_value(envelope.partition);
            self.offset.append_value(record.offset);
            self.timestamp.append_value(record.timestamp);
            self.timestamp_type.append_value(envelope.timestamp_type);
        }
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.write_batch(&format!("{}/{}", envelope.topic, envelope.partition))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<Vec<u8>, CliError> {
        self.write_batch(name)?;
        self.writer.into_inner().map_err(|e| encoding_error(name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::{sample_object, sample_record};
    use crate::export::{Fields, Format};
    use bytes::Bytes;

    fn settings(key_as: BytesAs, fields: Fields) -> EncodeSettings {
        EncodeSettings {
            format: Format::Parquet,
            compression: Compression::Zstd,
            fields,
            key_as,
            value_as: BytesAs::Json,
        }
    }

    #[test]
    fn files_read_back_record_for_record_and_are_the_same_every_time() {
        // More rows than one batch, so several batches make up the file.
        let count = 2 * BATCH_ROWS as i64 + 17;
        for key_as in [BytesAs::Bytes, BytesAs::String] {
            let bytes = sample_object(&settings(key_as, Fields::ALL), "t/2/x.parquet", count);
            assert_eq!(
                bytes,
                sample_object(&settings(key_as, Fields::ALL), "t/2/x.parquet", count),
                "deterministic"
            );
            let records = crate::import::read_parquet("x.parquet", Bytes::from(bytes)).unwrap();
            assert_eq!(records.len() as i64, count);
            for (i, r) in records.iter().enumerate() {
                assert_eq!((r.topic.as_str(), r.partition), ("t", 2));
                assert_eq!(r.record, sample_record(i as i64));
            }
        }
    }

    #[test]
    fn fields_left_out_have_no_columns() {
        let fields = Fields::parse(&["value".into(), "metadata".into()]).unwrap();
        let names: Vec<String> = schema(&settings(BytesAs::Bytes, fields))
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["value", "value_bytes", "metadata"]);
        let bytes = sample_object(&settings(BytesAs::Bytes, fields), "x", 100);
        let records = crate::import::read_parquet("x.parquet", Bytes::from(bytes)).unwrap();
        assert!(
            records
                .iter()
                .all(|r| r.record.key.is_none() && r.record.headers.is_empty())
        );
        assert_eq!(records[1].record.value, sample_record(1).value);
    }
}
