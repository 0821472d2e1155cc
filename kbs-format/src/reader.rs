//! Reading segments: from memory ([`SegmentReader`], [`verify_segment`]) and from a stream
//! ([`SegmentStreamReader`]).

use std::io::Read;

use bytes::Bytes;

use crate::batch::{Batch, BatchDecoder, ReadLimits, SegmentSummary};
use crate::crypto::{self, Identities, SegmentCipher, TRAILER_LEN};
use crate::error::FormatError;
use crate::layout::{BATCH_HEADER_LEN, SEGMENT_FOOTER_LEN, SEGMENT_HEADER_LEN, SegmentFooter, SegmentHeader};
use crate::record::Record;

const MIN_SEGMENT_LEN: usize = SEGMENT_HEADER_LEN + SEGMENT_FOOTER_LEN;

/// Header and footer of an in-memory segment, checked, with the batch region's bounds.
struct Frame {
    header: SegmentHeader,
    footer: SegmentFooter,
    footer_position: usize,
    /// First byte of the first batch: after the key block when encrypted.
    batches_start: usize,
    /// End of the last batch: the sealed trailer's start when encrypted, else the footer's.
    batches_end: usize,
}

impl Frame {
    /// The sealed trailer and its position, when encrypted.
    fn trailer<'d>(&self, data: &'d [u8]) -> Option<(&'d [u8; TRAILER_LEN], u64)> {
        self.header.encrypted.then(|| {
            let bytes = data[self.batches_end..self.footer_position]
                .try_into()
                .expect("frame checked the trailer's length");
            (bytes, self.batches_end as u64)
        })
    }
}

fn frame(data: &[u8]) -> Result<Frame, FormatError> {
    if data.len() < MIN_SEGMENT_LEN {
        return Err(FormatError::TooShort { len: data.len() as u64 });
    }
    let head: &[u8; SEGMENT_HEADER_LEN] = data[..SEGMENT_HEADER_LEN].try_into().expect("length checked");
    let footer_position = data.len() - SEGMENT_FOOTER_LEN;
    let tail: &[u8; SEGMENT_FOOTER_LEN] = data[footer_position..].try_into().expect("length checked");
    let (header, footer) = crate::layout::decode_header_and_footer(head, tail, data.len() as u64)?;
    if header.record_count == 0 {
        return Err(FormatError::EmptySegment);
    }
    let (batches_start, batches_end) = if header.encrypted {
        let block = crypto::key_block(&data[SEGMENT_HEADER_LEN..footer_position])?;
        let start = SEGMENT_HEADER_LEN + 4 + block.len();
        let end = footer_position
            .checked_sub(TRAILER_LEN)
            .filter(|end| *end >= start)
            .ok_or_else(|| FormatError::UnexpectedEnd {
                position: start as u64,
                what: "sealed trailer",
                needed: (start + TRAILER_LEN).saturating_sub(footer_position) as u64,
            })?;
        (start, end)
    } else {
        (SEGMENT_HEADER_LEN, footer_position)
    };
    Ok(Frame {
        header,
        footer,
        footer_position,
        batches_start,
        batches_end,
    })
}

/// The cipher of an encrypted segment, from its key block; `None` for a plain segment.
fn open_cipher(
    data: &[u8],
    frame: &Frame,
    identities: Option<&Identities>,
) -> Result<Option<SegmentCipher>, FormatError> {
    if !frame.header.encrypted {
        return Ok(None);
    }
    let identities = identities.ok_or(FormatError::KeyRequired)?;
    let (cipher, _) = crypto::open_key_block(&data[SEGMENT_HEADER_LEN..frame.batches_start], identities)?;
    Ok(Some(cipher))
}

fn decoder(header: SegmentHeader, limits: ReadLimits, cipher: Option<&SegmentCipher>) -> BatchDecoder {
    match cipher {
        Some(cipher) => BatchDecoder::with_cipher(header, limits, cipher.clone()),
        None => BatchDecoder::new(header, limits),
    }
}

fn check_crc64(data: &[u8], header: &SegmentHeader) -> Result<(), FormatError> {
    let mut digest = crate::layout::Crc64::new();
    digest.write(&data[SEGMENT_HEADER_LEN..]);
    let computed = digest.sum64();
    if computed != header.crc64 {
        return Err(FormatError::SegmentChecksumMismatch {
            stored: header.crc64,
            computed,
            end: data.len() as u64,
        });
    }
    Ok(())
}

