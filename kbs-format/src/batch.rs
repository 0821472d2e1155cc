//! Decoding and validating record batches, shared by every reader.

use bytes::Bytes;

use crate::Compression;
use crate::codec::Decompressor;
use crate::crypto::{SegmentCipher, TRAILER_LEN, TrailerTimes};
use crate::error::{BatchFault, FormatError};
use crate::layout::{BATCH_HEADER_LEN, BatchHeader, SegmentFooter, SegmentHeader};
use crate::record::{CursorState, PayloadCursor, Record, RecordView};

/// Limits a reader applies to what a segment declares, so hostile length fields cannot make
/// it allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    max_batch_bytes: u32,
}

/// Default largest compressed or uncompressed batch a reader accepts: 256 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: u32 = 256 << 20;

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

impl ReadLimits {
    /// Limits with the given largest batch size (compressed or uncompressed) in bytes.
    pub fn with_max_batch_bytes(max_batch_bytes: u32) -> Self {
        ReadLimits { max_batch_bytes }
    }

    /// The largest batch size (compressed or uncompressed) a reader accepts.
    pub fn max_batch_bytes(&self) -> u32 {
        self.max_batch_bytes
    }
}

/// What a whole segment holds, as written or as verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Codec of the batch payloads.
    pub compression: Compression,
    /// Whether records carry their own CRC-32.
    pub per_record_crc: bool,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Number of records.
    pub record_count: u64,
    /// Number of batches.
    pub batch_count: u64,
    /// Smallest record timestamp (timestamps need not be ordered).
    pub min_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Timestamp of the last record.
    pub last_timestamp: i64,
    /// Whether the batch payloads are encrypted (format 1.1).
    pub encrypted: bool,
    /// Sum of the batches' uncompressed payload sizes.
    pub uncompressed_bytes: u64,
    /// Size of the whole segment in bytes.
    pub size_bytes: u64,
    /// The segment's CRC-64 (header bytes 24–31).
    pub crc64: u64,
}

/// Running totals over the batches of a segment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) first_offset: Option<i64>,
    pub(crate) last_offset: i64,
    pub(crate) record_count: u64,
    pub(crate) batch_count: u64,
    pub(crate) min_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) last_timestamp: i64,
    pub(crate) uncompressed_bytes: u64,
}

impl Totals {
    pub(crate) fn add_record(&mut self, offset: i64, timestamp: i64) {
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.min_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.last_offset = offset;
        self.last_timestamp = timestamp;
        self.record_count += 1;
        self.min_timestamp = self.min_timestamp.min(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    pub(crate) fn summary(&self, header: &SegmentHeader, size_bytes: u64) -> SegmentSummary {
        SegmentSummary {
            compression: header.compression,
            per_record_crc: header.per_record_crc,
            first_offset: self.first_offset.unwrap_or(header.first_offset),
            last_offset: self.last_offset,
            record_count: self.record_count,
            batch_count: self.batch_count,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            last_timestamp: self.last_timestamp,
            encrypted: header.encrypted,
            uncompressed_bytes: self.uncompressed_bytes,
            size_bytes,
            crc64: header.crc64,
        }
    }
}

/// A decoded, checksum-verified and fully validated record batch.
#[derive(Debug, Clone)]
pub struct Batch {
    position: u64,
    header: BatchHeader,
    payload: Bytes,
    per_record_crc: bool,
}

impl Batch {
    /// Position of the batch header in the segment.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The uncompressed payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.header.record_count as usize
    }

    /// Always false: a batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The records as borrowed views (no copying, no reference counting).
    pub fn record_views(&self) -> RecordViews<'_> {
        RecordViews {
            cursor: PayloadCursor::new(&self.payload, self.header.base_offset, self.per_record_crc),
            remaining: self.header.record_count,
        }
    }

    /// The records as owned values whose bytes are zero-copy slices of the payload.
    pub fn records(&self) -> BatchRecords<'_> {
        BatchRecords {
            views: self.record_views(),
            payload: &self.payload,
        }
    }

    /// Turns the batch into an iterator of owned records sharing its payload.
    pub fn into_records(self) -> IntoRecords {
        IntoRecords {
            state: CursorState::default(),
            remaining: self.header.record_count,
            batch: self,
        }
    }
}

