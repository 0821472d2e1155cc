//! Avro objects: one object container file per object, records of the `Envelope` schema.
//!
//! ```text
//! record io.kbs.export.Envelope {
//!   key:       union {null, bytes}        (--key-as string|json: union {null, string} `key`
//!                                           + union {null, bytes} `key_bytes`)
//!   value:     the same, for values
//!   headers:   array<record Header { key: bytes, value: union {null, bytes} }>
//!   metadata:  record Metadata { topic: string, partition: int, offset: long,
//!                                timestamp: long (timestamp-millis), timestamp_type: string }
//! }
//! ```
//!
//! Fields left out with `--fields` are not in the schema. kbs encodes the records itself
//! (the schema is fixed, so a datum is a few length-prefixed fields) and compresses them block
//! by block as they come, so an open object holds its compressed blocks and one open block.
//! The header lists its metadata in a fixed order and the sync marker is derived from the
//! object's name, so the same records give the same bytes. Readers: fastavro (tests), and
//! `apache-avro` in `kbs import`.

use std::io::Write as _;

use serde_json::{Value, json};

use super::encode::{Compression, EncodeSettings, ObjectEncoder};
use super::envelope::{BytesAs, Envelope, TypedBytes, typed_bytes};
use crate::CliError;

/// Uncompressed bytes of records per file block.
const BLOCK_BYTES: usize = 64 << 10;

/// The Avro schema of the envelope for `settings`, as JSON.
pub fn schema_json(settings: &EncodeSettings) -> Value {
    let mut fields = Vec::new();
    let mut bytes_field = |name: &str, how: BytesAs| {
        if how == BytesAs::Bytes {
            fields.push(json!({"name": name, "type": ["null", "bytes"]}));
        } else {
            fields.push(json!({"name": name, "type": ["null", "string"]}));
            fields.push(json!({"name": format!("{name}_bytes"), "type": ["null", "bytes"]}));
        }
    };
    if settings.fields.key {
        bytes_field("key", settings.key_as);
    }
    if settings.fields.value {
        bytes_field("value", settings.value_as);
    }
    if settings.fields.headers {
        fields.push(json!({"name": "headers", "type": {"type": "array", "items": {
        "type": "record", "name": "Header", "fields": [
            {"name": "key", "type": "bytes"},
            {"name": "value", "type": ["null", "bytes"]},
        ]}}}));
    }
    if settings.fields.metadata {
        fields.push(
            json!({"name": "metadata", "type": {"type": "record", "name": "Metadata", "fields": [
                {"name": "topic", "type": "string"},
                {"name": "partition", "type": "int"},
                {"name": "offset", "type": "long"},
                {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "timestamp_type", "type": "string"},
            ]}}),
        );
    }
    json!({"type": "record", "name": "Envelope", "namespace": "io.kbs.export", "fields": fields})
}

/// Encodes one object's records block by block.
pub(super) struct AvroEncoder {
    settings: EncodeSettings,
    marker: [u8; 16],
    /// The header and the closed blocks.
    out: Vec<u8>,
    /// The open block's records, uncompressed.
    block: Vec<u8>,
    block_records: i64,
}

impl AvroEncoder {
    /// An encoder for the object named `name` (its sync marker derives from it).
    pub(super) fn new(settings: &EncodeSettings, name: &str) -> AvroEncoder {
        let schema = serde_json::to_vec(&schema_json(settings)).expect("json");
        let marker = sync_marker(name);
        AvroEncoder {
            settings: *settings,
            marker,
            out: file_header(&schema, settings.compression, marker),
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            block_records: 0,
        }
    }

    /// Compresses the open block and appends it: record count, byte size, data, marker.
    fn close_block(&mut self) -> std::io::Result<()> {
        if self.block_records == 0 {
            return Ok(());
        }
        let compressed;
        let data: &[u8] = match self.settings.compression {
            Compression::Deflate => {
                let mut encoder =
                    flate2::write::DeflateEncoder::new(Vec::with_capacity(self.block.len() / 2), Default::default());
                encoder.write_all(&self.block)?;
                compressed = encoder.finish()?;
                &compressed
            }
            Compression::Snappy => {
                let mut out = snap::raw::Encoder::new()
                    .compress_vec(&self.block)
                    .map_err(std::io::Error::other)?;
                // Avro's snappy codec: each block's CRC-32 of the uncompressed data, big-endian.
                out.extend_from_slice(&crc32fast::hash(&self.block).to_be_bytes());
                compressed = out;
                &compressed
            }
            Compression::Zstd => {
                compressed = zstd::bulk::compress(&self.block, 3)?;
                &compressed
            }
            _ => &self.block,
        };
        put_long(&mut self.out, self.block_records);
        put_long(&mut self.out, data.len() as i64);
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(&self.marker);
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }
}

/// An Avro long: zig-zag, then base-128 varint.
fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Avro bytes or string: the length, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A `union {null, bytes}` (or `{null, string}`: the same encoding): branch index, then value.
fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_long(out, 0),
        Some(bytes) => {
            put_long(out, 1);
            put_bytes(out, bytes);
        }
    }
}

