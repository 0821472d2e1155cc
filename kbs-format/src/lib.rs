//! The `.kbs` segment format: a checksummed, compressed container for Kafka records.
//!
//! A segment holds the records of one Kafka partition over a range of offsets:
//!
//! ```text
//! header (32 bytes) · batch 1 · … · batch N · footer (16 bytes)
//! ```
//!
//! Every byte is covered by a checksum: the CRC-64/XZ in the header covers everything after
//! it, the footer's CRC-32 covers the header, and each batch's CRC-32 covers its compressed
//! payload (optionally each record carries its own CRC-32 too). Records keep exactly what
//! Kafka holds: offset, timestamp, null vs empty key and value, and headers in order with
//! duplicate keys and null values. The byte layout is specified in `docs/FORMAT.md` and next
//! to the code that writes it ([`layout`] and the record module).
//!
//! This crate is a pure codec: no async, no I/O beyond `std::io::{Read, Write, Seek}`.
//!
//! * [`SegmentWriter`] streams records into any `Write + Seek` (or memory), holding at most one
//!   batch uncompressed.
//! * [`SegmentReader`] reads a segment held in [`bytes::Bytes`] with zero-copy record bytes,
//!   after checking every checksum.
//! * [`SegmentStreamReader`] reads from any `Read`, one batch at a time.
//! * [`verify_segment`] checks every checksum and invariant and says where the first problem is.
//! * [`decode_header_and_footer`] reads a segment's offset range and record count from its
//!   first 32 and last 16 bytes alone.
//!
//! Hostile input never panics and never makes a reader allocate more than
//! [`ReadLimits::max_batch_bytes`] for a batch.

#![forbid(unsafe_code)]

mod batch;
mod codec;
mod crypto;
mod error;
pub mod layout;
mod reader;
mod record;
mod varint;
mod writer;

pub use batch::{
    Batch, BatchRecords, DEFAULT_MAX_BATCH_BYTES, IntoRecords, ReadLimits, RecordViews, SegmentSummary, decode_batch,
};
pub use crypto::{Identities, Recipients};
pub use error::{BatchFault, FormatError, RecordFault};
pub use layout::{BatchHeader, Compression, SegmentFooter, SegmentHeader, decode_header_and_footer};
pub use reader::{
    Batches, SegmentReader, SegmentRecords, SegmentStreamReader, verify_segment, verify_segment_keyless,
    verify_segment_with_identities,
};
pub use record::{Header, HeaderView, HeaderViews, Record, RecordView};
pub use writer::{
    DEFAULT_LZ4_TARGET_BATCH_BYTES, DEFAULT_TARGET_BATCH_BYTES, DEFAULT_ZSTD_LEVEL, SegmentWriter, WriterOptions,
    encode_segment,
};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