/// Owning iterator over the records of a [`Batch`].
pub struct IntoRecords {
    batch: Batch,
    state: CursorState,
    remaining: u32,
}

impl Iterator for IntoRecords {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let batch = &self.batch;
        let mut cursor = PayloadCursor::resume(
            &batch.payload,
            batch.header.base_offset,
            batch.per_record_crc,
            self.state,
        );
        let record = cursor.parse_record().ok()?.to_record_in(&batch.payload);
        self.state = cursor.state();
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Iterator over the records of a [`Batch`] as [`RecordView`]s.
pub struct RecordViews<'a> {
    cursor: PayloadCursor<'a>,
    remaining: u32,
}

impl<'a> Iterator for RecordViews<'a> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The batch was validated when it was decoded, so this parse succeeds; should it not,
        // the iteration ends instead of panicking.
        self.cursor.parse_record().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Iterator over the records of a [`Batch`] as owned [`Record`]s.
pub struct BatchRecords<'a> {
    views: RecordViews<'a>,
    payload: &'a Bytes,
}

impl Iterator for BatchRecords<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.views.next().map(|v| v.to_record_in(self.payload))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.views.size_hint()
    }
}

/// Decodes the batches of one segment in order, checking every invariant that spans batches.
pub(crate) struct BatchDecoder {
    header: SegmentHeader,
    /// The offset the first record must have (the segment header's), if any.
    expected_first_offset: Option<i64>,
    limits: ReadLimits,
    decompressor: Decompressor,
    /// The segment's AEAD, when it is encrypted and a key opened it.
    cipher: Option<SegmentCipher>,
    /// Reused buffer for opened (decrypted) payloads.
    opened: Vec<u8>,
    pub(crate) totals: Totals,
}

impl BatchDecoder {
    pub(crate) fn new(header: SegmentHeader, limits: ReadLimits) -> Self {
        BatchDecoder {
            header,
            expected_first_offset: Some(header.first_offset),
            limits,
            decompressor: Decompressor::new(),
            cipher: None,
            opened: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// A decoder for an encrypted segment whose data key `cipher` holds.
    pub(crate) fn with_cipher(header: SegmentHeader, limits: ReadLimits, cipher: SegmentCipher) -> Self {
        BatchDecoder {
            cipher: Some(cipher),
            ..Self::new(header, limits)
        }
    }

    /// True once the batches seen hold the record count the segment header declares.
    pub(crate) fn all_records_seen(&self) -> bool {
        self.totals.record_count >= self.header.record_count
    }

    /// Decodes a batch header at `position` and checks it against the limits and the
    /// segment's declared record count.
    pub(crate) fn batch_header(
        &self,
        bytes: &[u8; BATCH_HEADER_LEN],
        position: u64,
    ) -> Result<BatchHeader, FormatError> {
        let header = BatchHeader::decode_sized(bytes, self.header.compression, self.header.encrypted, position)?;
        let limit = self.limits.max_batch_bytes;
        for (what, size) in [
            ("compressed", header.compressed_size),
            ("uncompressed", header.uncompressed_size),
        ] {
            if size > limit {
                return Err(FormatError::BatchTooLarge {
                    position,
                    what,
                    size,
                    limit,
                });
            }
        }
        let after = self.totals.record_count + u64::from(header.record_count);
        if after > self.header.record_count {
            return Err(FormatError::InvalidBatch {
                position,
                reason: BatchFault::ExcessRecords {
                    declared: self.header.record_count,
                },
            });
        }
        Ok(header)
    }

    /// Checks the payload's CRC-32 and decompresses it into `scratch`, returning the
    /// uncompressed bytes (`compressed` itself when the codec is none).
    ///
    /// The payload is decompressed before its checksum is computed, so the checksum reads
    /// bytes the decompressor just pulled into cache (the decompressors are safe on any
    /// input and bounded by the declared size). A checksum mismatch is still reported in
    /// preference to a decompression error, as if the checksum had been checked first.
    pub(crate) fn decompress<'s>(
        &mut self,
        header: &BatchHeader,
        compressed: &'s [u8],
        position: u64,
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], FormatError> {
        if self.header.encrypted {
            return self.open_and_decompress(header, compressed, position, scratch);
        }
        let none = self.header.compression == Compression::None;
        let decompressed = if none {
            Ok(())
        } else {
            self.decompressor.decompress(
                self.header.compression,
                compressed,
                header.uncompressed_size,
                position,
                scratch,
            )
        };
        let computed = crc32fast::hash(compressed);
        if computed != header.crc32 {
            return Err(FormatError::BatchChecksumMismatch {
                position,
                stored: header.crc32,
                computed,
            });
        }
        decompressed?;
        Ok(if none { compressed } else { scratch })
    }

    /// For an encrypted segment: checks the sealed payload's CRC-32, opens it with the batch's
    /// nonce (its index) and associated data, and decompresses it into `scratch`.
    fn open_and_decompress<'s>(
        &mut self,
        header: &BatchHeader,
        sealed: &[u8],
        position: u64,
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], FormatError> {
        let computed = crc32fast::hash(sealed);
        if computed != header.crc32 {
            return Err(FormatError::BatchChecksumMismatch {
                position,
                stored: header.crc32,
                computed,
            });
        }
        let mut opened = std::mem::take(&mut self.opened);
        let Some(cipher) = &self.cipher else {
            return Err(FormatError::KeyRequired);
        };
        let segment_head = segment_head(&self.header);
        let batch_head = header.encode();
        let batch_head: &[u8; 20] = batch_head[..20].try_into().expect("20 bytes");
        let index = self.totals.batch_count;
        if !cipher.open_batch(index, &segment_head, batch_head, sealed, &mut opened) {
            self.opened = opened;
            return Err(FormatError::AuthenticationFailed {
                position,
                what: "batch",
            });
        }
        if self.header.compression == Compression::None {
            std::mem::swap(scratch, &mut opened);
            self.opened = opened;
            return Ok(scratch);
        }
        let decompressed = self.decompressor.decompress(
            self.header.compression,
            &opened,
            header.uncompressed_size,
            position,
            scratch,
        );
        self.opened = opened;
        decompressed?;
        Ok(scratch)
    }

