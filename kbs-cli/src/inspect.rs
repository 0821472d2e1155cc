//! `kbs inspect`: a segment's header, footer and records as JSON lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kbs_format::{FormatError, Identities, Record};
use serde_json::{Value, json};

/// Decodes a whole segment (checking every checksum) and returns one JSON object for the
/// segment followed by one per record. Byte strings are standard base64; null stays null.
///
/// An encrypted segment needs `identities` (one of its recipients' keys).
pub fn segment_to_json_lines(data: Bytes, identities: Option<&Identities>) -> Result<Vec<Value>, FormatError> {
    let reader = crate::encryption::open_segment(data, identities)?;
    let header = reader.header();
    let footer = reader.footer();
    let mut lines = vec![json!({
        "type": "segment",
        "size_bytes": reader.bytes().len(),
        "header": {
            "version": kbs_format::layout::FORMAT_VERSION,
            "compression": header.compression.name(),
            "per_record_crc": header.per_record_crc,
            "encrypted": header.encrypted,
            "first_offset": header.first_offset,
            "record_count": header.record_count,
            "crc64": format!("{:016x}", header.crc64),
        },
        "footer": {
            "last_offset": footer.last_offset,
            "header_crc32": format!("{:08x}", footer.header_crc32),
        },
    })];
    for record in reader.records() {
        lines.push(record_to_json(&record?));
    }
    Ok(lines)
}

fn b64(bytes: &Option<Bytes>) -> Value {
    bytes.as_ref().map_or(Value::Null, |b| Value::String(B64.encode(b)))
}

/// One record as JSON.
pub fn record_to_json(record: &Record) -> Value {
    json!({
        "type": "record",
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": b64(&record.key),
        "value": b64(&record.value),
        "headers": record.headers.iter().map(|h| json!({"key": B64.encode(&h.key), "value": b64(&h.value)})).collect::<Vec<_>>(),
    })
}
