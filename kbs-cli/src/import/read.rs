//! Reading envelope objects: JSON Lines (plain or gzip, kbs's own and the S3 connectors' JSON
//! envelope), Parquet and Avro, back into records with their topic and partition.
//!
//! Decoding rules (docs/EXPORT.md, "Import"): in the text formats a key or value is `null`, a
//! string (base64 of the bytes when the export wrote bytes, otherwise the text), `{"base64": …}`,
//! `{"json": …}` (the JSON text exactly as written) or any other JSON value (its text exactly
//! as written, as the connectors store JSON values). Headers are a list of `{"key", "value"}` or
//! an object of name → value. In Parquet and Avro, `key` is bytes or text and `key_bytes`, when
//! present, holds the bytes of records whose key is not text.

use std::io::Read as _;

use arrow_array::{
    Array, BinaryArray, LargeBinaryArray, LargeStringArray, ListArray, RecordBatch, StringArray, StructArray,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kbs_format::{Header, Record};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::CliError;
use crate::export::BytesAs;

/// One record read from an envelope object, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeRecord {
    /// The source topic.
    pub topic: String,
    /// The source partition.
    pub partition: i32,
    /// The record (its offset in the source partition).
    pub record: Record,
}

/// How the text formats' keys and values are read.
#[derive(Debug, Clone, Copy)]
pub struct TextDecoding {
    /// Keys.
    pub key_as: BytesAs,
    /// Values.
    pub value_as: BytesAs,
}

/// Largest decompressed JSON Lines object read (a gzip bomb stops here).
const MAX_TEXT_OBJECT: u64 = 2 << 30;

fn bad(object: &str, message: impl Into<String>) -> CliError {
    CliError::Import {
        object: object.to_owned(),
        message: message.into(),
    }
}

/// Every record of a JSON Lines object (`.gz`: gzip-compressed).
pub fn read_jsonl(object: &str, bytes: &[u8], decoding: TextDecoding) -> Result<Vec<EnvelopeRecord>, CliError> {
    let text;
    let bytes = if object.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_TEXT_OBJECT)
            .read_to_end(&mut out)
            .map_err(|e| bad(object, format!("not gzip: {e}")))?;
        text = out;
        &text[..]
    } else {
        bytes
    };
    let mut records = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records.push(read_line(line, decoding).map_err(|message| bad(object, format!("line {}: {message}", i + 1)))?);
    }
    Ok(records)
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<&'a RawValue>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: i64,
}

fn read_line(line: &[u8], decoding: TextDecoding) -> Result<EnvelopeRecord, String> {
    let line: Line<'_> = serde_json::from_slice(line).map_err(|e| format!("not an envelope: {e}"))?;
    let metadata = line
        .metadata
        .ok_or("no metadata (topic, partition, offset, timestamp): export with --fields including metadata")?;
    let headers = match line.headers {
        None => Vec::new(),
        Some(raw) => read_headers(raw)?,
    };
    Ok(EnvelopeRecord {
        topic: metadata.topic,
        partition: metadata.partition,
        record: Record {
            offset: metadata.offset,
            timestamp: metadata.timestamp,
            key: text_bytes(line.key, decoding.key_as).map_err(|e| format!("key: {e}"))?,
            value: text_bytes(line.value, decoding.value_as).map_err(|e| format!("value: {e}"))?,
            headers,
        },
    })
}

#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(borrow)]
    base64: Option<&'a RawValue>,
    #[serde(borrow)]
    json: Option<&'a RawValue>,
}

