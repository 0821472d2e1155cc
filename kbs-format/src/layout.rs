//! Fixed-width structures of a segment: header, footer and batch header.
//!
//! All fixed-width integers are little-endian.
//!
//! ```text
//! Segment = header (32 bytes) · batch 1 · … · batch N · footer (16 bytes)
//! Encrypted (flag bit 1): header · key block · batches · sealed trailer (40) · footer
//! (layouts of the key block and trailer: the `crypto` module)
//!
//! Header (32 bytes)
//! +-----+------+--------------------------------------------------------------+
//! | off | size | field                                                        |
//! +-----+------+--------------------------------------------------------------+
//! |   0 |    4 | magic "KBS1"                                                 |
//! |   4 |    1 | version = 1                                                  |
//! |   5 |    1 | compression: 0 = none, 1 = lz4, 2 = zstd                     |
//! |   6 |    2 | flags: bit 0 = per-record CRC-32, bit 1 = encrypted (1.1);   |
//! |     |      |   other bits must be 0                                       |
//! |   8 |    8 | first offset (i64)                                           |
//! |  16 |    8 | record count (u64)                                           |
//! |  24 |    8 | CRC-64/XZ of bytes 32..end (footer included)                 |
//! +-----+------+--------------------------------------------------------------+
//!
//! Batch header (24 bytes), followed by `compressed size` payload bytes
//! +-----+------+--------------------------------------------------------------+
//! |   0 |    8 | base offset (i64)                                            |
//! |   8 |    4 | record count (u32, >= 1)                                     |
//! |  12 |    4 | compressed size (u32); encrypted: the sealed size (+16)      |
//! |  16 |    4 | uncompressed size (u32)                                      |
//! |  20 |    4 | CRC-32 (ISO-HDLC) of the compressed payload                  |
//! +-----+------+--------------------------------------------------------------+
//!
//! Footer (16 bytes)
//! +-----+------+--------------------------------------------------------------+
//! |   0 |    8 | last offset (i64)                                            |
//! |   8 |    4 | CRC-32 (ISO-HDLC) of header bytes 0..24                      |
//! |  12 |    4 | end magic "1SBK"                                             |
//! +-----+------+--------------------------------------------------------------+
//! ```

use crate::error::FormatError;

/// CRC-64/XZ, computed incrementally (check value of `123456789`: `0x995dc9bbdf1939fa`).
#[derive(Clone)]
pub(crate) struct Crc64(crc_fast::Digest);

impl Crc64 {
    pub(crate) fn new() -> Self {
        Crc64(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz))
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn sum64(&self) -> u64 {
        self.0.finalize()
    }
}

/// Magic bytes at the start of every segment.
pub const MAGIC: [u8; 4] = *b"KBS1";
/// Magic bytes at the end of every segment.
pub const END_MAGIC: [u8; 4] = *b"1SBK";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of the segment footer in bytes.
pub const SEGMENT_FOOTER_LEN: usize = 16;
/// Size of a batch header in bytes.
pub const BATCH_HEADER_LEN: usize = 24;

/// Header flag bit 0: every record is followed by the CRC-32 of its bytes.
pub(crate) const FLAG_PER_RECORD_CRC: u16 = 1;
/// Flag bit 1 (format 1.1): batch payloads are sealed; a key block follows the header and a
/// sealed trailer precedes the footer (see the `crypto` module).
pub(crate) const FLAG_ENCRYPTED: u16 = 2;
const KNOWN_FLAGS: u16 = FLAG_PER_RECORD_CRC | FLAG_ENCRYPTED;

/// The codec that compresses every batch payload of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Payloads are stored as they are (code 0).
    None,
    /// Each payload is one raw LZ4 block without a size prefix (code 1).
    Lz4,
    /// Each payload is one standard zstd frame (code 2).
    #[default]
    Zstd,
}

impl Compression {
    /// The code stored in header byte 5.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The codec for a header code.
    pub fn from_code(code: u8) -> Result<Self, FormatError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            code => Err(FormatError::UnknownCompression { code }),
        }
    }

    /// The lowercase name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(FormatError::InvalidOption(format!(
                "unknown compression {other:?} (expected none, lz4 or zstd)"
            ))),
        }
    }
}

