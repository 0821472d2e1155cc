//! Kafka's RecordBatch (message format v2, "magic 2"): our own decoder and encoder.
//!
//! kafka-protocol's record codec loses duplicate header keys, starts a batch per record, fails
//! on the truncated trailing batch brokers legitimately send and preallocates from wire counts,
//! so the record bytes of Fetch and Produce go through this module instead.
//!
//! # Layout
//!
//! All integers are big-endian; offsets are from the start of the batch.
//!
//! ```text
//! offset size field
//!      0    8 base_offset             i64  offset of the first record
//!      8    4 batch_length            i32  bytes after this field (total size - 12)
//!     12    4 partition_leader_epoch  i32
//!     16    1 magic                   i8   = 2
//!     17    4 crc                     u32  CRC-32C (Castagnoli) of bytes 21..end
//!     21    2 attributes              i16  bits 0-2 compression (0 none, 1 gzip, 2 snappy,
//!                                          3 lz4, 4 zstd), bit 3 timestamp type (1 =
//!                                          LogAppendTime), bit 4 transactional, bit 5 control,
//!                                          bit 6 delete horizon set (base_timestamp is then the
//!                                          delete horizon; record timestamps are still
//!                                          base_timestamp + delta)
//!     23    4 last_offset_delta       i32  offset of the last record - base_offset; a batch
//!                                          emptied by compaction keeps it, so the next batch
//!                                          starts after base_offset + last_offset_delta
//!     27    8 base_timestamp          i64
//!     35    8 max_timestamp           i64  the timestamp of every record under LogAppendTime
//!     43    8 producer_id             i64  -1 when not idempotent
//!     51    2 producer_epoch          i16
//!     53    4 base_sequence           i32  sequence of the first record (-1 when not idempotent)
//!     57    4 record_count            i32
//!     61    .. records                     compressed as a whole when bits 0-2 are non-zero
//! ```
//!
//! Each record (varint = zigzag LEB128, see `varint`):
//!
//! ```text
//! length          varint  bytes of the rest of the record
//! attributes      i8      unused, 0
//! timestamp_delta varlong timestamp - base_timestamp
//! offset_delta    varint  offset - base_offset
//! key_length      varint  -1 = null key
//! key             bytes
//! value_length    varint  -1 = null value
//! value           bytes
//! header_count    varint
//!   key_length    varint  (>= 0: header keys are never null)
//!   key           bytes
//!   value_length  varint  -1 = null value
//!   value         bytes
//! ```
//!
//! A control batch (bit 5) holds one record whose key is `[i16 version = 0][i16 type]`
//! (type 0 = ABORT, 1 = COMMIT) and whose value is `[i16 version = 0][i32 coordinator_epoch]`.
//!
//! # Reading a fetched partition
//!
//! A Fetch response carries a partition's batches back to back; the broker may cut the last one
//! short at its size limit — that partial batch is skipped, not an error. Control batches are
//! dropped. Under `read_committed` the response's aborted-transaction list `(producer_id,
//! first_offset)` says which transactional batches to drop: a producer's batches are dropped
//! from its `first_offset` until that producer's ABORT marker (the algorithm of the Java
//! consumer's `CompletedFetch`). Records before the fetch offset (a compressed batch is served
//! whole) are dropped. The next fetch offset is one past the last complete batch's
//! `base_offset + last_offset_delta`, even when none of its records were kept.

pub(crate) mod compression;
mod varint;

#[cfg(test)]
pub(crate) mod spec;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::record::{ProduceRecord, Record, RecordHeader, TimestampType};
pub(crate) use compression::Codec;
use compression::DecompressFault;
use varint::{VarintFault, get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len};

/// Bytes before `batch_length` is counted: base offset and the length itself.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Size of the batch header up to and including `record_count`.
pub(crate) const HEADER_LEN: usize = 61;
/// Smallest legal `batch_length`.
const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;
/// Start of the CRC-covered bytes (the attributes).
const CRC_START: usize = 21;
/// Smallest encoded record: seven one-byte fields.
const MIN_RECORD_LEN: usize = 7;

const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Control record type of an ABORT marker.
pub(crate) const CONTROL_ABORT: i16 = 0;

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) base_offset: i64,
    pub(crate) batch_length: i32,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) magic: i8,
    pub(crate) crc: u32,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) record_count: i32,
}