    /// Parses every record of an uncompressed payload, checking structure, canonical varints,
    /// per-record CRCs and offset order, and adds them to the totals.
    pub(crate) fn validate(&mut self, header: &BatchHeader, payload: &[u8], position: u64) -> Result<(), FormatError> {
        let mut cursor = PayloadCursor::new(payload, header.base_offset, self.header.per_record_crc);
        let mut totals = self.totals;
        for index in 0..header.record_count {
            if cursor.remaining() == 0 {
                return Err(FormatError::InvalidBatch {
                    position,
                    reason: BatchFault::MissingRecords {
                        declared: header.record_count,
                        found: index,
                    },
                });
            }
            let at = cursor.position();
            let view = cursor.parse_record().map_err(|fault| FormatError::InvalidRecord {
                batch_position: position,
                payload_offset: at as u64,
                fault,
            })?;
            match totals.first_offset {
                None if self.expected_first_offset.is_some_and(|first| first != view.offset) => {
                    return Err(FormatError::SummaryMismatch {
                        field: "first offset",
                        stored: self.header.first_offset.into(),
                        actual: view.offset.into(),
                    });
                }
                Some(_) if view.offset <= totals.last_offset => {
                    return Err(FormatError::OffsetOrder {
                        batch_position: position,
                        previous: totals.last_offset,
                        found: view.offset,
                    });
                }
                _ => {}
            }
            totals.add_record(view.offset, view.timestamp);
        }
        if cursor.remaining() != 0 {
            return Err(FormatError::InvalidRecord {
                batch_position: position,
                payload_offset: cursor.position() as u64,
                fault: crate::error::RecordFault::TrailingBytes {
                    len: cursor.remaining() as u64,
                },
            });
        }
        totals.batch_count += 1;
        totals.uncompressed_bytes += u64::from(header.uncompressed_size);
        self.totals = totals;
        Ok(())
    }