/// The decoded 32-byte segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Codec of every batch payload.
    pub compression: Compression,
    /// Whether every record is followed by its CRC-32 (flag bit 0).
    pub per_record_crc: bool,
    /// Whether the batch payloads are encrypted (flag bit 1, format 1.1).
    pub encrypted: bool,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Number of records in the segment.
    pub record_count: u64,
    /// CRC-64/XZ of every byte from 32 to the end of the segment.
    pub crc64: u64,
}

impl SegmentHeader {
    /// Encodes the header into its 32 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = self.compression.code();
        let mut flags = if self.per_record_crc { FLAG_PER_RECORD_CRC } else { 0 };
        if self.encrypted {
            flags |= FLAG_ENCRYPTED;
        }
        out[6..8].copy_from_slice(&flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.first_offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        out[24..32].copy_from_slice(&self.crc64.to_le_bytes());
        out
    }

    /// Decodes and checks a header: magic, version, compression code and flags.
    ///
    /// The CRC-64 is returned, not checked: that needs the rest of the segment.
    pub fn decode(bytes: &[u8; SEGMENT_HEADER_LEN]) -> Result<Self, FormatError> {
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { version: bytes[4] });
        }
        let compression = Compression::from_code(bytes[5])?;
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FormatError::UnknownFlags {
                unknown: flags & !KNOWN_FLAGS,
            });
        }
        Ok(SegmentHeader {
            compression,
            per_record_crc: flags & FLAG_PER_RECORD_CRC != 0,
            encrypted: flags & FLAG_ENCRYPTED != 0,
            first_offset: read_i64(&bytes[8..16]),
            record_count: read_u64(&bytes[16..24]),
            crc64: read_u64(&bytes[24..32]),
        })
    }
}

/// The CRC-32 of header bytes 0–23 that the footer stores.
pub(crate) fn header_crc32(header: &[u8; SEGMENT_HEADER_LEN]) -> u32 {
    crc32fast::hash(&header[..24])
}

/// The decoded 16-byte segment footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFooter {
    /// Offset of the last record.
    pub last_offset: i64,
    /// CRC-32 of header bytes 0–23.
    pub header_crc32: u32,
}

impl SegmentFooter {
    /// Encodes the footer into its 16 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_FOOTER_LEN] {
        let mut out = [0u8; SEGMENT_FOOTER_LEN];
        out[0..8].copy_from_slice(&self.last_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.header_crc32.to_le_bytes());
        out[12..16].copy_from_slice(&END_MAGIC);
        out
    }

    /// Decodes a footer found at byte `position` of the segment and checks its end magic.
    pub fn decode(bytes: &[u8; SEGMENT_FOOTER_LEN], position: u64) -> Result<Self, FormatError> {
        let magic = [bytes[12], bytes[13], bytes[14], bytes[15]];
        if magic != END_MAGIC {
            return Err(FormatError::BadEndMagic {
                position: position + 12,
                found: magic,
            });
        }
        Ok(SegmentFooter {
            last_offset: read_i64(&bytes[0..8]),
            header_crc32: read_u32(&bytes[8..12]),
        })
    }

    /// Checks that this footer's header CRC-32 matches `header`.
    pub(crate) fn check_header(&self, header: &[u8; SEGMENT_HEADER_LEN], position: u64) -> Result<(), FormatError> {
        let computed = header_crc32(header);
        if computed != self.header_crc32 {
            return Err(FormatError::HeaderChecksumMismatch {
                position,
                stored: self.header_crc32,
                computed,
            });
        }
        Ok(())
    }
}

/// Reads and checks the header and footer of a segment from its first 32 and last 16 bytes,
/// without touching the batches: magic, version, codec, flags, end magic and the footer's
/// CRC-32 of the header.
///
/// `segment_len` is the segment's total length, used for positions in errors. The CRC-64 of
/// the body is not checked (it needs every byte); [`SegmentReader`](crate::SegmentReader) and
/// [`verify_segment`](crate::verify_segment) check it.
pub fn decode_header_and_footer(
    head: &[u8; SEGMENT_HEADER_LEN],
    tail: &[u8; SEGMENT_FOOTER_LEN],
    segment_len: u64,
) -> Result<(SegmentHeader, SegmentFooter), FormatError> {
    let header = SegmentHeader::decode(head)?;
    let footer_position = segment_len.saturating_sub(SEGMENT_FOOTER_LEN as u64);
    let footer = SegmentFooter::decode(tail, footer_position)?;
    footer.check_header(head, footer_position)?;
    Ok((header, footer))
}

