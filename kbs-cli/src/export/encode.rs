//! Object formats of an export, the encoder trait, and the JSON Lines and CSV encoders
//! (Parquet's is in `parquet.rs`, Avro's in `avro.rs`; `objects.rs` picks one per object).
//!
//! An encoder collects one object's envelopes and turns them into the object's bytes when the
//! object is cut. Given the same envelopes and settings it produces the same bytes, which is
//! what lets an interrupted export resume without duplicate objects.

use std::io::Write;

use serde::Serialize;

use super::envelope::{BytesAs, Envelope, Fields, bytes_value};
use crate::CliError;

/// The object format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON envelope per line.
    Jsonl,
    /// Comma-separated values with a header row; key, value and headers as JSON texts.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// An Avro object container file.
    Avro,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            "avro" => Ok(Format::Avro),
            other => Err(format!("{other:?} is not parquet, avro, jsonl or csv")),
        }
    }
}

/// How an object's contents are compressed (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip around the whole object (JSON Lines, CSV).
    Gzip,
    /// Snappy pages or blocks (Parquet, Avro).
    Snappy,
    /// Zstandard pages or blocks (Parquet, Avro).
    Zstd,
    /// LZ4 pages (Parquet).
    Lz4,
    /// Deflate blocks (Avro).
    Deflate,
}

impl Compression {
    /// Parses `--compression`, checking that `format` supports it; `None` picks the format's
    /// default (snappy for Parquet and Avro, none for the text formats).
    pub fn for_format(format: Format, text: Option<&str>) -> Result<Compression, String> {
        let Some(text) = text else {
            return Ok(match format {
                Format::Parquet | Format::Avro => Compression::Snappy,
                Format::Jsonl | Format::Csv => Compression::None,
            });
        };
        let compression = match text {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "zstd" => Compression::Zstd,
            "lz4" => Compression::Lz4,
            "deflate" => Compression::Deflate,
            other => return Err(format!("{other:?} is not none, gzip, snappy, zstd, lz4 or deflate")),
        };
        let supported: &[Compression] = match format {
            Format::Jsonl | Format::Csv => &[Compression::None, Compression::Gzip],
            Format::Parquet => &[
                Compression::None,
                Compression::Snappy,
                Compression::Zstd,
                Compression::Lz4,
            ],
            Format::Avro => &[
                Compression::None,
                Compression::Snappy,
                Compression::Zstd,
                Compression::Deflate,
            ],
        };
        if supported.contains(&compression) {
            Ok(compression)
        } else {
            Err(format!("{format:?} objects cannot be compressed with {text}"))
        }
    }
}

impl Format {
    /// The object name's extension, with `.gz` for gzip.
    pub fn extension(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Format::Jsonl, Compression::Gzip) => "jsonl.gz",
            (Format::Jsonl, _) => "jsonl",
            (Format::Csv, Compression::Gzip) => "csv.gz",
            (Format::Csv, _) => "csv",
            (Format::Parquet, _) => "parquet",
            (Format::Avro, _) => "avro",
        }
    }
}

/// What shapes every object's contents.
#[derive(Debug, Clone, Copy)]
pub struct EncodeSettings {
    /// The format.
    pub format: Format,
    /// Its compression.
    pub compression: Compression,
    /// The envelope fields written.
    pub fields: Fields,
    /// How keys are written.
    pub key_as: BytesAs,
    /// How values are written.
    pub value_as: BytesAs,
}

/// Collects one object's envelopes.
pub(super) trait ObjectEncoder: Send {
    /// Adds one record's envelope.
    fn add(&mut self, envelope: &Envelope<'_>) -> Result<(), CliError>;
    /// The object's bytes (`name` is the object's, for errors).
    fn finish(self: Box<Self>, name: &str) -> Result<Vec<u8>, CliError>;
}

/// A value's JSON text (a CSV cell).
fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("json to memory")
}

/// JSON Lines or CSV, gzipped as a whole when asked.
pub(super) struct TextEncoder {
    settings: EncodeSettings,
    csv: bool,
    buffer: Vec<u8>,
}

