//! Reads a backup's `manifest.json`, checks it, and prints where each partition's records are:
//! the segment keys a restore would read, in offset order, and the gaps.
//!
//! ```sh
//! cargo run -p kbs-manifest --example summarize -- /var/backups/kafka/nightly/manifest.json
//! cargo run -p kbs-manifest --example summarize -- kbs-manifest/tests/data/manifest-full.json
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use kbs_manifest::{Manifest, layout};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: summarize MANIFEST_JSON");
        std::process::exit(2);
    };
    let manifest = Manifest::from_json(&std::fs::read(&path)?)?;
    let problems = manifest.validate();
    for problem in &problems {
        eprintln!("problem: {problem:?}");
    }
    let s = &manifest.statistics;
    println!(
        "backup {} ({}): {} topics, {} partitions, {} records in {} segments, {} bytes stored",
        manifest.backup_id,
        if manifest.is_complete() {
            "complete"
        } else {
            "not complete"
        },
        s.topics,
        s.partitions,
        s.records,
        s.segments,
        s.compressed_bytes
    );
    for topic in &manifest.topics {
        for partition in &topic.partitions {
            println!(
                "{}/{}: offsets {}..={}, {} records",
                topic.name, partition.partition, partition.first_offset, partition.last_offset, partition.records
            );
            for segment in &partition.segment_files {
                let key = layout::segment_key(&manifest.backup_id, &topic.name, partition.partition, segment.name)?;
                println!(
                    "  {key}: offsets {}..={}, {} records, {} bytes",
                    segment.first_offset, segment.last_offset, segment.records, segment.size_bytes
                );
            }
            for gap in &partition.gaps {
                println!(
                    "  gap: offsets {}..={} ({})",
                    gap.from_offset, gap.to_offset, gap.reason
                );
            }
        }
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