/// A key, value or header value of the text formats as bytes (the rules in the module docs).
fn text_bytes(raw: Option<&RawValue>, how: BytesAs) -> Result<Option<Bytes>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return match how {
            BytesAs::Bytes => B64
                .decode(s.as_bytes())
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| format!("not base64: {e}")),
            BytesAs::String | BytesAs::Json => Ok(Some(Bytes::from(s.into_bytes()))),
        };
    }
    if text.starts_with('{') {
        let is_wrapper = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .map(|m| m.len() == 1 && (m.contains_key("base64") || m.contains_key("json")))
            .unwrap_or(false);
        if is_wrapper {
            let wrapped: Wrapped<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if let Some(b64) = wrapped.base64 {
                let s: String = serde_json::from_str(b64.get()).map_err(|_| "base64 is not a string".to_owned())?;
                return B64
                    .decode(s.as_bytes())
                    .map(|b| Some(Bytes::from(b)))
                    .map_err(|e| format!("not base64: {e}"));
            }
            if let Some(json) = wrapped.json {
                return Ok(Some(Bytes::copy_from_slice(json.get().as_bytes())));
            }
        }
    }
    Ok(Some(Bytes::copy_from_slice(text.as_bytes())))
}

fn read_headers(raw: &RawValue) -> Result<Vec<Header>, String> {
    let text = raw.get();
    if text == "null" {
        return Ok(Vec::new());
    }
    if text.starts_with('{') {
        let map: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(text).map_err(|e| format!("headers: {e}"))?;
        return map
            .into_iter()
            .map(|(key, value)| {
                Ok(Header::new(
                    Bytes::from(key.into_bytes()),
                    text_bytes(Some(value), BytesAs::String)?,
                ))
            })
            .collect();
    }
    #[derive(Deserialize)]
    struct Pair<'a> {
        #[serde(borrow)]
        key: &'a RawValue,
        #[serde(borrow, default)]
        value: Option<&'a RawValue>,
    }
    let pairs: Vec<Pair<'_>> = serde_json::from_str(text).map_err(|e| format!("headers: {e}"))?;
    pairs
        .into_iter()
        .map(|pair| {
            let key = text_bytes(Some(pair.key), BytesAs::String)?.ok_or("a header key is null")?;
            Ok(Header::new(key, text_bytes(pair.value, BytesAs::String)?))
        })
        .collect()
}

/// Runs a third-party decoder on one object, turning a panic into this object's error.
///
/// The arrow-rs Parquet decoder and `apache-avro` still panic on some damaged input rather
/// than returning an error (apache/arrow-rs#7806 and its follow-ups fix them one by one; an
/// Avro header with a damaged schema name reaches an `unwrap`). A damaged object must be an
/// error that names it, never the end of the process.
fn guarded<T>(object: &str, format: &str, decode: impl FnOnce() -> Result<T, CliError>) -> Result<T, CliError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(bad(object, format!("damaged {format}: the decoder stopped ({why})")))
    })
}

/// Every record of a Parquet object written by `kbs export --format parquet`.
pub fn read_parquet(object: &str, bytes: Bytes) -> Result<Vec<EnvelopeRecord>, CliError> {
    guarded(object, "Parquet", || decode_parquet(object, bytes))
}

fn decode_parquet(object: &str, bytes: Bytes) -> Result<Vec<EnvelopeRecord>, CliError> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|e| bad(object, format!("not Parquet: {e}")))?;
    let mut records = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(object, format!("Parquet: {e}")))?;
        read_batch(&batch, &mut records).map_err(|message| bad(object, message))?;
    }
    Ok(records)
}

/// Bytes of a binary or string column's row (`None` for null).
fn cell(array: &dyn Array, row: usize) -> Result<Option<&[u8]>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<BinaryArray>() {
        Ok(Some(a.value(row)))
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        Ok(Some(a.value(row).as_bytes()))
    } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
        Ok(Some(a.value(row)))
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        Ok(Some(a.value(row).as_bytes()))
    } else {
        Err(format!("a {} column where bytes or text belong", array.data_type()))
    }
}

/// The key or value of a row: the `name` column, else the `<name>_bytes` column.
fn typed_cell(batch: &RecordBatch, name: &str, row: usize) -> Result<Option<Bytes>, String> {
    let text = match batch.column_by_name(name) {
        Some(column) => cell(column.as_ref(), row)?,
        None => None,
    };
    let raw = match batch.column_by_name(&format!("{name}_bytes")) {
        Some(column) => cell(column.as_ref(), row)?,
        None => None,
    };
    Ok(text.or(raw).map(Bytes::copy_from_slice))
}

