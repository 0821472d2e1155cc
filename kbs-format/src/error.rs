//! The one error type of this crate.

use crate::Compression;

/// Everything that can go wrong while writing, reading or verifying a segment.
///
/// Positions are byte offsets from the start of the segment. Errors inside a batch's
/// (decompressed) payload carry both the batch's position and the offset within the payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The segment is shorter than a header plus a footer.
    #[error("segment is {len} bytes, shorter than the 48-byte minimum (32-byte header + 16-byte footer)")]
    TooShort {
        /// Length of the input in bytes.
        len: u64,
    },
    /// The first four bytes are not `KBS1`.
    #[error("bad magic at byte 0: expected \"KBS1\" (4b 42 53 31), found {found:02x?}")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The header names a format version this reader does not know.
    #[error("unsupported segment format version {version} at byte 4 (this reader supports version 1)")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The header names a compression code this reader does not know.
    #[error("unknown compression code {code} at byte 5 (known: 0 = none, 1 = lz4, 2 = zstd)")]
    UnknownCompression {
        /// The compression byte found.
        code: u8,
    },
    /// The header sets flag bits that version 1 does not define.
    #[error(
        "unknown flag bits {unknown:#06x} at byte 6 (this reader knows bit 0, per-record CRC, and bit 1, encrypted)"
    )]
    UnknownFlags {
        /// The undefined bits that are set.
        unknown: u16,
    },
    /// The last four bytes are not `1SBK`.
    #[error("bad end magic at byte {position}: expected \"1SBK\" (31 53 42 4b), found {found:02x?}")]
    BadEndMagic {
        /// Position of the end magic.
        position: u64,
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The footer's CRC-32 of header bytes 0–23 does not match the header.
    #[error(
        "header checksum mismatch: footer at byte {position} stores CRC-32 {stored:#010x}, header bytes 0-23 hash to {computed:#010x}"
    )]
    HeaderChecksumMismatch {
        /// Position of the footer.
        position: u64,
        /// CRC-32 stored in the footer.
        stored: u32,
        /// CRC-32 computed over header bytes 0–23.
        computed: u32,
    },
    /// The header's CRC-64 does not match bytes 32 to the end.
    #[error("segment checksum mismatch: header stores CRC-64 {stored:#018x}, bytes 32..{end} hash to {computed:#018x}")]
    SegmentChecksumMismatch {
        /// CRC-64 stored in the header.
        stored: u64,
        /// CRC-64 computed over the body and footer.
        computed: u64,
        /// Length of the segment (end of the checksummed range).
        end: u64,
    },
    /// The input ended inside a structure.
    #[error("unexpected end of segment at byte {position}: {what} needs {needed} more bytes")]
    UnexpectedEnd {
        /// Where the missing bytes should have started.
        position: u64,
        /// Which structure was being read.
        what: &'static str,
        /// How many more bytes were needed.
        needed: u64,
    },
    /// A batch's CRC-32 does not match its compressed payload.
    #[error(
        "batch checksum mismatch: batch at byte {position} stores CRC-32 {stored:#010x}, its payload hashes to {computed:#010x}"
    )]
    BatchChecksumMismatch {
        /// Position of the batch header.
        position: u64,
        /// CRC-32 stored in the batch header.
        stored: u32,
        /// CRC-32 computed over the payload.
        computed: u32,
    },
    /// A batch header is not valid.
    #[error("invalid batch at byte {position}: {reason}")]
    InvalidBatch {
        /// Position of the batch header.
        position: u64,
        /// What is wrong.
        reason: BatchFault,
    },
    /// A batch's size exceeds the reader's allocation limit.
    #[error("batch at byte {position} declares {size} {what} bytes, over the limit of {limit}")]
    BatchTooLarge {
        /// Position of the batch header.
        position: u64,
        /// Which size: "compressed" or "uncompressed".
        what: &'static str,
        /// The declared size.
        size: u32,
        /// The configured limit.
        limit: u32,
    },
    /// The compressed payload could not be decompressed.
    #[error("batch at byte {position}: {codec} payload does not decompress: {message}")]
    Decompress {
        /// Position of the batch header.
        position: u64,
        /// The segment's codec.
        codec: Compression,
        /// What the codec reported.
        message: String,
    },
    /// A record inside a batch payload is malformed.
    #[error("invalid record in batch at byte {batch_position}, payload byte {payload_offset}: {fault}")]
    InvalidRecord {
        /// Position of the batch header.
        batch_position: u64,
        /// Offset within the batch's uncompressed payload.
        payload_offset: u64,
        /// What is wrong.
        fault: RecordFault,
    },
    /// Record offsets do not strictly increase.
    #[error("offset order violated in batch at byte {batch_position}: offset {found} follows {previous}")]
    OffsetOrder {
        /// Position of the batch header.
        batch_position: u64,
        /// The previous record's offset.
        previous: i64,
        /// The offending offset.
        found: i64,
    },
    /// A header or footer field disagrees with the records.
    #[error("segment {field} is {stored} but the records give {actual}")]
    SummaryMismatch {
        /// Which field: "first offset", "last offset" or "record count".
        field: &'static str,
        /// The stored value.
        stored: i128,
        /// The value derived from the records.
        actual: i128,
    },
    /// Bytes follow the last batch before the footer, or follow the footer in a stream.
    #[error("{len} unexpected bytes at byte {position} after the last batch")]
    TrailingBytes {
        /// Where the extra bytes start.
        position: u64,
        /// How many there are (a lower bound for streams).
        len: u64,
    },
    /// A writer was finished with no records; a segment holds at least one.
    #[error("a segment must hold at least one record")]
    EmptySegment,
    /// A record given to the writer is invalid.
    #[error("record with offset {offset} cannot be written: {reason}")]
    InvalidInputRecord {
        /// The record's offset.
        offset: i64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A writer option is out of range.
    #[error("invalid writer option: {0}")]
    InvalidOption(String),
    /// The compressor failed.
    #[error("{codec} compression failed: {message}")]
    Compress {
        /// The segment's codec.
        codec: Compression,
        /// What the codec reported.
        message: String,
    },
    /// An age key or identity could not be parsed (the message never quotes a secret).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The segment is encrypted and no identity was given to read its records.
    #[error("the segment is encrypted (format 1.1): reading its records needs an age identity")]
    KeyRequired,
    /// None of the given identities is a recipient of the segment's data key.
    #[error("none of the given identities is a recipient of this segment's data key")]
    NoMatchingIdentity,
    /// The key block of an encrypted segment is malformed.
    #[error("invalid key block at byte 32: {reason}")]
    InvalidKeyBlock {
        /// What is wrong.
        reason: String,
    },
    /// An authentication tag failed: the bytes were changed, moved, cut or spliced, or belong
    /// to another segment.
    #[error("authentication failed for the {what} at byte {position}: the encrypted segment was altered")]
    AuthenticationFailed {
        /// Position of the batch header or trailer.
        position: u64,
        /// "batch" or "trailer".
        what: &'static str,
    },
    /// Reading or writing the underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What is wrong with a batch header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchFault {
    /// The record count is zero.
    #[error("record count is 0 (a batch holds at least one record)")]
    NoRecords,
    /// With compression "none", the stored size is not the uncompressed size (plus the 16-byte
    /// tag when encrypted), or a sealed payload is shorter than its tag.
    #[error(
        "stored size {compressed} does not fit uncompressed size {uncompressed} (equal with compression none, plus the 16-byte tag when encrypted)"
    )]
    SizeMismatch {
        /// Compressed size from the header.
        compressed: u32,
        /// Uncompressed size from the header.
        uncompressed: u32,
    },
    /// Decompression produced a different number of bytes than the header says.
    #[error("payload decompresses to {actual} bytes, header says {declared}")]
    UncompressedSize {
        /// Uncompressed size from the header.
        declared: u32,
        /// Bytes produced.
        actual: u64,
    },
    /// The payload holds fewer records than the header says.
    #[error("payload ends after {found} records, header says {declared}")]
    MissingRecords {
        /// Record count from the header.
        declared: u32,
        /// Records found.
        found: u32,
    },
    /// The segment header's record count is reached before this batch.
    #[error("batch would exceed the segment's record count of {declared}")]
    ExcessRecords {
        /// Record count from the segment header.
        declared: u64,
    },
}