impl BatchHeader {
    /// Parses the 61 header bytes (the caller checked there are that many).
    fn parse(b: &[u8]) -> BatchHeader {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let i32_at = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let i16_at = |at: usize| i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"));
        BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(12),
            magic: b[16] as i8,
            crc: i32_at(17) as u32,
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            record_count: i32_at(57),
        }
    }

    /// Offset of the batch's last record (`base_offset + last_offset_delta`).
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

/// One entry of a Fetch response's aborted-transactions list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTransaction {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
}

/// What stopped decoding at a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchFault {
    /// The batch is not magic 2 (a legacy message set).
    UnsupportedMagic {
        /// Base offset of the batch.
        base_offset: i64,
        /// The magic byte found.
        magic: i8,
    },
    /// The batch fails its checksum or does not parse.
    Corrupt {
        /// Base offset of the batch.
        base_offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// The batch decompresses to more than the configured limit.
    TooLarge {
        /// Base offset of the batch.
        base_offset: i64,
        /// The limit in bytes.
        limit: usize,
    },
}

/// A trailing batch cut short by the broker's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartialBatch {
    /// Bytes of the batch present in the response.
    pub(crate) present: usize,
    /// Full size of the batch, when its length field was present.
    pub(crate) size: Option<usize>,
}

/// The result of decoding one partition's record bytes.
#[derive(Debug, Default)]
pub(crate) struct DecodedRecords {
    /// Records kept, in offset order.
    pub(crate) records: Vec<Record>,
    /// One past the last complete batch decoded (kept or dropped), if any.
    pub(crate) next_offset: Option<i64>,
    /// The batch decoding stopped at; everything before it is in `records`.
    pub(crate) fault: Option<BatchFault>,
    /// A partial trailing batch, skipped.
    pub(crate) partial: Option<PartialBatch>,
    /// Complete batches seen (including control and aborted ones).
    pub(crate) batches: usize,
    /// One past the index in `records` of the last record of each batch that kept records.
    pub(crate) batch_ends: Vec<usize>,
}

/// How to decode a partition's records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeOptions {
    /// Drop records of aborted transactions (the aborted list must then be the response's).
    pub(crate) read_committed: bool,
    /// Maximum decompressed size of one batch.
    pub(crate) max_decompressed: usize,
}

/// Decodes the batches of one fetched partition. Never fails: a bad batch stops decoding and is
/// reported in `fault`, with every record before it kept.
pub(crate) fn decode_records(
    data: &Bytes,
    fetch_offset: i64,
    aborted: &[AbortedTransaction],
    options: DecodeOptions,
) -> DecodedRecords {
    let mut out = DecodedRecords::default();
    let mut aborted: Vec<AbortedTransaction> = if options.read_committed {
        aborted.to_vec()
    } else {
        Vec::new()
    };
    aborted.sort_by_key(|a| a.first_offset);
    let mut next_aborted = 0;
    // Producers whose transaction is aborted and whose ABORT marker was not reached yet.
    let mut active_aborted: Vec<i64> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < LOG_OVERHEAD {
            out.partial = Some(PartialBatch {
                present: rest.len(),
                size: None,
            });
            break;
        }
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let Ok(batch_length) = usize::try_from(batch_length) else {
            out.fault = Some(corrupt(base_offset, format!("negative batch length {batch_length}")));
            break;
        };
        let size = LOG_OVERHEAD + batch_length;
        if rest.len() < size {
            out.partial = Some(PartialBatch {
                present: rest.len(),
                size: Some(size),
            });
            break;
        }
        // The magic byte sits at byte 16 in every message format version.
        let magic = rest[16] as i8;
        if magic != 2 {
            out.fault = Some(BatchFault::UnsupportedMagic { base_offset, magic });
            break;
        }
        if batch_length < MIN_BATCH_LENGTH {
            out.fault = Some(corrupt(
                base_offset,
                format!("batch length {batch_length} is below the {MIN_BATCH_LENGTH}-byte header"),
            ));
            break;
        }
        let batch = data.slice(pos..pos + size);
        let header = BatchHeader::parse(&batch);
        let computed = crc32c::crc32c(&batch[CRC_START..]);
        if computed != header.crc {
            out.fault = Some(corrupt(
                base_offset,
                format!(
                    "CRC-32C mismatch: stored {:#010x}, computed {computed:#010x}",
                    header.crc
                ),
            ));
            break;
        }
        let last_offset = header.last_offset();
        while let Some(a) = aborted.get(next_aborted)
            && a.first_offset <= last_offset
        {
            active_aborted.push(a.producer_id);
            next_aborted += 1;
        }
        let skip = if header.is_control() {
            match control_type(&batch, &header, options.max_decompressed) {
                Ok(Some(CONTROL_ABORT)) => active_aborted.retain(|&p| p != header.producer_id),
                Ok(_) => {}
                Err(fault) => {
                    out.fault = Some(fault);
                    break;
                }
            }
            true
        } else {
            header.is_transactional() && active_aborted.contains(&header.producer_id)
        };
        // A broker may send a batch again later in the same response (tansu does): records
        // before the end of what was already decoded are not decoded twice.
        let from = out.next_offset.map_or(fetch_offset, |next| next.max(fetch_offset));
        let kept_before = out.records.len();
        if !skip
            && last_offset >= from
            && let Err(fault) = decode_batch_records(&batch, &header, from, options, &mut out.records)
        {
            out.fault = Some(fault);
            break;
        }
        if out.records.len() > kept_before {
            out.batch_ends.push(out.records.len());
        }
        out.batches += 1;
        out.next_offset = Some(last_offset.saturating_add(1).max(from));
        pos += size;
    }
    out
}

