//! `--partition-by`: folders named after fields of each record, as query engines expect.
//!
//! Each field gives one folder level, in the order given. With `--hive` a level is
//! `name=value` (the form Athena, Spark and DuckDB read as a partition column); without it,
//! the value alone.
//!
//! | field | column name | folder value |
//! |---|---|---|
//! | `_topic` | `topic` | the topic |
//! | `_partition` | `partition` | the partition number |
//! | `_key` | `key` | the key's bytes |
//! | `_key.a.b` | `key_a_b` | field `a.b` of the key read as JSON |
//! | `_value.a.b` | `value_a_b` | field `a.b` of the value read as JSON |
//! | `_header.name` | `header_name` | the value of the first header `name` |
//! | `date` | `date` | the record time's UTC date, `YYYY-MM-DD` (years 0–9999) |
//! | `hour` | `hour` | the record time's UTC hour, `HH` |
//!
//! A JSON string gives its text, any other JSON value its compact JSON text. A null, missing
//! or empty value, a key or value that is not JSON, gives `__HIVE_DEFAULT_PARTITION__` (Hive's
//! name for it). Bytes other than ASCII letters, digits, `-`, `_` and `.` are written `%XX`
//! (as Hive escapes them), and so is a leading `.`; a value longer than 128 characters is cut
//! to its first 100 and `~` and 16 hex digits of a hash of the whole, so folder names stay
//! within every store's limits.

use serde_json::Value;

use super::envelope::Envelope;

/// Hive's folder value for a null or empty partition value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// One `--partition-by` field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartitionField {
    Topic,
    Partition,
    Key,
    KeyField(Vec<String>),
    ValueField(Vec<String>),
    Header(String),
    Date,
    Hour,
}

/// The parsed `--partition-by` fields and folder style.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionBy {
    fields: Vec<(String, PartitionField)>,
    hive: bool,
}

impl PartitionBy {
    /// Parses the fields (`_topic`, `_partition`, `_key`, `_key.f`, `_value.f`,
    /// `_header.name`, `date`, `hour`); `hive` asks for `name=value` folders.
    pub fn parse(specs: &[String], hive: bool) -> Result<PartitionBy, String> {
        let mut fields = Vec::new();
        for spec in specs.iter().filter(|s| !s.is_empty()) {
            let path = |rest: &str| -> Result<Vec<String>, String> {
                let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(format!("{spec:?} names an empty field"));
                }
                Ok(parts)
            };
            let field = match spec.as_str() {
                "_topic" => ("topic".to_owned(), PartitionField::Topic),
                "_partition" => ("partition".to_owned(), PartitionField::Partition),
                "_key" => ("key".to_owned(), PartitionField::Key),
                "date" => ("date".to_owned(), PartitionField::Date),
                "hour" => ("hour".to_owned(), PartitionField::Hour),
                other => {
                    if let Some(rest) = other.strip_prefix("_key.") {
                        let parts = path(rest)?;
                        (format!("key_{}", parts.join("_")), PartitionField::KeyField(parts))
                    } else if let Some(rest) = other.strip_prefix("_value.") {
                        let parts = path(rest)?;
                        (format!("value_{}", parts.join("_")), PartitionField::ValueField(parts))
                    } else if let Some(name) = other.strip_prefix("_header.").filter(|n| !n.is_empty()) {
                        (format!("header_{name}"), PartitionField::Header(name.to_owned()))
                    } else {
                        return Err(format!(
                            "{other:?} is not _topic, _partition, _key, _key.FIELD, _value.FIELD, _header.NAME, \
                             date or hour"
                        ));
                    }
                }
            };
            if fields.iter().any(|(name, _)| *name == field.0) {
                return Err(format!("{spec:?} is given twice"));
            }
            fields.push(field);
        }
        Ok(PartitionBy { fields, hive })
    }

    /// True when no field is given: the default `<topic>/<partition>/` layout.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The record's folder, e.g. `date=2026-11-21/key_region=eu` (no trailing slash).
    pub fn folder(&self, envelope: &Envelope<'_>) -> String {
        let mut folder = String::new();
        for (name, field) in &self.fields {
            if !folder.is_empty() {
                folder.push('/');
            }
            if self.hive {
                folder.push_str(name);
                folder.push('=');
            }
            let value = field_value(field, envelope);
            folder.push_str(&escape(value.as_deref().unwrap_or_default()));
        }
        folder
    }

    /// The fields as given, for the export's options record.
    pub fn describe(&self) -> Vec<String> {
        self.fields.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Whether folders are `name=value`.
    pub fn hive(&self) -> bool {
        self.hive
    }
}

