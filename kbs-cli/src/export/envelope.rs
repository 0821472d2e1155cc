//! The envelope: what every export format holds for one record (docs/EXPORT.md).
//!
//! An envelope has up to four fields, chosen with `--fields`: `key`, `value`, `headers` and
//! `metadata {topic, partition, offset, timestamp, timestamp_type}`. Keys and values are bytes,
//! or decoded text or JSON when asked and possible ([`BytesAs`]); headers are an ordered list
//! that keeps duplicates and null values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kbs_format::Record;
use serde::Serialize;

/// How a key or value is written into the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BytesAs {
    /// Bytes as they are: base64 in the text formats, a binary column in Parquet and Avro.
    Bytes,
    /// UTF-8 text when the bytes are valid UTF-8; otherwise the bytes (per record).
    String,
    /// JSON when the bytes are valid JSON text (in the text formats: on one line, without
    /// surrounding whitespace, embedded verbatim); otherwise as [`BytesAs::String`] (per record).
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

/// Which envelope fields an export writes (`--fields`); all four by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fields {
    /// The record key.
    pub key: bool,
    /// The record value.
    pub value: bool,
    /// The record headers.
    pub headers: bool,
    /// Topic, partition, offset, timestamp and timestamp type.
    pub metadata: bool,
}

impl Fields {
    /// Every field.
    pub const ALL: Fields = Fields {
        key: true,
        value: true,
        headers: true,
        metadata: true,
    };

    /// Parses a comma-separated list of field names (`key,value,headers,metadata`).
    pub fn parse(names: &[String]) -> Result<Fields, String> {
        if names.is_empty() {
            return Ok(Fields::ALL);
        }
        let mut fields = Fields {
            key: false,
            value: false,
            headers: false,
            metadata: false,
        };
        for name in names {
            match name.as_str() {
                "key" => fields.key = true,
                "value" => fields.value = true,
                "headers" => fields.headers = true,
                "metadata" => fields.metadata = true,
                other => return Err(format!("{other:?} is not key, value, headers or metadata")),
            }
        }
        Ok(fields)
    }
}

/// One record with the context its envelope needs.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The record.
    pub record: &'a Record,
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// `CreateTime` or `LogAppendTime`.
    pub timestamp_type: &'static str,
}

/// One JSON Lines line: the chosen fields, in envelope order, borrowed from the record.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<BytesText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<BytesText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataText<'a>>,
}

/// The metadata object of the text formats.
#[derive(Serialize)]
pub struct MetadataText<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    timestamp_type: &'a str,
}

/// The headers of the text formats: a list of `{"key", "value"}` in the `string` form.
pub struct HeadersText<'a>(&'a [kbs_format::Header]);

impl Serialize for HeadersText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        struct One<'a>(&'a kbs_format::Header);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("key", &bytes_value(Some(&self.0.key), BytesAs::String))?;
                map.serialize_entry("value", &bytes_value(self.0.value.as_deref(), BytesAs::String))?;
                map.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for header in self.0 {
            seq.serialize_element(&One(header))?;
        }
        seq.end()
    }
}

impl<'a> Envelope<'a> {
    /// Appends the envelope as one JSON object (the JSON Lines form), with the chosen fields.
    pub fn write_json(&self, out: &mut Vec<u8>, fields: Fields, key_as: BytesAs, value_as: BytesAs) {
        let line = Line {
            key: fields.key.then(|| bytes_value(self.record.key.as_deref(), key_as)),
            value: fields
                .value
                .then(|| bytes_value(self.record.value.as_deref(), value_as)),
            headers: fields.headers.then(|| self.headers_json()),
            metadata: fields.metadata.then(|| self.metadata_json()),
        };
        serde_json::to_writer(out, &line).expect("json to memory");
    }

    /// The headers as a JSON list of `{"key", "value"}` in the `string` form.
    pub fn headers_json(&self) -> HeadersText<'a> {
        HeadersText(&self.record.headers)
    }

    /// The metadata object.
    pub fn metadata_json(&self) -> MetadataText<'a> {
        MetadataText {
            topic: self.topic,
            partition: self.partition,
            offset: self.record.offset,
            timestamp: self.record.timestamp,
            timestamp_type: self.timestamp_type,
        }
    }
}

/// A key, value or header as the text formats write it (see [`bytes_value`]), borrowed from
/// the record; serialises to JSON.
#[derive(Debug, Clone, Copy)]
pub struct BytesText<'a> {
    bytes: Option<&'a [u8]>,
    how: BytesAs,
}

impl Serialize for BytesText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let Some(bytes) = self.bytes else {
            return serializer.serialize_none();
        };
        match self.how {
            BytesAs::Bytes => serializer.serialize_str(&B64.encode(bytes)),
            BytesAs::String => match std::str::from_utf8(bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("base64", &B64.encode(bytes))?;
                    map.end()
                }
            },
            BytesAs::Json => match verbatim_json(bytes) {
                // A raw value is written as it is: the JSON text keeps its exact bytes.
                Some(raw) => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("json", raw)?;
                    map.end()
                }
                None => BytesText {
                    bytes: self.bytes,
                    how: BytesAs::String,
                }
                .serialize(serializer),
            },
        }
    }
}