/// A key or value: one union, or (text asked for) the text union and the bytes union.
fn put_key_or_value(out: &mut Vec<u8>, bytes: Option<&[u8]>, how: BytesAs) {
    if how == BytesAs::Bytes {
        put_optional(out, bytes);
        return;
    }
    let (text, raw) = match typed_bytes(bytes, how) {
        TypedBytes::Null => (None, None),
        TypedBytes::Text(text) => (Some(text.as_bytes()), None),
        TypedBytes::Bytes(raw) => (None, Some(raw)),
    };
    put_optional(out, text);
    put_optional(out, raw);
}

/// A sync marker that depends only on the object's name (two FNV-1a hashes, the second from
/// another seed).
fn sync_marker(name: &str) -> [u8; 16] {
    use std::hash::Hasher as _;
    let fnv = |seed: u64| {
        let mut hasher = crate::stable_hash::Fnv1a::with_seed(seed);
        hasher.write(name.as_bytes());
        hasher.finish()
    };
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&fnv(crate::stable_hash::FNV_OFFSET_BASIS).to_le_bytes());
    marker[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_le_bytes());
    marker
}

/// The object container header (Avro specification, "Object Container Files"):
///
/// ```text
/// "Obj" 0x01                      magic
/// map<bytes> metadata             one block of two entries (count 2, key/value pairs), then 0:
///   "avro.schema"  the schema's JSON
///   "avro.codec"   null | deflate | snappy | zstandard
/// 16 bytes                        the sync marker
/// then per block: record count (long), byte size (long), the (compressed) records, the marker
/// ```
fn file_header(schema: &[u8], compression: Compression, marker: [u8; 16]) -> Vec<u8> {
    let codec = match compression {
        Compression::Deflate => "deflate",
        Compression::Snappy => "snappy",
        Compression::Zstd => "zstandard",
        _ => "null",
    };
    let mut out = b"Obj\x01".to_vec();
    put_long(&mut out, 2);
    put_bytes(&mut out, b"avro.schema");
    put_bytes(&mut out, schema);
    put_bytes(&mut out, b"avro.codec");
    put_bytes(&mut out, codec.as_bytes());
    put_long(&mut out, 0);
    out.extend_from_slice(&marker);
    out
}

impl ObjectEncoder for AvroEncoder {
    fn add(&mut self, envelope: &Envelope<'_>) -> Result<(), CliError> {
        let record = envelope.record;
        let fields = self.settings.fields;
        let out = &mut self.block;
        if fields.key {
            put_key_or_value(out, record.key.as_deref(), self.settings.key_as);
        }
        if fields.value {
            put_key_or_value(out, record.value.as_deref(), self.settings.value_as);
        }
        if fields.headers {
            // An array: one block of items (count, items), then 0.
            if !record.headers.is_empty() {
                put_long(out, record.headers.len() as i64);
                for header in &record.headers {
                    put_bytes(out, &header.key);
                    put_optional(out, header.value.as_deref());
                }
            }
            put_long(out, 0);
        }
        if fields.metadata {
            put_bytes(out, envelope.topic.as_bytes());
            put_long(out, i64::from(envelope.partition));
            put_long(out, record.offset);
            put_long(out, record.timestamp);
            put_bytes(out, envelope.timestamp_type.as_bytes());
        }
        self.block_records += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.close_block().map_err(|e| CliError::Export {
                object: format!("{}/{}", envelope.topic, envelope.partition),
                message: format!("Avro block compression failed: {e}"),
            })?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<Vec<u8>, CliError> {
        self.close_block().map_err(|e| CliError::Export {
            object: name.to_owned(),
            message: format!("Avro block compression failed: {e}"),
        })?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::sample_object;
    use crate::export::{Fields, Format};

    fn encoded(compression: Compression, key_as: BytesAs) -> Vec<u8> {
        let settings = EncodeSettings {
            format: Format::Avro,
            compression,
            fields: Fields::ALL,
            key_as,
            value_as: BytesAs::Bytes,
        };
        sample_object(&settings, "t/2/x.avro", 3000)
    }

    #[test]
    fn files_read_back_with_apache_avro_in_every_codec_and_are_the_same_every_time() {
        for compression in [
            Compression::None,
            Compression::Deflate,
            Compression::Snappy,
            Compression::Zstd,
        ] {
            for key_as in [BytesAs::Bytes, BytesAs::String] {
                let bytes = encoded(compression, key_as);
                assert_eq!(bytes, encoded(compression, key_as), "deterministic");
                let records = crate::import::read_avro("x.avro", &bytes).unwrap();
                assert_eq!(records.len(), 3000, "{compression:?}");
                for (i, r) in records.iter().enumerate() {
                    assert_eq!((r.topic.as_str(), r.partition), ("t", 2));
                    assert_eq!(
                        r.record,
                        crate::export::testing::sample_record(i as i64),
                        "{compression:?}"
                    );
                }
            }
        }
    }
}