    /// Decodes a whole batch whose compressed payload is `compressed`: a zero-copy slice of
    /// the segment when the codec is none, a fresh buffer otherwise.
    pub(crate) fn decode(
        &mut self,
        header: BatchHeader,
        compressed: Bytes,
        position: u64,
    ) -> Result<Batch, FormatError> {
        let payload = if self.header.compression == Compression::None && !self.header.encrypted {
            self.decompress(&header, &compressed, position, &mut Vec::new())?;
            compressed
        } else {
            let mut out = Vec::new();
            self.decompress(&header, &compressed, position, &mut out)?;
            Bytes::from(out)
        };
        self.validate(&header, &payload, position)?;
        Ok(Batch {
            position,
            header,
            payload,
            per_record_crc: self.header.per_record_crc,
        })
    }

    /// Checks, after the last batch, that the records match the header and footer.
    /// For an encrypted segment, `trailer` is the sealed trailer found at `trailer_position`;
    /// its tag and timestamps are checked too.
    pub(crate) fn finish(
        &self,
        footer: &SegmentFooter,
        trailer: Option<(&[u8; TRAILER_LEN], u64)>,
        size_bytes: u64,
    ) -> Result<SegmentSummary, FormatError> {
        if let (Some(cipher), Some((trailer, trailer_position))) = (&self.cipher, trailer) {
            let head = self.header.encode();
            let head: &[u8; 24] = head[..24].try_into().expect("24 bytes");
            if !cipher.check_trailer(self.totals.batch_count, head, footer.last_offset, trailer) {
                return Err(FormatError::AuthenticationFailed {
                    position: trailer_position,
                    what: "trailer",
                });
            }
            let times = TrailerTimes::decode(trailer);
            for (field, stored, actual) in [
                ("smallest timestamp", times.min_timestamp, self.totals.min_timestamp),
                ("largest timestamp", times.max_timestamp, self.totals.max_timestamp),
                ("last timestamp", times.last_timestamp, self.totals.last_timestamp),
            ] {
                if stored != actual {
                    return Err(FormatError::SummaryMismatch {
                        field,
                        stored: stored.into(),
                        actual: actual.into(),
                    });
                }
            }
        } else if self.header.encrypted {
            return Err(FormatError::KeyRequired);
        }
        if self.totals.record_count != self.header.record_count {
            return Err(FormatError::SummaryMismatch {
                field: "record count",
                stored: self.header.record_count.into(),
                actual: self.totals.record_count.into(),
            });
        }
        if self.totals.last_offset != footer.last_offset {
            return Err(FormatError::SummaryMismatch {
                field: "last offset",
                stored: footer.last_offset.into(),
                actual: self.totals.last_offset.into(),
            });
        }
        Ok(self.totals.summary(&self.header, size_bytes))
    }
}

/// Segment header bytes 0..16 (magic, version, codec, flags, first offset): the part of the
/// header every batch's associated data starts with.
pub(crate) fn segment_head(header: &SegmentHeader) -> [u8; 16] {
    header.encode()[..16].try_into().expect("16 bytes")
}

/// Decodes one batch outside any segment: checks the payload's CRC-32 against the header,
/// decompresses it within `limits`, and validates every record.
///
/// `compressed` is the batch payload exactly as stored after its 24-byte header.
pub fn decode_batch(
    header: &BatchHeader,
    compressed: Bytes,
    compression: Compression,
    per_record_crc: bool,
    limits: ReadLimits,
) -> Result<Batch, FormatError> {
    let segment = SegmentHeader {
        compression,
        per_record_crc,
        encrypted: false,
        first_offset: header.base_offset,
        record_count: u64::from(header.record_count),
        crc64: 0,
    };
    let mut decoder = BatchDecoder::new(segment, limits);
    decoder.expected_first_offset = None;
    let header = decoder.batch_header(&header.encode(), 0)?;
    if compressed.len() != header.compressed_size as usize {
        return Err(FormatError::UnexpectedEnd {
            position: BATCH_HEADER_LEN as u64,
            what: "batch payload",
            needed: u64::from(header.compressed_size).saturating_sub(compressed.len() as u64),
        });
    }
    decoder.decode(header, compressed, 0)
}