/// What is wrong with a record inside a batch payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordFault {
    /// The payload ends inside the record.
    #[error("payload ends inside the record")]
    Truncated,
    /// A varint is longer than 5 bytes (10 for a varlong) or carries bits beyond its width.
    #[error("varint too long or out of range")]
    VarintOverflow,
    /// A varint is not in its shortest form.
    #[error("varint not in canonical (shortest) form")]
    NonCanonicalVarint,
    /// A length field is below its minimum.
    #[error("{field} length {length} is invalid")]
    InvalidLength {
        /// Which length: "key", "value", "header count", "header key" or "header value".
        field: &'static str,
        /// The decoded length.
        length: i32,
    },
    /// The offset delta is negative or makes the offset overflow.
    #[error("offset delta {delta} is invalid for base offset {base_offset}")]
    InvalidOffsetDelta {
        /// The batch base offset.
        base_offset: i64,
        /// The decoded delta.
        delta: i32,
    },
    /// The timestamp delta overflows when added to the batch's first timestamp.
    #[error("timestamp delta {delta} overflows the first timestamp {first}")]
    TimestampOverflow {
        /// The batch's first timestamp.
        first: i64,
        /// The decoded delta.
        delta: i64,
    },
    /// The per-record CRC-32 does not match.
    #[error("record CRC-32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The stored CRC-32.
        stored: u32,
        /// The computed CRC-32.
        computed: u32,
    },
    /// Bytes remain in the payload after the declared number of records.
    #[error("{len} bytes remain after the last record")]
    TrailingBytes {
        /// How many bytes remain.
        len: u64,
    },
}