fn int_field<T: arrow_array::ArrowPrimitiveType>(
    metadata: &StructArray,
    name: &str,
) -> Result<arrow_array::PrimitiveArray<T>, String> {
    let column = metadata
        .column_by_name(name)
        .ok_or_else(|| format!("metadata has no {name}"))?;
    let cast =
        arrow_cast_int::<T>(column.as_ref()).ok_or_else(|| format!("metadata.{name} is a {}", column.data_type()))?;
    Ok(cast)
}

/// A column as `T`'s primitive array, accepting any integer or timestamp type of the same width.
fn arrow_cast_int<T: arrow_array::ArrowPrimitiveType>(array: &dyn Array) -> Option<arrow_array::PrimitiveArray<T>> {
    let data = array.to_data();
    if data.data_type().primitive_width() != Some(std::mem::size_of::<T::Native>()) || !data.data_type().is_primitive()
    {
        return None;
    }
    let data = data.into_builder().data_type(T::DATA_TYPE).build().ok()?;
    Some(arrow_array::PrimitiveArray::<T>::from(data))
}

fn read_batch(batch: &RecordBatch, out: &mut Vec<EnvelopeRecord>) -> Result<(), String> {
    use arrow_array::types::{Int32Type, Int64Type};
    let metadata = batch
        .column_by_name("metadata")
        .and_then(|c| c.as_any().downcast_ref::<StructArray>())
        .ok_or("no metadata struct (topic, partition, offset, timestamp): export with --fields including metadata")?;
    let topics = metadata.column_by_name("topic").ok_or("metadata has no topic")?.clone();
    let partitions = int_field::<Int32Type>(metadata, "partition")?;
    let offsets = int_field::<Int64Type>(metadata, "offset")?;
    let timestamps = int_field::<Int64Type>(metadata, "timestamp")?;
    let headers = match batch.column_by_name("headers") {
        Some(column) => Some(
            column
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or("headers is not a list")?,
        ),
        None => None,
    };
    let header_structs = match headers {
        Some(list) => Some(
            list.values()
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or("headers are not structs")?
                .clone(),
        ),
        None => None,
    };
    for row in 0..batch.num_rows() {
        let topic = cell(topics.as_ref(), row)?.ok_or("a null topic")?;
        let mut record_headers = Vec::new();
        if let (Some(list), Some(structs)) = (headers, &header_structs) {
            let keys = structs.column_by_name("key").ok_or("a header has no key")?;
            let values = structs.column_by_name("value").ok_or("a header has no value")?;
            let range = list.value_offsets()[row] as usize..list.value_offsets()[row + 1] as usize;
            for i in range {
                let key = cell(keys.as_ref(), i)?.ok_or("a null header key")?;
                record_headers.push(Header::new(
                    Bytes::copy_from_slice(key),
                    cell(values.as_ref(), i)?.map(Bytes::copy_from_slice),
                ));
            }
        }
        if partitions.is_null(row) || offsets.is_null(row) || timestamps.is_null(row) {
            return Err(format!("row {row}: null partition, offset or timestamp"));
        }
        out.push(EnvelopeRecord {
            topic: String::from_utf8(topic.to_vec()).map_err(|_| "a topic that is not UTF-8")?,
            partition: partitions.value(row),
            record: Record {
                offset: offsets.value(row),
                timestamp: timestamps.value(row),
                key: typed_cell(batch, "key", row)?,
                value: typed_cell(batch, "value", row)?,
                headers: record_headers,
            },
        });
    }
    Ok(())
}

/// Every record of an Avro object container file of the envelope schema.
pub fn read_avro(object: &str, bytes: &[u8]) -> Result<Vec<EnvelopeRecord>, CliError> {
    guarded(object, "Avro", || decode_avro(object, bytes))
}

