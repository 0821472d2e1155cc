//! kbs-format encode and decode+verify throughput per codec, each beside the raw codec on the
//! same bytes.
//!
//! * encode: `kbs` = records → finished segment in memory (varint encoding, batching, CRC-32 per
//!   batch, CRC-64); baseline = the raw codec compressing the same uncompressed batch payloads
//!   (`zstd::bulk` / raw LZ4 block / memcpy for none).
//! * decode+verify: `kbs` = `verify_segment` (every checksum, decompression, every record
//!   parsed and checked); `kbs-records` = `SegmentReader` handing out owned records;
//!   baseline = the raw codec decompressing the same compressed payloads (memcpy for none).
//!
//! * floor (lz4 and zstd): the least any encoder or verifying reader of this format must do on
//!   the same bytes, without anything kbs-specific. Encode: gather each batch's record fields
//!   (keys, values, header keys and values, no varints) into one buffer, then the raw codec.
//!   Decode: the raw codec plus the two checksums the format requires every reader to check
//!   (CRC-32 of each compressed payload, CRC-64 over the batches), no record parsing.
//!
//! Throughput is reported in uncompressed payload bytes.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kbs_format::{
    Compression, Header, ReadLimits, Record, SegmentReader, SegmentWriter, WriterOptions, encode_segment,
    verify_segment,
};
use std::hint::black_box;
use std::io::Cursor;

const RECORDS: usize = 16 * 1024;

fn records() -> Vec<Record> {
    kbs_benches::sample_records(RECORDS)
        .into_iter()
        .map(|r| Record {
            offset: r.offset,
            timestamp: r.timestamp,
            key: Some(r.key),
            value: Some(r.value),
            headers: r.headers.into_iter().map(|(k, v)| Header::new(k, Some(v))).collect(),
        })
        .collect()
}

/// The record count of every batch of a segment.
fn batch_counts(segment: &[u8]) -> Vec<usize> {
    let reader = SegmentReader::new(Bytes::copy_from_slice(segment)).unwrap();
    reader.batches().map(|b| b.unwrap().len()).collect()
}

/// The uncompressed and compressed payloads of every batch of a segment.
fn payloads(segment: &[u8]) -> (Vec<Bytes>, Vec<Vec<u8>>) {
    let reader = SegmentReader::new(Bytes::copy_from_slice(segment)).unwrap();
    let mut plain = Vec::new();
    let mut packed = Vec::new();
    let mut pos = 32;
    for batch in reader.batches() {
        let batch = batch.unwrap();
        let size = batch.header().compressed_size as usize;
        packed.push(segment[pos + 24..pos + 24 + size].to_vec());
        pos += 24 + size;
        plain.push(batch.payload().clone());
    }
    (plain, packed)
}