/// Walks the batch region of an in-memory segment, handing each batch's header and compressed
/// payload to `visit`, then checks the totals against header and footer.
fn walk_batches(
    data: &[u8],
    frame: &Frame,
    decoder: &mut BatchDecoder,
    mut visit: impl FnMut(&mut BatchDecoder, crate::BatchHeader, usize, std::ops::Range<usize>) -> Result<(), FormatError>,
) -> Result<SegmentSummary, FormatError> {
    let end = frame.batches_end;
    let mut pos = frame.batches_start;
    while pos < end {
        if decoder.all_records_seen() {
            return Err(FormatError::TrailingBytes {
                position: pos as u64,
                len: (end - pos) as u64,
            });
        }
        let header = next_batch_header(data, pos, end, decoder)?;
        let payload = pos + BATCH_HEADER_LEN..pos + BATCH_HEADER_LEN + header.compressed_size as usize;
        let next = payload.end;
        visit(decoder, header, pos, payload)?;
        pos = next;
    }
    decoder.finish(&frame.footer, frame.trailer(data), data.len() as u64)
}

fn next_batch_header(
    data: &[u8],
    pos: usize,
    end: usize,
    decoder: &BatchDecoder,
) -> Result<crate::BatchHeader, FormatError> {
    let Some(bytes) = data
        .get(pos..pos + BATCH_HEADER_LEN)
        .filter(|_| pos + BATCH_HEADER_LEN <= end)
    else {
        return Err(FormatError::UnexpectedEnd {
            position: pos as u64,
            what: "batch header",
            needed: (pos + BATCH_HEADER_LEN - end) as u64,
        });
    };
    let header = decoder.batch_header(bytes.try_into().expect("slice of 24"), pos as u64)?;
    let payload_end = pos + BATCH_HEADER_LEN + header.compressed_size as usize;
    if payload_end > end {
        return Err(FormatError::UnexpectedEnd {
            position: (pos + BATCH_HEADER_LEN) as u64,
            what: "batch payload",
            needed: (payload_end - end) as u64,
        });
    }
    Ok(header)
}

/// Checks every checksum and invariant of an in-memory segment without keeping its records:
/// header and footer fields, the footer's header CRC-32, every batch's CRC-32 and sizes,
/// decompression, every record's structure (canonical varints, lengths, per-record CRC),
/// strictly increasing offsets, the record count, first and last offset, and the CRC-64.
///
/// When the CRC-64 fails but a batch's CRC-32 also fails, the batch error is returned: it says
/// more precisely where the damage is. An encrypted segment gives
/// [`FormatError::KeyRequired`]: see [`verify_segment_with_identities`] and
/// [`verify_segment_keyless`].
pub fn verify_segment(data: &[u8], limits: ReadLimits) -> Result<SegmentSummary, FormatError> {
    verify(data, limits, None)
}

/// [`verify_segment`] for a segment that may be encrypted: opens its data key with
/// `identities` and also checks every batch's and the trailer's authentication tag.
pub fn verify_segment_with_identities(
    data: &[u8],
    limits: ReadLimits,
    identities: &Identities,
) -> Result<SegmentSummary, FormatError> {
    verify(data, limits, Some(identities))
}

fn verify(data: &[u8], limits: ReadLimits, identities: Option<&Identities>) -> Result<SegmentSummary, FormatError> {
    let frame = frame(data)?;
    let cipher = open_cipher(data, &frame, identities)?;
    let mut decoder = decoder(frame.header, limits, cipher.as_ref());
    let mut scratch = Vec::new();
    // The CRC-64 is computed batch by batch while each batch is in cache; the walk covers
    // the batches contiguously.
    let mut digest = crate::layout::Crc64::new();
    digest.write(&data[SEGMENT_HEADER_LEN..frame.batches_start]);
    let summary = walk_batches(data, &frame, &mut decoder, |decoder, header, pos, payload| {
        let uncompressed = decoder.decompress(&header, &data[payload.clone()], pos as u64, &mut scratch)?;
        decoder.validate(&header, uncompressed, pos as u64)?;
        digest.write(&data[pos..payload.end]);
        Ok(())
    })?;
    digest.write(&data[frame.batches_end..]);
    let computed = digest.sum64();
    if computed != frame.header.crc64 {
        return Err(FormatError::SegmentChecksumMismatch {
            stored: frame.header.crc64,
            computed,
            end: data.len() as u64,
        });
    }
    Ok(summary)
}