/// The CSV columns for `fields`, in order.
fn csv_columns(fields: Fields) -> Vec<&'static str> {
    let mut columns = Vec::new();
    if fields.metadata {
        columns.extend(["topic", "partition", "offset", "timestamp", "timestamp_type"]);
    }
    if fields.key {
        columns.push("key");
    }
    if fields.value {
        columns.push("value");
    }
    if fields.headers {
        columns.push("headers");
    }
    columns
}

/// One CSV cell: quoted (quotes doubled) when it holds a comma, quote or line break (RFC 4180).
fn csv_cell(out: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

impl TextEncoder {
    /// An encoder of JSON Lines, or of CSV when `csv`.
    pub(super) fn new(settings: EncodeSettings, csv: bool) -> TextEncoder {
        let mut buffer = Vec::new();
        if csv {
            buffer.extend_from_slice(csv_columns(settings.fields).join(",").as_bytes());
            buffer.extend_from_slice(b"\r\n");
        }
        TextEncoder { settings, csv, buffer }
    }

    fn add_csv_row(&mut self, envelope: &Envelope<'_>) {
        let fields = self.settings.fields;
        let mut cells: Vec<String> = Vec::new();
        if fields.metadata {
            cells.push(envelope.topic.to_owned());
            cells.push(envelope.partition.to_string());
            cells.push(envelope.record.offset.to_string());
            cells.push(envelope.record.timestamp.to_string());
            cells.push(envelope.timestamp_type.to_owned());
        }
        if fields.key {
            cells.push(json_text(&bytes_value(
                envelope.record.key.as_deref(),
                self.settings.key_as,
            )));
        }
        if fields.value {
            cells.push(json_text(&bytes_value(
                envelope.record.value.as_deref(),
                self.settings.value_as,
            )));
        }
        if fields.headers {
            cells.push(json_text(&envelope.headers_json()));
        }
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                self.buffer.push(b',');
            }
            csv_cell(&mut self.buffer, cell);
        }
        self.buffer.extend_from_slice(b"\r\n");
    }
}

impl ObjectEncoder for TextEncoder {
    fn add(&mut self, envelope: &Envelope<'_>) -> Result<(), CliError> {
        if self.csv {
            self.add_csv_row(envelope);
        } else {
            let s = &self.settings;
            envelope.write_json(&mut self.buffer, s.fields, s.key_as, s.value_as);
            self.buffer.push(b'\n');
        }
        Ok(())
    }

    fn finish(self: Box<Self>, name: &str) -> Result<Vec<u8>, CliError> {
        if self.settings.compression != Compression::Gzip {
            return Ok(self.buffer);
        }
        // The gzip header's time stays 0, so the same records give the same bytes.
        let mut gzip = flate2::GzBuilder::new().write(
            Vec::with_capacity(self.buffer.len() / 4),
            flate2::Compression::default(),
        );
        gzip.write_all(&self.buffer)
            .and_then(|()| gzip.finish())
            .map_err(|e| CliError::Export {
                object: name.to_owned(),
                message: format!("gzip failed: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_checked_against_the_format() {
        assert_eq!(Compression::for_format(Format::Parquet, None), Ok(Compression::Snappy));
        assert_eq!(Compression::for_format(Format::Jsonl, None), Ok(Compression::None));
        assert_eq!(
            Compression::for_format(Format::Csv, Some("gzip")),
            Ok(Compression::Gzip)
        );
        assert!(Compression::for_format(Format::Jsonl, Some("zstd")).is_err());
        assert!(Compression::for_format(Format::Parquet, Some("gzip")).is_err());
        assert!(Compression::for_format(Format::Avro, Some("lz4")).is_err());
    }

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        csv_cell(&mut out, "plain");
        out.push(b'|');
        csv_cell(&mut out, r#"{"a":"b,c"}"#);
        assert_eq!(String::from_utf8(out).unwrap(), r#"plain|"{""a"":""b,c""}""#);
    }
}