fn corrupt(base_offset: i64, reason: String) -> BatchFault {
    BatchFault::Corrupt { base_offset, reason }
}

/// The (decompressed) record bytes of a batch.
fn payload(batch: &Bytes, header: &BatchHeader, max_decompressed: usize) -> Result<Bytes, BatchFault> {
    let Some(codec) = Codec::from_attributes(header.attributes) else {
        return Err(corrupt(
            header.base_offset,
            format!(
                "unknown compression code {} in attributes {:#06x}",
                header.attributes & 7,
                header.attributes
            ),
        ));
    };
    let raw = batch.slice(HEADER_LEN..);
    match codec {
        Codec::None => Ok(raw),
        codec => match compression::decompress(codec, &raw, max_decompressed) {
            Ok(plain) => Ok(Bytes::from(plain)),
            Err(DecompressFault::TooLarge { limit }) => Err(BatchFault::TooLarge {
                base_offset: header.base_offset,
                limit,
            }),
            Err(DecompressFault::Invalid(reason)) => Err(corrupt(
                header.base_offset,
                format!("{} payload: {reason}", codec.name()),
            )),
        },
    }
}

/// The marker type of a control batch (`None` for an unknown control key version).
fn control_type(batch: &Bytes, header: &BatchHeader, max_decompressed: usize) -> Result<Option<i16>, BatchFault> {
    let payload = payload(batch, header, max_decompressed)?;
    let mut records = Vec::new();
    let mut pos = 0;
    let record = parse_record(&payload, &mut pos, header, &mut records, i64::MIN)
        .map_err(|reason| corrupt(header.base_offset, format!("control record: {reason}")));
    record?;
    let Some(record) = records.pop() else {
        return Err(corrupt(header.base_offset, "control batch without records".into()));
    };
    let Some(key) = record.key.filter(|k| k.len() >= 4) else {
        return Err(corrupt(
            header.base_offset,
            "control record key shorter than 4 bytes".into(),
        ));
    };
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version != 0 {
        // Like the Java client: an unknown control version is skipped, not interpreted.
        return Ok(None);
    }
    Ok(Some(i16::from_be_bytes([key[2], key[3]])))
}

fn decode_batch_records(
    batch: &Bytes,
    header: &BatchHeader,
    fetch_offset: i64,
    options: DecodeOptions,
    out: &mut Vec<Record>,
) -> Result<(), BatchFault> {
    let Ok(count) = usize::try_from(header.record_count) else {
        return Err(corrupt(
            header.base_offset,
            format!("negative record count {}", header.record_count),
        ));
    };
    let payload = payload(batch, header, options.max_decompressed)?;
    out.reserve(count.min(payload.len() / MIN_RECORD_LEN));
    let start_len = out.len();
    let mut pos = 0;
    for i in 0..count {
        if let Err(reason) = parse_record(&payload, &mut pos, header, out, fetch_offset) {
            out.truncate(start_len);
            return Err(corrupt(header.base_offset, format!("record {i} of {count}: {reason}")));
        }
    }
    if pos != payload.len() {
        out.truncate(start_len);
        return Err(corrupt(
            header.base_offset,
            format!(
                "{} bytes left over after the {count} records the header declares",
                payload.len() - pos
            ),
        ));
    }
    Ok(())
}