fn decode_avro(object: &str, bytes: &[u8]) -> Result<Vec<EnvelopeRecord>, CliError> {
    let reader = apache_avro::Reader::new(bytes).map_err(|e| bad(object, format!("not Avro: {e}")))?;
    let mut records = Vec::new();
    for (i, value) in reader.enumerate() {
        let value = value.map_err(|e| bad(object, format!("record {i}: {e}")))?;
        let record = avro_envelope(&value).map_err(|message| bad(object, format!("record {i}: {message}")))?;
        records.push(record);
    }
    Ok(records)
}

/// A union's branch, or the value itself.
fn avro_inner(value: &apache_avro::types::Value) -> &apache_avro::types::Value {
    match value {
        apache_avro::types::Value::Union(_, inner) => inner,
        other => other,
    }
}

/// The field `name` of an Avro record's fields.
fn avro_field<'a>(
    fields: &'a [(String, apache_avro::types::Value)],
    name: &str,
) -> Option<&'a apache_avro::types::Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| avro_inner(v))
}

fn avro_bytes(value: &apache_avro::types::Value) -> Result<Option<Bytes>, String> {
    use apache_avro::types::Value;
    match avro_inner(value) {
        Value::Null => Ok(None),
        Value::Bytes(b) | Value::Fixed(_, b) => Ok(Some(Bytes::copy_from_slice(b))),
        Value::String(s) => Ok(Some(Bytes::copy_from_slice(s.as_bytes()))),
        other => Err(format!("{other:?} where bytes or text belong")),
    }
}

fn avro_long(value: &apache_avro::types::Value) -> Result<i64, String> {
    use apache_avro::types::Value;
    match avro_inner(value) {
        Value::Int(n) => Ok(i64::from(*n)),
        Value::Long(n) | Value::TimestampMillis(n) => Ok(*n),
        Value::TimestampMicros(n) => Ok(n / 1000),
        other => Err(format!("{other:?} where a number belongs")),
    }
}