/// A key, value or header as the text formats hold it: `null` for null; otherwise as `how`
/// asks, falling back per record (documented in docs/EXPORT.md).
pub fn bytes_value(bytes: Option<&[u8]>, how: BytesAs) -> BytesText<'_> {
    BytesText { bytes, how }
}

/// The bytes as a JSON value that serialises back to exactly these bytes: valid JSON text on
/// one line without surrounding whitespace (inside a JSON Lines line or a CSV cell it is
/// embedded as it is); `None` otherwise.
fn verbatim_json(bytes: &[u8]) -> Option<&serde_json::value::RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.trim() != text || text.contains(['\n', '\r']) {
        return None;
    }
    serde_json::from_str::<&serde_json::value::RawValue>(text).ok()
}

/// A key or value as the typed formats (Parquet, Avro) hold it: text in the `key`/`value`
/// column when `how` asks for it and the bytes qualify, otherwise the bytes in the
/// `key_bytes`/`value_bytes` column (with [`BytesAs::Bytes`], in the `key`/`value` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypedBytes<'a> {
    /// A null key or value.
    Null,
    /// Text: valid UTF-8 (`string`) or valid JSON text (`json`).
    Text(&'a str),
    /// The bytes themselves.
    Bytes(&'a [u8]),
}

/// Decides [`TypedBytes`] for one key or value.
pub(crate) fn typed_bytes(bytes: Option<&[u8]>, how: BytesAs) -> TypedBytes<'_> {
    let Some(bytes) = bytes else {
        return TypedBytes::Null;
    };
    match how {
        BytesAs::Bytes => TypedBytes::Bytes(bytes),
        BytesAs::String => std::str::from_utf8(bytes).map_or(TypedBytes::Bytes(bytes), TypedBytes::Text),
        BytesAs::Json => match std::str::from_utf8(bytes) {
            Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => TypedBytes::Text(text),
            _ => TypedBytes::Bytes(bytes),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Option<&[u8]>, how: BytesAs) -> String {
        serde_json::to_string(&bytes_value(bytes, how)).unwrap()
    }

    #[test]
    fn every_byte_string_has_one_unambiguous_form() {
        assert_eq!(text(None, BytesAs::String), "null");
        assert_eq!(text(Some(b""), BytesAs::Bytes), r#""""#);
        assert_eq!(text(Some(b"k"), BytesAs::Bytes), r#""aw==""#);
        assert_eq!(text(Some(b"k"), BytesAs::String), r#""k""#);
        assert_eq!(text(Some(&[0xff]), BytesAs::String), r#"{"base64":"/w=="}"#);
        assert_eq!(
            text(Some(br#"{"a": 1}"#), BytesAs::Json),
            r#"{"json":{"a": 1}}"#,
            "verbatim"
        );
        assert_eq!(text(Some(b"{not json"), BytesAs::Json), r#""{not json""#);
        assert_eq!(
            text(Some(b" 1"), BytesAs::Json),
            r#"" 1""#,
            "whitespace around: as string"
        );
        assert_eq!(
            text(Some(b"[1,\n2]"), BytesAs::Json),
            r#""[1,\n2]""#,
            "a line break: as string"
        );
        assert_eq!(text(Some(&[0xff]), BytesAs::Json), r#"{"base64":"/w=="}"#);
    }

    #[test]
    fn typed_columns_hold_text_only_when_it_is_what_was_asked() {
        assert_eq!(typed_bytes(None, BytesAs::Json), TypedBytes::Null);
        assert_eq!(typed_bytes(Some(b"k"), BytesAs::Bytes), TypedBytes::Bytes(b"k"));
        assert_eq!(typed_bytes(Some(b""), BytesAs::String), TypedBytes::Text(""));
        assert_eq!(typed_bytes(Some(&[0xff]), BytesAs::String), TypedBytes::Bytes(&[0xff]));
        assert_eq!(typed_bytes(Some(b" [1]"), BytesAs::Json), TypedBytes::Text(" [1]"));
        assert_eq!(typed_bytes(Some(b""), BytesAs::Json), TypedBytes::Bytes(b""));
        assert_eq!(typed_bytes(Some(b"abc"), BytesAs::Json), TypedBytes::Bytes(b"abc"));
    }

    #[test]
    fn fields_parse_names_and_refuse_others() {
        assert_eq!(Fields::parse(&[]), Ok(Fields::ALL));
        let only = Fields::parse(&["value".into(), "metadata".into()]).unwrap();
        assert!(!only.key && only.value && !only.headers && only.metadata);
        assert!(Fields::parse(&["offset".into()]).is_err());
    }
}