fn codecs() -> [(Compression, &'static str); 3] {
    [
        (Compression::None, "none"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ]
}

fn encode(c: &mut Criterion) {
    let records = records();
    let mut group = c.benchmark_group("encode");
    for (codec, name) in codecs() {
        let options = WriterOptions::new(codec);
        let (segment, summary) = encode_segment(&records, options).unwrap();
        let (plain, _) = payloads(&segment);
        group.throughput(Throughput::Bytes(summary.uncompressed_bytes));
        group.bench_function(BenchmarkId::new("kbs", name), |b| {
            // Like the baseline, write into a buffer reused across iterations.
            let mut out = Vec::with_capacity(segment.len());
            b.iter(|| {
                out.clear();
                let mut writer = SegmentWriter::new(Cursor::new(&mut out), options).unwrap();
                for r in black_box(&records) {
                    writer.append(r).unwrap();
                }
                writer.finish().unwrap().1
            })
        });
        // The same, encrypted to one recipient (segment format 1.1): the cost of encryption.
        let recipients = kbs_format::Recipients::parse(kbs_format::Identities::generate().recipients()).unwrap();
        group.bench_function(BenchmarkId::new("kbs-encrypted", name), |b| {
            let mut out = Vec::with_capacity(segment.len());
            b.iter(|| {
                out.clear();
                let mut writer = SegmentWriter::new_encrypted(Cursor::new(&mut out), options, &recipients).unwrap();
                for r in black_box(&records) {
                    writer.append(r).unwrap();
                }
                writer.finish().unwrap().1
            })
        });
        group.bench_function(BenchmarkId::new("raw", name), |b| {
            let mut zstd_ctx = zstd::bulk::Compressor::new(3).unwrap();
            let mut out = Vec::new();
            b.iter(|| {
                for p in &plain {
                    out.clear();
                    match codec {
                        Compression::Zstd => {
                            out.reserve(zstd::zstd_safe::compress_bound(p.len()));
                            zstd_ctx.compress_to_buffer(p, &mut out).unwrap();
                        }
                        Compression::Lz4 => {
                            out.resize(lz4::block::compress_bound(p.len()).unwrap(), 0);
                            let n = lz4::block::compress_to_buffer(p, None, false, &mut out).unwrap();
                            out.truncate(n);
                        }
                        _ => out.extend_from_slice(p),
                    }
                    black_box(&out);
                }
            })
        });
        if codec == Compression::None {
            continue;
        }
        let counts = batch_counts(&segment);
        group.bench_function(BenchmarkId::new("floor", name), |b| {
            let mut zstd_ctx = zstd::bulk::Compressor::new(3).unwrap();
            let mut gathered = Vec::new();
            let mut out = Vec::new();
            b.iter(|| {
                let mut rest = &records[..];
                for &count in &counts {
                    let (batch, tail) = rest.split_at(count);
                    rest = tail;
                    gathered.clear();
                    for r in black_box(batch) {
                        gathered.extend_from_slice(r.key.as_deref().unwrap_or_default());
                        gathered.extend_from_slice(r.value.as_deref().unwrap_or_default());
                        for h in &r.headers {
                            gathered.extend_from_slice(&h.key);
                            gathered.extend_from_slice(h.value.as_deref().unwrap_or_default());
                        }
                    }
                    out.clear();
                    if codec == Compression::Zstd {
                        out.reserve(zstd::zstd_safe::compress_bound(gathered.len()));
                        zstd_ctx.compress_to_buffer(&gathered, &mut out).unwrap();
                    } else {
                        out.resize(lz4::block::compress_bound(gathered.len()).unwrap(), 0);
                        let n = lz4::block::compress_to_buffer(&gathered, None, false, &mut out).unwrap();
                        out.truncate(n);
                    }
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let records = records();
    let mut group = c.benchmark_group("decode_verify");
    for (codec, name) in codecs() {
        let (segment, summary) = encode_segment(&records, WriterOptions::new(codec)).unwrap();
        let (plain, packed) = payloads(&segment);
        let segment = Bytes::from(segment);
        group.throughput(Throughput::Bytes(summary.uncompressed_bytes));
        group.bench_function(BenchmarkId::new("kbs", name), |b| {
            b.iter(|| verify_segment(black_box(&segment), ReadLimits::default()).unwrap())
        });
        group.bench_function(BenchmarkId::new("kbs-records", name), |b| {
            b.iter(|| {
                let reader = SegmentReader::new(segment.clone()).unwrap();
                let mut n = 0usize;
                for r in reader.records() {
                    n += r.unwrap().value.map_or(0, |v| v.len());
                }
                black_box(n)
            })
        });
        group.bench_function(BenchmarkId::new("raw", name), |b| {
            let mut zstd_ctx = zstd::bulk::Decompressor::new().unwrap();
            // One buffer, sized once: the codec writes every byte, nothing is re-zeroed.
            let mut out = vec![0u8; plain.iter().map(|p| p.len()).max().unwrap()];
            b.iter(|| {
                for (p, plain) in packed.iter().zip(&plain) {
                    let out = &mut out[..plain.len()];
                    match codec {
                        Compression::Zstd => {
                            zstd_ctx.decompress_to_buffer(p, out).unwrap();
                        }
                        Compression::Lz4 => {
                            lz4::block::decompress_to_buffer(p, Some(plain.len() as i32), out).unwrap();
                        }
                        _ => out.copy_from_slice(p),
                    }
                    black_box(&out);
                }
            })
        });
        if codec == Compression::None {
            continue;
        }
        group.bench_function(BenchmarkId::new("floor", name), |b| {
            let mut zstd_ctx = zstd::bulk::Decompressor::new().unwrap();
            let mut out = vec![0u8; plain.iter().map(|p| p.len()).max().unwrap()];
            b.iter(|| {
                let mut crc64 = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz);
                for (p, plain) in packed.iter().zip(&plain) {
                    let out = &mut out[..plain.len()];
                    if codec == Compression::Zstd {
                        zstd_ctx.decompress_to_buffer(p, out).unwrap();
                    } else {
                        lz4::block::decompress_to_buffer(p, Some(plain.len() as i32), out).unwrap();
                    }
                    black_box(crc32fast::hash(p));
                    crc64.update(p);
                    black_box(&out);
                }
                crc64.finalize()
            })
        });
    }
    group.finish();
}

/// The two checksums on their own, for reading the table above.
fn checksums(c: &mut Criterion) {
    let data = vec![0x5au8; 16 << 20];
    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("crc32", |b| b.iter(|| crc32fast::hash(black_box(&data))));
    group.bench_function("crc64-crc-fast", |b| {
        b.iter(|| {
            let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz);
            d.update(black_box(&data));
            d.finalize()
        })
    });
    group.finish();
}

criterion_group!(benches, encode, decode, checksums);
criterion_main!(benches);
