//! Writing segments.

use std::io::{Cursor, Seek, SeekFrom, Write};

use crate::Compression;
use crate::batch::{DEFAULT_MAX_BATCH_BYTES, SegmentSummary, Totals};
use crate::codec::Compressor;
use crate::crypto::{Recipients, SegmentCipher, TAG_LEN, TRAILER_LEN, TrailerTimes};
use crate::error::FormatError;
use crate::layout::{BatchHeader, SEGMENT_HEADER_LEN, SegmentFooter, SegmentHeader};
use crate::record::{Record, encode_record, encoded_len_bound};

/// Default target size of a batch's uncompressed payload for zstd and none: 1 MiB.
pub const DEFAULT_TARGET_BATCH_BYTES: usize = 1 << 20;
/// Default target size of a batch's uncompressed payload for LZ4: 64 KiB, LZ4's match window.
/// Larger LZ4 batches compress no better, and a batch this size stays in the CPU's cache
/// between decompression and record validation.
pub const DEFAULT_LZ4_TARGET_BATCH_BYTES: usize = 64 << 10;
/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How a [`SegmentWriter`] encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    compression: Compression,
    zstd_level: i32,
    /// `None` = the codec's default.
    target_batch_bytes: Option<usize>,
    per_record_crc: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression: Compression::Zstd,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            target_batch_bytes: None,
            per_record_crc: false,
        }
    }
}

impl WriterOptions {
    /// Default options with the given codec.
    pub fn new(compression: Compression) -> Self {
        WriterOptions {
            compression,
            ..Self::default()
        }
    }

    /// Sets the zstd level (1–22; default 3). Checked when the writer is created.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Sets the uncompressed size at which a batch is closed (default
    /// [`DEFAULT_LZ4_TARGET_BATCH_BYTES`] for LZ4, [`DEFAULT_TARGET_BATCH_BYTES`] otherwise). A
    /// batch exceeds it only by its last record; values above the 256 MiB batch limit are capped.
    pub fn target_batch_bytes(mut self, bytes: usize) -> Self {
        self.target_batch_bytes = Some(bytes);
        self
    }

    /// The uncompressed size at which a batch is closed: the one set, or the codec's default.
    fn batch_bytes(&self) -> usize {
        self.target_batch_bytes.unwrap_or(match self.compression {
            Compression::Lz4 => DEFAULT_LZ4_TARGET_BATCH_BYTES,
            _ => DEFAULT_TARGET_BATCH_BYTES,
        })
    }

    /// Follows every record with its own CRC-32 (header flag bit 0).
    pub fn per_record_crc(mut self, on: bool) -> Self {
        self.per_record_crc = on;
        self
    }