/// Checks what can be checked without a key: for a plain segment, everything
/// ([`verify_segment`]); for an encrypted one, the header, footer, key block bounds, every
/// batch header against the limits, every batch's CRC-32, the record count and the CRC-64.
/// The summary's timestamps then come from the sealed trailer, whose tag (like the records
/// themselves) only a key can check.
pub fn verify_segment_keyless(data: &[u8], limits: ReadLimits) -> Result<SegmentSummary, FormatError> {
    let frame = frame(data)?;
    if !frame.header.encrypted {
        return verify_segment(data, limits);
    }
    check_crc64(data, &frame.header)?;
    let mut decoder = BatchDecoder::new(frame.header, limits);
    let mut pos = frame.batches_start;
    while pos < frame.batches_end {
        if decoder.all_records_seen() {
            return Err(FormatError::TrailingBytes {
                position: pos as u64,
                len: (frame.batches_end - pos) as u64,
            });
        }
        let header = next_batch_header(data, pos, frame.batches_end, &decoder)?;
        let payload = &data[pos + BATCH_HEADER_LEN..pos + BATCH_HEADER_LEN + header.compressed_size as usize];
        let computed = crc32fast::hash(payload);
        if computed != header.crc32 {
            return Err(FormatError::BatchChecksumMismatch {
                position: pos as u64,
                stored: header.crc32,
                computed,
            });
        }
        decoder.totals.record_count += u64::from(header.record_count);
        decoder.totals.batch_count += 1;
        decoder.totals.uncompressed_bytes += u64::from(header.uncompressed_size);
        pos += BATCH_HEADER_LEN + header.compressed_size as usize;
    }
    if decoder.totals.record_count != frame.header.record_count {
        return Err(FormatError::SummaryMismatch {
            field: "record count",
            stored: frame.header.record_count.into(),
            actual: decoder.totals.record_count.into(),
        });
    }
    let (trailer, _) = frame.trailer(data).expect("encrypted");
    let times = crate::crypto::TrailerTimes::decode(trailer);
    let mut totals = decoder.totals;
    totals.first_offset = Some(frame.header.first_offset);
    totals.last_offset = frame.footer.last_offset;
    totals.min_timestamp = times.min_timestamp;
    totals.max_timestamp = times.max_timestamp;
    totals.last_timestamp = times.last_timestamp;
    Ok(totals.summary(&frame.header, data.len() as u64))
}

/// A segment held in memory: checked on open (header, footer and the CRC-64 over every byte),
/// then decoded batch by batch with zero-copy record bytes.
///
/// Opening costs one CRC-64 pass over the segment; every record handed out has been covered by
/// all checksums, so a damaged segment yields an error, never wrong records.
#[derive(Debug, Clone)]
pub struct SegmentReader {
    data: Bytes,
    header: SegmentHeader,
    footer: SegmentFooter,
    batches_start: usize,
    cipher: Option<SegmentCipher>,
    limits: ReadLimits,
}

impl SegmentReader {
    /// Opens a segment with the default [`ReadLimits`].
    pub fn new(data: Bytes) -> Result<Self, FormatError> {
        Self::with_limits(data, ReadLimits::default())
    }

    /// Opens a segment with the given limits. An encrypted segment gives
    /// [`FormatError::KeyRequired`]: open it with [`with_identities`](Self::with_identities).
    pub fn with_limits(data: Bytes, limits: ReadLimits) -> Result<Self, FormatError> {
        Self::open(data, limits, None)
    }

    /// Opens a segment that may be encrypted, unwrapping its data key with `identities`.
    /// Every batch's tag is checked as it is decoded, the trailer's after the last batch.
    pub fn with_identities(data: Bytes, limits: ReadLimits, identities: &Identities) -> Result<Self, FormatError> {
        Self::open(data, limits, Some(identities))
    }

    fn open(data: Bytes, limits: ReadLimits, identities: Option<&Identities>) -> Result<Self, FormatError> {
        let frame = frame(&data)?;
        let cipher = open_cipher(&data, &frame, identities)?;
        if check_crc64(&data, &frame.header).is_err() {
            // Say where the damage is when a batch checksum can tell.
            verify(&data, limits, identities)?;
            check_crc64(&data, &frame.header)?;
        }
        Ok(SegmentReader {
            header: frame.header,
            footer: frame.footer,
            batches_start: frame.batches_start,
            cipher,
            limits,
            data,
        })
    }

    /// The segment header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The segment footer.
    pub fn footer(&self) -> &SegmentFooter {
        &self.footer
    }

