//! Writes a small segment to a file, then verifies it and prints its summary.
//!
//! ```sh
//! cargo run -p kbs-format --example segment -- /tmp/orders-0.kbs
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;

use bytes::Bytes;
use kbs_format::{Compression, ReadLimits, Record, SegmentWriter, WriterOptions, verify_segment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: segment FILE");
        std::process::exit(2);
    };
    let mut writer = SegmentWriter::new(File::create(&path)?, WriterOptions::new(Compression::Lz4))?;
    for offset in 0..1_000 {
        writer.append(&Record {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("key-{}", offset % 10))),
            value: Some(Bytes::from(format!("value {offset}"))),
            ..Record::default()
        })?;
    }
    let (_, summary) = writer.finish()?;
    let bytes = std::fs::read(&path)?;
    let verified = verify_segment(&bytes, ReadLimits::default())?;
    println!(
        "{path}: offsets {}..={}, {} records, {} bytes, verified: {}",
        summary.first_offset,
        summary.last_offset,
        summary.record_count,
        bytes.len(),
        verified.record_count == summary.record_count
    );
    Ok(())
}