/// One envelope record of the Avro schema (kbs's, or any with the same field names).
fn avro_envelope(value: &apache_avro::types::Value) -> Result<EnvelopeRecord, String> {
    use apache_avro::types::Value;
    let Value::Record(fields) = value else {
        return Err("not a record".into());
    };
    let key_or_value = |name: &str| -> Result<Option<Bytes>, String> {
        let text = avro_field(fields, name).map(avro_bytes).transpose()?.flatten();
        let raw = avro_field(fields, &format!("{name}_bytes"))
            .map(avro_bytes)
            .transpose()?
            .flatten();
        Ok(text.or(raw))
    };
    let Some(Value::Record(metadata)) = avro_field(fields, "metadata") else {
        return Err("no metadata record: export with --fields including metadata".into());
    };
    let meta = |name: &str| avro_field(metadata, name).ok_or_else(|| format!("metadata has no {name}"));
    let topic = match meta("topic")? {
        Value::String(s) => s.clone(),
        other => return Err(format!("topic {other:?}")),
    };
    let mut headers = Vec::new();
    if let Some(Value::Array(items)) = avro_field(fields, "headers") {
        for item in items {
            let Value::Record(pair) = item else {
                return Err("a header is not a record".into());
            };
            let key = avro_field(pair, "key")
                .map(avro_bytes)
                .transpose()?
                .flatten()
                .ok_or("a null header key")?;
            let value = avro_field(pair, "value").map(avro_bytes).transpose()?.flatten();
            headers.push(Header::new(key, value));
        }
    }
    Ok(EnvelopeRecord {
        topic,
        partition: i32::try_from(avro_long(meta("partition")?)?).map_err(|_| "partition out of range")?,
        record: Record {
            offset: avro_long(meta("offset")?)?,
            timestamp: avro_long(meta("timestamp")?)?,
            key: key_or_value("key")?,
            value: key_or_value("value")?,
            headers,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRINGS: TextDecoding = TextDecoding {
        key_as: BytesAs::String,
        value_as: BytesAs::Json,
    };

    #[test]
    fn text_forms_decode_to_their_exact_bytes() {
        let line = br#"{"key": {"base64": "/w=="}, "value": {"json": {"a":  1}}, "headers": [{"key": "h", "value": null}, {"key": "h", "value": "x"}], "metadata": {"topic": "t", "partition": 2, "offset": 9, "timestamp": 5, "timestamp_type": "CreateTime"}}"#;
        let r = read_line(line, STRINGS).unwrap();
        assert_eq!(
            (r.topic.as_str(), r.partition, r.record.offset, r.record.timestamp),
            ("t", 2, 9, 5)
        );
        assert_eq!(r.record.key.as_deref(), Some(&[0xff][..]));
        assert_eq!(
            r.record.value.as_deref(),
            Some(&br#"{"a":  1}"#[..]),
            "JSON text as written"
        );
        assert_eq!(r.record.headers.len(), 2);
        assert_eq!(r.record.headers[0].value, None);
    }

    #[test]
    fn connector_envelopes_read_too() {
        // The S3 connectors' JSON envelope: values as JSON, headers as an object.
        let line = br#"{"key": "k1", "value": {"id": 1, "name": "x"}, "headers": {"b": "2", "a": "1"}, "metadata": {"offset": 4, "partition": 0, "timestamp": 1700000000000, "topic": "orders"}}"#;
        let r = read_line(line, STRINGS).unwrap();
        assert_eq!(r.record.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.record.value.as_deref(), Some(&br#"{"id": 1, "name": "x"}"#[..]));
        assert_eq!(r.record.headers.len(), 2);
    }

    /// A small valid object of `format`, made by the exporter.
    fn exported(format: crate::export::Format) -> Vec<u8> {
        use crate::export::{Compression, EncodeSettings, Fields};
        let settings = EncodeSettings {
            format,
            compression: Compression::for_format(format, None).unwrap(),
            fields: Fields::ALL,
            key_as: BytesAs::String,
            value_as: BytesAs::Bytes,
        };
        crate::export::testing::sample_object(&settings, "t/2/x", 40)
    }

    #[test]
    fn damaged_objects_are_errors_never_panics() {
        use crate::export::Format;
        for format in [Format::Parquet, Format::Avro, Format::Jsonl] {
            let good = exported(format);
            let read = |bytes: &[u8]| match format {
                Format::Parquet => read_parquet("x", Bytes::copy_from_slice(bytes)).map(|r| r.len()),
                Format::Avro => read_avro("x", bytes).map(|r| r.len()),
                _ => read_jsonl("x", bytes, STRINGS).map(|r| r.len()),
            };
            assert_eq!(read(&good).unwrap(), 40, "{format:?}");
            // Every truncation, and a byte changed at every position (to 0xff and to 0x7f):
            // an error or, where the damage is in data, different records; never a panic.
            for cut in 0..good.len() {
                let _ = read(&good[..cut]);
            }
            for at in 0..good.len() {
                for byte in [0xff, 0x7f] {
                    let mut bad = good.clone();
                    bad[at] = byte;
                    let _ = read(&bad);
                }
            }
        }
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_line() {
        let object = "t/0/00000000000000000000.jsonl";
        let missing = read_jsonl(object, b"{\"key\": null}\n", STRINGS).unwrap_err();
        assert!(missing.to_string().contains("line 1: no metadata"), "{missing}");
        let bytes_mode = TextDecoding {
            key_as: BytesAs::Bytes,
            value_as: BytesAs::Bytes,
        };
        let not_b64 = br#"{"key": "%%%", "metadata": {"topic": "t", "partition": 0, "offset": 0, "timestamp": 0}}"#;
        let e = read_jsonl(object, not_b64, bytes_mode).unwrap_err();
        assert!(e.to_string().contains("key: not base64"), "{e}");
        assert!(read_jsonl("x.jsonl.gz", b"not gzip", STRINGS).is_err());
        assert!(read_parquet("x.parquet", Bytes::from_static(b"PAR1 nonsense PAR1")).is_err());
        assert!(read_avro("x.avro", b"Obj\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
    }
}