fn varint_reason(fault: VarintFault, what: &str) -> String {
    match fault {
        VarintFault::Truncated => format!("{what}: truncated varint"),
        VarintFault::Overflow => format!("{what}: varint overflows"),
    }
}

/// Parses one record at `*pos`; pushes it unless its offset is below `min_offset`.
fn parse_record(
    payload: &Bytes,
    pos: &mut usize,
    header: &BatchHeader,
    out: &mut Vec<Record>,
    min_offset: i64,
) -> Result<(), String> {
    let buf: &[u8] = payload;
    let length = get_varint(buf, pos).map_err(|f| varint_reason(f, "record length"))?;
    let length = usize::try_from(length).map_err(|_| format!("negative record length {length}"))?;
    let start = *pos;
    let end = start.checked_add(length).filter(|&e| e <= buf.len()).ok_or_else(|| {
        format!(
            "record length {length} at payload byte {start} runs past the {}-byte payload",
            buf.len()
        )
    })?;
    let rec = &buf[..end];
    let mut p = start;
    if p >= end {
        return Err("record is empty".into());
    }
    p += 1; // attributes
    let timestamp_delta = get_varlong(rec, &mut p).map_err(|f| varint_reason(f, "timestamp delta"))?;
    let offset_delta = get_varint(rec, &mut p).map_err(|f| varint_reason(f, "offset delta"))?;
    let key = nullable_bytes(payload, rec, &mut p, "key")?;
    let value = nullable_bytes(payload, rec, &mut p, "value")?;
    let header_count = get_varint(rec, &mut p).map_err(|f| varint_reason(f, "header count"))?;
    let header_count = usize::try_from(header_count).map_err(|_| format!("negative header count {header_count}"))?;
    let mut headers = Vec::with_capacity(header_count.min((end - p) / 2));
    for h in 0..header_count {
        let Some(key) = nullable_bytes(payload, rec, &mut p, "header key")? else {
            return Err(format!("header {h} has a null key"));
        };
        let value = nullable_bytes(payload, rec, &mut p, "header value")?;
        headers.push(RecordHeader { key, value });
    }
    if p != end {
        return Err(format!(
            "record declares {length} bytes but its fields take {}",
            p - start
        ));
    }
    *pos = end;
    let offset = header.base_offset.saturating_add(i64::from(offset_delta));
    if offset < min_offset {
        return Ok(());
    }
    let timestamp_type = header.timestamp_type();
    let timestamp = match timestamp_type {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => header.base_timestamp.wrapping_add(timestamp_delta),
    };
    out.push(Record {
        offset,
        timestamp,
        timestamp_type,
        key,
        value,
        headers,
    });
    Ok(())
}

/// Reads a varint length and that many bytes (`-1` = null) as a zero-copy slice.
fn nullable_bytes(payload: &Bytes, rec: &[u8], p: &mut usize, what: &str) -> Result<Option<Bytes>, String> {
    let len = get_varint(rec, p).map_err(|f| varint_reason(f, what))?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("{what} length {len} is invalid"))?;
    let start = *p;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= rec.len())
        .ok_or_else(|| format!("{what} of {len} bytes runs past the end of the record"))?;
    *p = end;
    Ok(Some(payload.slice(start..end)))
}

/// Why a batch could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EncodeFault {
    /// No records.
    Empty,
    /// More records or bytes than a batch can describe.
    TooLarge(String),
    /// A timestamp too far from the first record's to be stored as a delta.
    Timestamp(String),
    /// The codec failed.
    Codec(String),
}

impl std::fmt::Display for EncodeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeFault::Empty => f.write_str("a record batch needs at least one record"),
            EncodeFault::TooLarge(s) | EncodeFault::Timestamp(s) | EncodeFault::Codec(s) => f.write_str(s),
        }
    }
}

/// An encoded batch whose producer id, epoch, base sequence and CRC are not filled in yet.
#[derive(Debug, Clone)]
pub(crate) struct UnsealedBatch {
    bytes: Vec<u8>,
    record_count: i32,
}