    /// The segment's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Iterates the batches in order; each is decompressed and validated before it is yielded.
    /// After the last batch the totals are checked against the header and footer.
    pub fn batches(&self) -> Batches<'_> {
        let footer_position = self.data.len() - SEGMENT_FOOTER_LEN;
        let frame = Frame {
            header: self.header,
            footer: self.footer,
            footer_position,
            batches_start: self.batches_start,
            batches_end: footer_position - if self.header.encrypted { TRAILER_LEN } else { 0 },
        };
        Batches {
            reader: self,
            decoder: decoder(self.header, self.limits, self.cipher.as_ref()),
            pos: self.batches_start,
            frame,
            done: false,
        }
    }

    /// Iterates every record in order, as owned records with zero-copy bytes.
    pub fn records(&self) -> SegmentRecords<'_> {
        SegmentRecords {
            batches: self.batches(),
            current: None,
        }
    }

    /// Decodes every record into a vector.
    pub fn to_records(&self) -> Result<Vec<Record>, FormatError> {
        self.records().collect()
    }
}

/// Iterator over the batches of a [`SegmentReader`].
pub struct Batches<'a> {
    reader: &'a SegmentReader,
    decoder: BatchDecoder,
    frame: Frame,
    pos: usize,
    done: bool,
}

impl Batches<'_> {
    fn step(&mut self) -> Result<Option<Batch>, FormatError> {
        let data = &self.reader.data;
        let end = self.frame.batches_end;
        if self.pos >= end {
            self.done = true;
            self.decoder
                .finish(&self.frame.footer, self.frame.trailer(data), data.len() as u64)?;
            return Ok(None);
        }
        if self.decoder.all_records_seen() {
            return Err(FormatError::TrailingBytes {
                position: self.pos as u64,
                len: (end - self.pos) as u64,
            });
        }
        let header = next_batch_header(data, self.pos, end, &self.decoder)?;
        let payload_start = self.pos + BATCH_HEADER_LEN;
        let payload = data.slice(payload_start..payload_start + header.compressed_size as usize);
        let batch = self.decoder.decode(header, payload, self.pos as u64)?;
        self.pos = payload_start + header.compressed_size as usize;
        Ok(Some(batch))
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.step();
        if result.is_err() {
            self.done = true;
        }
        result.transpose()
    }
}

/// Iterator over the records of a [`SegmentReader`].
pub struct SegmentRecords<'a> {
    batches: Batches<'a>,
    current: Option<crate::batch::IntoRecords>,
}