    /// The codec.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    fn validate(&self) -> Result<(), FormatError> {
        if self.compression == Compression::Zstd && !(1..=22).contains(&self.zstd_level) {
            return Err(FormatError::InvalidOption(format!(
                "zstd level {} is outside 1..=22",
                self.zstd_level
            )));
        }
        if self.batch_bytes() == 0 {
            return Err(FormatError::InvalidOption(
                "target batch bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The batch being filled: at most one batch is ever held uncompressed.
struct OpenBatch {
    records: Vec<u8>,
    count: u32,
    base_offset: i64,
    first_timestamp: i64,
}

/// Streams records into a segment on any `Write + Seek`.
///
/// The writer reserves the 32-byte header with zeros, appends batches as they fill, and at
/// [`finish`](Self::finish) writes the footer and seeks back to patch the header. A segment
/// left unfinished (a crash) has an all-zero header and is rejected by every reader.
///
/// ```
/// use bytes::Bytes;
/// use kbs_format::{Compression, Record, SegmentReader, SegmentWriter, WriterOptions};
///
/// let mut writer = SegmentWriter::in_memory(WriterOptions::new(Compression::Lz4))?;
/// writer.append(&Record { offset: 7, timestamp: 1_700_000_000_000, value: Some(Bytes::from("v")), ..Record::default() })?;
/// let (cursor, summary) = writer.finish()?;
/// assert_eq!((summary.first_offset, summary.record_count), (7, 1));
///
/// let reader = SegmentReader::new(Bytes::from(cursor.into_inner()))?;
/// assert_eq!(reader.to_records()?[0].value.as_deref(), Some(&b"v"[..]));
/// # Ok::<(), kbs_format::FormatError>(())
/// ```
pub struct SegmentWriter<W: Write + Seek> {
    out: W,
    start: u64,
    options: WriterOptions,
    target_batch_bytes: usize,
    compressor: Compressor,
    batch: OpenBatch,
    digest: crate::layout::Crc64,
    written: u64,
    totals: Totals,
    /// The segment's AEAD when encrypted, with its buffer for sealed payloads.
    sealing: Option<(SegmentCipher, Vec<u8>)>,
}

impl SegmentWriter<Cursor<Vec<u8>>> {
    /// A writer into memory; [`finish`](Self::finish) returns the cursor holding the segment.
    pub fn in_memory(options: WriterOptions) -> Result<Self, FormatError> {
        Self::new(Cursor::new(Vec::new()), options)
    }

    /// An encrypting writer into memory (see [`SegmentWriter::new_encrypted`]).
    pub fn in_memory_encrypted(options: WriterOptions, recipients: &Recipients) -> Result<Self, FormatError> {
        Self::new_encrypted(Cursor::new(Vec::new()), options, recipients)
    }

    /// Bytes the in-memory segment holds allocated: the buffer's capacity (which grows ahead
    /// of [`SegmentWriter::estimated_size`]) plus the open batch. What a caller bounding its
    /// memory should count.
    pub fn allocated_bytes(&self) -> u64 {
        self.out.get_ref().capacity() as u64 + self.batch.records.capacity() as u64
    }
}

impl<W: Write + Seek> SegmentWriter<W> {
    /// Starts a segment at the current position of `out`.
    pub fn new(out: W, options: WriterOptions) -> Result<Self, FormatError> {
        Self::start(out, options, None)
    }

    /// Starts an encrypted segment (format 1.1) at the current position of `out`: a new random
    /// data key, wrapped to `recipients` in the key block, seals every batch payload with
    /// ChaCha20-Poly1305. Reading it back needs one of the recipients' identities.
    pub fn new_encrypted(out: W, options: WriterOptions, recipients: &Recipients) -> Result<Self, FormatError> {
        Self::start(out, options, Some(recipients))
    }

    fn start(mut out: W, options: WriterOptions, recipients: Option<&Recipients>) -> Result<Self, FormatError> {
        options.validate()?;
        let compressor = Compressor::new(options.compression, options.zstd_level)?;
        let start = out.stream_position()?;
        out.write_all(&[0u8; SEGMENT_HEADER_LEN])?;
        let mut digest = crate::layout::Crc64::new();
        let mut written = SEGMENT_HEADER_LEN as u64;
        let sealing = match recipients {
            Some(recipients) => {
                let (cipher, block) = crate::crypto::new_key_block(recipients)?;
                out.write_all(&block)?;
                digest.write(&block);
                written += block.len() as u64;
                Some((cipher, Vec::new()))
            }
            None => None,
        };
        Ok(SegmentWriter {
            out,
            start,
            options,
            target_batch_bytes: options.batch_bytes().min(DEFAULT_MAX_BATCH_BYTES as usize),
            compressor,
            batch: OpenBatch {
                records: Vec::new(),
                count: 0,
                base_offset: 0,
                first_timestamp: 0,
            },
            digest,
            written,
            totals: Totals::default(),
            sealing,
        })
    }

    /// Appends a record. Offsets must strictly increase; timestamps may go in any order.
    pub fn append(&mut self, record: &Record) -> Result<(), FormatError> {
        let offset = record.offset;
        if self.totals.first_offset.is_some() && offset <= self.totals.last_offset {
            return Err(FormatError::InvalidInputRecord {
                offset,
                reason: "offsets must strictly increase within a segment",
            });
        }
        let bound = encoded_len_bound(record);
        if bound > u64::from(DEFAULT_MAX_BATCH_BYTES) {
            return Err(FormatError::InvalidInputRecord {
                offset,
                reason: "record is larger than the 256 MiB batch limit",
            });
        }
        if self.batch.count > 0 {
            let offset_delta = offset
                .checked_sub(self.batch.base_offset)
                .and_then(|d| i32::try_from(d).ok());
            let timestamp_fits = record.timestamp.checked_sub(self.batch.first_timestamp).is_some();
            let too_big = self.batch.records.len() as u64 + bound > u64::from(DEFAULT_MAX_BATCH_BYTES);
            if offset_delta.is_none() || !timestamp_fits || too_big || self.batch.count == u32::MAX {
                self.flush_batch()?;
            }
        }
        if self.batch.count == 0 {
            self.batch.base_offset = offset;
            self.batch.first_timestamp = record.timestamp;
        }
        let offset_delta = (offset - self.batch.base_offset) as i32;
        let timestamp_delta = if self.batch.count == 0 {
            record.timestamp
        } else {
            record.timestamp - self.batch.first_timestamp
        };
        encode_record(
            &mut self.batch.records,
            record,
            offset_delta,
            timestamp_delta,
            self.options.per_record_crc,
        );
        self.batch.count += 1;
        self.totals.add_record(offset, record.timestamp);
        if self.batch.records.len() >= self.target_batch_bytes {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// The options this writer encodes with.
    pub fn options(&self) -> WriterOptions {
        self.options
    }

    /// Number of records appended so far.
    pub fn record_count(&self) -> u64 {
        self.totals.record_count
    }

    /// Bytes written so far plus the uncompressed size of the open batch: an upper estimate of
    /// the segment's size if finished now, for rolling segments by size.
    pub fn estimated_size(&self) -> u64 {
        let sealing = if self.sealing.is_some() {
            TAG_LEN + TRAILER_LEN
        } else {
            0
        };
        self.written + self.batch.records.len() as u64 + 24 + 16 + sealing as u64
    }

    /// The header as it will be written, with the record count so far and no CRC-64.
    fn header(&self, first_offset: i64) -> SegmentHeader {
        SegmentHeader {
            compression: self.options.compression,
            per_record_crc: self.options.per_record_crc,
            encrypted: self.sealing.is_some(),
            first_offset,
            record_count: self.totals.record_count,
            crc64: 0,
        }
    }

    /// Compresses (and seals, when encrypting) and writes the open batch, if any.
    fn flush_batch(&mut self) -> Result<(), FormatError> {
        if self.batch.count == 0 {
            return Ok(());
        }
        let segment_head = self
            .sealing
            .is_some()
            .then(|| crate::batch::segment_head(&self.header(self.totals.first_offset.unwrap_or_default())));
        let batch = &mut self.batch;
        let compressed = self.compressor.compress(&batch.records)?;
        let too_large = || FormatError::Compress {
            codec: self.options.compression,
            message: "compressed batch exceeds 4 GiB".into(),
        };
        let mut header = BatchHeader {
            base_offset: batch.base_offset,
            record_count: batch.count,
            compressed_size: 0,
            uncompressed_size: batch.records.len() as u32,
            crc32: 0,
        };
        let payload: &[u8] = match (&mut self.sealing, segment_head) {
            (Some((cipher, sealed)), Some(segment_head)) => {
                header.compressed_size = u32::try_from(compressed.len() + TAG_LEN).map_err(|_| too_large())?;
                let head = header.encode();
                sealed.clear();
                sealed.extend_from_slice(compressed);
                let batch_head: &[u8; 20] = head[..20].try_into().expect("20 bytes");
                cipher.seal_batch(self.totals.batch_count, &segment_head, batch_head, sealed);
                sealed
            }
            _ => {
                header.compressed_size = u32::try_from(compressed.len()).map_err(|_| too_large())?;
                compressed
            }
        };
        header.crc32 = crc32fast::hash(payload);
        let header = header.encode();
        self.out.write_all(&header)?;
        self.out.write_all(payload)?;
        self.digest.write(&header);
        self.digest.write(payload);
        self.written += (header.len() + payload.len()) as u64;
        self.totals.batch_count += 1;
        self.totals.uncompressed_bytes += batch.records.len() as u64;
        batch.records.clear();
        batch.count = 0;
        Ok(())
    }

    /// Writes the last batch and the footer, patches the header, flushes, and returns the
    /// output (positioned at the segment's end) with what the segment holds.
    ///
    /// A segment holds at least one record: finishing an empty writer is an error.
    pub fn finish(mut self) -> Result<(W, SegmentSummary), FormatError> {
        let Some(first_offset) = self.totals.first_offset else {
            return Err(FormatError::EmptySegment);
        };
        self.flush_batch()?;
        let mut header = self.header(first_offset);
        if let Some((cipher, _)) = &self.sealing {
            let times = TrailerTimes {
                min_timestamp: self.totals.min_timestamp,
                max_timestamp: self.totals.max_timestamp,
                last_timestamp: self.totals.last_timestamp,
            }
            .encode();
            let head = header.encode();
            let head: &[u8; 24] = head[..24].try_into().expect("24 bytes");
            let tag = cipher.trailer_tag(self.totals.batch_count, head, self.totals.last_offset, &times);
            self.out.write_all(&times)?;
            self.out.write_all(&tag)?;
            self.digest.write(&times);
            self.digest.write(&tag);
            self.written += TRAILER_LEN as u64;
        }
        let footer = SegmentFooter {
            last_offset: self.totals.last_offset,
            header_crc32: crate::layout::header_crc32(&header.encode()),
        };
        let footer = footer.encode();
        self.out.write_all(&footer)?;
        self.digest.write(&footer);
        self.written += footer.len() as u64;
        header.crc64 = self.digest.sum64();
        self.out.seek(SeekFrom::Start(self.start))?;
        self.out.write_all(&header.encode())?;
        self.out.seek(SeekFrom::Start(self.start + self.written))?;
        self.out.flush()?;
        let summary = self.totals.summary(&header, self.written);
        Ok((self.out, summary))
    }
}

/// Encodes `records` into one in-memory segment.
pub fn encode_segment<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    options: WriterOptions,
) -> Result<(Vec<u8>, SegmentSummary), FormatError> {
    let mut writer = SegmentWriter::in_memory(options)?;
    for record in records {
        writer.append(record)?;
    }
    let (cursor, summary) = writer.finish()?;
    Ok((cursor.into_inner(), summary))
}