/// The decoded 24-byte header of a record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Base offset; every record stores its offset as a delta from it.
    pub base_offset: i64,
    /// Number of records in the batch (at least 1).
    pub record_count: u32,
    /// Size of the compressed payload that follows the header.
    pub compressed_size: u32,
    /// Size of the payload after decompression.
    pub uncompressed_size: u32,
    /// CRC-32 (ISO-HDLC) of the compressed payload.
    pub crc32: u32,
}

impl BatchHeader {
    /// Encodes the batch header into its 24 bytes.
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        out[0..8].copy_from_slice(&self.base_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.record_count.to_le_bytes());
        out[12..16].copy_from_slice(&self.compressed_size.to_le_bytes());
        out[16..20].copy_from_slice(&self.uncompressed_size.to_le_bytes());
        out[20..24].copy_from_slice(&self.crc32.to_le_bytes());
        out
    }

    /// Decodes a batch header found at byte `position`, checking what the header alone can
    /// tell: at least one record, and equal sizes when the codec is none.
    pub fn decode(
        bytes: &[u8; BATCH_HEADER_LEN],
        compression: Compression,
        position: u64,
    ) -> Result<Self, FormatError> {
        Self::decode_sized(bytes, compression, false, position)
    }

    /// [`decode`](Self::decode) for a segment that may be encrypted: a sealed payload is 16
    /// bytes (the tag) longer than the compressed one.
    pub(crate) fn decode_sized(
        bytes: &[u8; BATCH_HEADER_LEN],
        compression: Compression,
        encrypted: bool,
        position: u64,
    ) -> Result<Self, FormatError> {
        let header = BatchHeader {
            base_offset: read_i64(&bytes[0..8]),
            record_count: read_u32(&bytes[8..12]),
            compressed_size: read_u32(&bytes[12..16]),
            uncompressed_size: read_u32(&bytes[16..20]),
            crc32: read_u32(&bytes[20..24]),
        };
        if header.record_count == 0 {
            return Err(FormatError::InvalidBatch {
                position,
                reason: crate::error::BatchFault::NoRecords,
            });
        }
        let tag = if encrypted { crate::crypto::TAG_LEN as u32 } else { 0 };
        let stored_ok = match compression {
            Compression::None => header.uncompressed_size.checked_add(tag) == Some(header.compressed_size),
            _ => header.compressed_size >= tag,
        };
        if !stored_ok {
            return Err(FormatError::InvalidBatch {
                position,
                reason: crate::error::BatchFault::SizeMismatch {
                    compressed: header.compressed_size,
                    uncompressed: header.uncompressed_size,
                },
            });
        }
        Ok(header)
    }
}

fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read_i64(b: &[u8]) -> i64 {
    read_u64(b) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let header = SegmentHeader {
            compression: Compression::Lz4,
            per_record_crc: true,
            encrypted: false,
            first_offset: 42,
            record_count: 7,
            crc64: 0x0123_4567_89ab_cdef,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);

        let mut bad = bytes;
        bad[4] = 2;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(FormatError::UnsupportedVersion { version: 2 })
        ));
        let mut bad = bytes;
        bad[5] = 9;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(FormatError::UnknownCompression { code: 9 })
        ));
        let mut bad = bytes;
        bad[7] = 0x80;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(FormatError::UnknownFlags { unknown: 0x8000 })
        ));
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(matches!(SegmentHeader::decode(&bad), Err(FormatError::BadMagic { .. })));
    }

    #[test]
    fn crc64_check_value() {
        let mut digest = Crc64::new();
        digest.write(b"1234");
        digest.write(b"56789");
        assert_eq!(digest.sum64(), 0x995d_c9bb_df19_39fa);
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }
}