impl UnsealedBatch {
    /// Number of records in the batch.
    pub(crate) fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Fills in the producer fields, computes the CRC and returns the finished batch.
    pub(crate) fn seal(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Bytes {
        let b = &mut self.bytes;
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
        b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(self.bytes)
    }
}

/// Encodes `records` as one batch (base offset 0, `CreateTime`, not transactional), compressed
/// with `codec`. The base timestamp is the first record's, like the Java producer.
pub(crate) fn encode_batch(records: &[ProduceRecord], codec: Codec) -> Result<UnsealedBatch, EncodeFault> {
    let Some(first) = records.first() else {
        return Err(EncodeFault::Empty);
    };
    let record_count = i32::try_from(records.len())
        .map_err(|_| EncodeFault::TooLarge(format!("{} records do not fit one batch", records.len())))?;
    let base_timestamp = first.timestamp;
    let mut max_timestamp = base_timestamp;
    let mut plain = Vec::with_capacity(records.iter().map(approximate_size).sum());
    for (i, record) in records.iter().enumerate() {
        max_timestamp = max_timestamp.max(record.timestamp);
        let delta = record.timestamp.checked_sub(base_timestamp).ok_or_else(|| {
            EncodeFault::Timestamp(format!(
                "record {i}: timestamp {} is too far from the first record's {base_timestamp}",
                record.timestamp
            ))
        })?;
        put_record(&mut plain, record, delta, i as i32)
            .map_err(|what| EncodeFault::TooLarge(format!("record {i}: {what} is larger than {} bytes", i32::MAX)))?;
    }
    let mut bytes = Vec::with_capacity(
        HEADER_LEN
            + if codec == Codec::None {
                plain.len()
            } else {
                plain.len() / 2
            },
    );
    bytes.resize(HEADER_LEN, 0);
    compression::compress(codec, &plain, &mut bytes).map_err(|e| EncodeFault::Codec(e.to_string()))?;
    let batch_length = i32::try_from(bytes.len() - LOG_OVERHEAD)
        .map_err(|_| EncodeFault::TooLarge(format!("batch of {} bytes", bytes.len())))?;
    bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
    bytes[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch: set by the broker
    bytes[16] = 2;
    bytes[21..23].copy_from_slice(&(codec as i16).to_be_bytes());
    bytes[23..27].copy_from_slice(&(record_count - 1).to_be_bytes());
    bytes[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    bytes[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    bytes[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    bytes[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    bytes[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    bytes[57..61].copy_from_slice(&record_count.to_be_bytes());
    Ok(UnsealedBatch { bytes, record_count })
}

fn approximate_size(record: &ProduceRecord) -> usize {
    let bytes = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len) + 5;
    16 + bytes(&record.key)
        + bytes(&record.value)
        + record
            .headers
            .iter()
            .map(|h| h.key.len() + 5 + bytes(&h.value))
            .sum::<usize>()
}

fn nullable_len(b: &Option<Bytes>) -> Result<(i32, usize), &'static str> {
    match b {
        None => Ok((-1, 0)),
        Some(b) => i32::try_from(b.len()).map(|n| (n, b.len())).map_err(|_| "a field"),
    }
}

fn put_record(
    out: &mut Vec<u8>,
    record: &ProduceRecord,
    timestamp_delta: i64,
    offset_delta: i32,
) -> Result<(), &'static str> {
    let (key_len, key_size) = nullable_len(&record.key)?;
    let (value_len, value_size) = nullable_len(&record.value)?;
    let header_count = i32::try_from(record.headers.len()).map_err(|_| "the header count")?;
    let mut body: usize = 1
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + varint_len(key_len)
        + key_size
        + varint_len(value_len)
        + value_size
        + varint_len(header_count);
    for h in &record.headers {
        let hk_size = h.key.len();
        let hk = i32::try_from(hk_size).map_err(|_| "a header key")?;
        let (hv, hv_size) = nullable_len(&h.value)?;
        body = body.saturating_add(varint_len(hk) + hk_size + varint_len(hv) + hv_size);
    }
    let body_len = i32::try_from(body).map_err(|_| "the record")?;
    put_varint(out, body_len);
    out.push(0);
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_varint(out, key_len);
    if let Some(k) = &record.key {
        out.extend_from_slice(k);
    }
    put_varint(out, value_len);
    if let Some(v) = &record.value {
        out.extend_from_slice(v);
    }
    put_varint(out, header_count);
    for h in &record.headers {
        put_varint(out, h.key.len() as i32); // checked above
        out.extend_from_slice(&h.key);
        match &h.value {
            None => put_varint(out, -1),
            Some(v) => {
                put_varint(out, v.len() as i32);
                out.extend_from_slice(v);
            }
        }
    }
    Ok(())
}