/// A field's value as bytes; `None` for null or missing.
fn field_value(field: &PartitionField, envelope: &Envelope<'_>) -> Option<Vec<u8>> {
    let record = envelope.record;
    match field {
        PartitionField::Topic => Some(envelope.topic.as_bytes().to_vec()),
        PartitionField::Partition => Some(envelope.partition.to_string().into_bytes()),
        PartitionField::Key => record.key.as_ref().map(|k| k.to_vec()),
        PartitionField::KeyField(path) => json_field(record.key.as_deref(), path),
        PartitionField::ValueField(path) => json_field(record.value.as_deref(), path),
        PartitionField::Header(name) => record
            .headers
            .iter()
            .find(|h| h.key.as_ref() == name.as_bytes())
            .and_then(|h| h.value.as_ref().map(|v| v.to_vec())),
        // The UTC text `YYYY-MM-DDTHH:…`; a time outside years 0–9999 has no date.
        PartitionField::Date => kbs_manifest::UtcTimestamp::from_unix_millis(record.timestamp)
            .ok()
            .map(|t| t.as_str().as_bytes()[..10].to_vec()),
        PartitionField::Hour => kbs_manifest::UtcTimestamp::from_unix_millis(record.timestamp)
            .ok()
            .map(|t| t.as_str().as_bytes()[11..13].to_vec()),
    }
}

/// Field `path` of `bytes` read as JSON: a string's text, another value's compact JSON.
fn json_field(bytes: Option<&[u8]>, path: &[String]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(bytes?).ok()?;
    for part in path {
        value = match value {
            Value::Object(mut map) => map.remove(part)?,
            _ => return None,
        };
    }
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A folder-safe form of a value (see the module docs).
fn escape(value: &[u8]) -> String {
    if value.is_empty() {
        return DEFAULT_PARTITION.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for (i, &byte) in value.iter().enumerate() {
        let plain = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && i > 0);
        if plain {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.len() <= 128 {
        return out;
    }
    let mut cut = 100;
    while !out.is_char_boundary(cut) || out[..cut].ends_with('%') || out[..cut.saturating_sub(1)].ends_with('%') {
        cut -= 1;
    }
    let hash = crate::stable_hash::fnv1a(value);
    format!("{}~{hash:016x}", &out[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kbs_format::{Header, Record};

    fn record(key: Option<&str>, value: Option<&str>, timestamp: i64) -> Record {
        Record {
            offset: 7,
            timestamp,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![
                Header::new("region", Some(Bytes::from_static(b"eu/west"))),
                Header::new("region", Some(Bytes::from_static(b"us"))),
            ],
        }
    }

    fn folder(specs: &[&str], hive: bool, record: &Record) -> String {
        let by = PartitionBy::parse(&specs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), hive).unwrap();
        by.folder(&Envelope {
            record,
            topic: "orders",
            partition: 3,
            timestamp_type: "CreateTime",
        })
    }

    #[test]
    fn folders_name_the_fields_of_each_record() {
        let r = record(
            Some(r#"{"id": 5}"#),
            Some(r#"{"customer": {"tier": "gold"}, "n": 1.5}"#),
            1_763_712_000_000,
        );
        assert_eq!(
            folder(&["_topic", "_partition", "date", "hour"], true, &r),
            "topic=orders/partition=3/date=2025-11-21/hour=08"
        );
        assert_eq!(
            folder(&["_value.customer.tier", "_value.n", "_key.id"], false, &r),
            "gold/1.5/5"
        );
        assert_eq!(folder(&["_header.region"], true, &r), "header_region=eu%2Fwest");
        assert_eq!(
            folder(&["_key"], true, &r),
            "key=%7B%22id%22%3A%205%7D",
            "bytes other than letters, digits, - _ . are escaped"
        );
    }

    #[test]
    fn missing_null_and_empty_values_go_to_the_default_partition() {
        let r = record(None, Some("not json"), 0);
        assert_eq!(
            folder(&["_key", "_value.x", "_header.none"], true, &r),
            format!("key={DEFAULT_PARTITION}/value_x={DEFAULT_PARTITION}/header_none={DEFAULT_PARTITION}")
        );
        assert_eq!(folder(&["_key"], false, &record(Some(""), None, 0)), DEFAULT_PARTITION);
        assert_eq!(folder(&["_key"], false, &record(Some(".."), None, 0)), "%2E.");
    }

    #[test]
    fn dates_before_and_after_the_epoch() {
        let date_hour = |ms| folder(&["date", "hour"], false, &record(None, None, ms));
        assert_eq!(date_hour(0), "1970-01-01/00");
        assert_eq!(date_hour(-1), "1969-12-31/23");
        assert_eq!(date_hour(951_782_400_000), "2000-02-29/00");
        assert_eq!(date_hour(i64::MAX), format!("{DEFAULT_PARTITION}/{DEFAULT_PARTITION}"));
    }

    #[test]
    fn long_values_are_cut_with_a_hash() {
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let a = folder(&["_key"], false, &record(Some(&long_a), None, 0));
        let b = folder(&["_key"], false, &record(Some(&long_b), None, 0));
        assert!(a.len() <= 128 && b.len() <= 128, "{a}");
        assert_ne!(a, b);
        let escaped = folder(&["_key"], false, &record(Some(&"/".repeat(100)), None, 0));
        assert!(
            escaped.split('~').next().unwrap().len().is_multiple_of(3),
            "never cuts inside %XX: {escaped}"
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            &["_offset"][..],
            &["_key."],
            &["_value.a..b"],
            &["date", "date"],
            &["_header."],
        ] {
            let specs: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
            assert!(PartitionBy::parse(&specs, false).is_err(), "{bad:?}");
        }
    }
}