impl Iterator for SegmentRecords<'_> {
    type Item = Result<Record, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.current.as_mut().and_then(Iterator::next) {
                return Some(Ok(record));
            }
            match self.batches.next()? {
                Ok(batch) => self.current = Some(batch.into_records()),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Reads a segment from a stream, one batch at a time, holding at most one batch in memory.
///
/// Each batch's CRC-32 is checked and its records validated before the batch is returned.
/// The segment-wide checks (footer, header CRC-32, CRC-64, totals) happen when the last batch
/// has been read, and [`next_batch`](Self::next_batch) returns `Ok(None)` only if they pass.
/// The 24-byte batch headers are covered by the CRC-64 alone, so a caller that must not act on
/// any unverified byte should buffer until `Ok(None)`, or read from memory with
/// [`SegmentReader`].
pub struct SegmentStreamReader<R> {
    inner: R,
    header: SegmentHeader,
    raw_header: [u8; SEGMENT_HEADER_LEN],
    decoder: BatchDecoder,
    digest: crate::layout::Crc64,
    position: u64,
    summary: Option<SegmentSummary>,
    failed: bool,
}

impl<R: Read> SegmentStreamReader<R> {
    /// Reads and checks the header with the default [`ReadLimits`].
    pub fn new(inner: R) -> Result<Self, FormatError> {
        Self::with_limits(inner, ReadLimits::default())
    }

    /// Reads and checks the header with the given limits. An encrypted segment gives
    /// [`FormatError::KeyRequired`]: see [`with_identities`](Self::with_identities).
    pub fn with_limits(inner: R, limits: ReadLimits) -> Result<Self, FormatError> {
        Self::open(inner, limits, None)
    }

    /// Reads and checks the header of a segment that may be encrypted, and unwraps its data
    /// key with `identities`.
    pub fn with_identities(inner: R, limits: ReadLimits, identities: &Identities) -> Result<Self, FormatError> {
        Self::open(inner, limits, Some(identities))
    }

    fn open(mut inner: R, limits: ReadLimits, identities: Option<&Identities>) -> Result<Self, FormatError> {
        let mut raw_header = [0u8; SEGMENT_HEADER_LEN];
        read_exact(&mut inner, &mut raw_header, 0, "segment header")?;
        let header = SegmentHeader::decode(&raw_header)?;
        if header.record_count == 0 {
            return Err(FormatError::EmptySegment);
        }
        let mut digest = crate::layout::Crc64::new();
        let mut position = SEGMENT_HEADER_LEN as u64;
        let decoder = if header.encrypted {
            let identities = identities.ok_or(FormatError::KeyRequired)?;
            let block = crypto::read_key_block(&mut inner)?;
            let (cipher, len) = crypto::open_key_block(&block, identities)?;
            digest.write(&block);
            position += len as u64;
            BatchDecoder::with_cipher(header, limits, cipher)
        } else {
            BatchDecoder::new(header, limits)
        };
        Ok(SegmentStreamReader {
            inner,
            header,
            raw_header,
            decoder,
            digest,
            position,
            summary: None,
            failed: false,
        })
    }

    /// The segment header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The verified summary, once [`next_batch`](Self::next_batch) has returned `Ok(None)`.
    pub fn summary(&self) -> Option<&SegmentSummary> {
        self.summary.as_ref()
    }

    /// Reads the next batch; `Ok(None)` once the footer and every segment-wide check passed.
    /// After an error, every further call returns an error.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, FormatError> {
        if self.failed {
            return Err(FormatError::Io(std::io::Error::other("segment stream already failed")));
        }
        if self.summary.is_some() {
            return Ok(None);
        }
        let result = self.step();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn step(&mut self) -> Result<Option<Batch>, FormatError> {
        if self.decoder.all_records_seen() {
            self.finish()?;
            return Ok(None);
        }
        let position = self.position;
        let mut raw = [0u8; BATCH_HEADER_LEN];
        read_exact(&mut self.inner, &mut raw, position, "batch header")?;
        let header = self.decoder.batch_header(&raw, position)?;
        let size = header.compressed_size as usize;
        // Bounded by the limit checked above; grows only as bytes actually arrive.
        let mut payload = Vec::with_capacity(size.min(1 << 20));
        let got = (&mut self.inner).take(size as u64).read_to_end(&mut payload)?;
        if got < size {
            return Err(FormatError::UnexpectedEnd {
                position: position + (BATCH_HEADER_LEN + got) as u64,
                what: "batch payload",
                needed: (size - got) as u64,
            });
        }
        self.digest.write(&raw);
        self.digest.write(&payload);
        self.position += (BATCH_HEADER_LEN + size) as u64;
        self.decoder.decode(header, Bytes::from(payload), position).map(Some)
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        let mut trailer = [0u8; TRAILER_LEN];
        let trailer_position = self.position;
        if self.header.encrypted {
            read_exact(&mut self.inner, &mut trailer, trailer_position, "sealed trailer")?;
            self.digest.write(&trailer);
            self.position += TRAILER_LEN as u64;
        }
        let position = self.position;
        let mut raw = [0u8; SEGMENT_FOOTER_LEN];
        read_exact(&mut self.inner, &mut raw, position, "segment footer")?;
        let footer = SegmentFooter::decode(&raw, position)?;
        footer.check_header(&self.raw_header, position)?;
        self.digest.write(&raw);
        let size = position + SEGMENT_FOOTER_LEN as u64;
        let computed = self.digest.sum64();
        if computed != self.header.crc64 {
            return Err(FormatError::SegmentChecksumMismatch {
                stored: self.header.crc64,
                computed,
                end: size,
            });
        }
        let mut extra = [0u8; 1];
        if read_some(&mut self.inner, &mut extra)? != 0 {
            return Err(FormatError::TrailingBytes { position: size, len: 1 });
        }
        let trailer = self.header.encrypted.then_some((&trailer, trailer_position));
        self.summary = Some(self.decoder.finish(&footer, trailer, size)?);
        Ok(())
    }

    /// Reads every remaining record into a vector, verifying the whole segment.
    pub fn read_to_records(mut self) -> Result<(Vec<Record>, SegmentSummary), FormatError> {
        let mut records = Vec::new();
        while let Some(batch) = self.next_batch()? {
            records.extend(batch.records());
        }
        let summary = self.summary.ok_or(FormatError::EmptySegment)?;
        Ok((records, summary))
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], position: u64, what: &'static str) -> Result<(), FormatError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = read_some(r, &mut buf[filled..])?;
        if n == 0 {
            return Err(FormatError::UnexpectedEnd {
                position: position + filled as u64,
                what,
                needed: (buf.len() - filled) as u64,
            });
        }
        filled += n;
    }
    Ok(())
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FormatError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FormatError::Io(e)),
        }
    }
}
