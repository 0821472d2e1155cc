//! The record-batch payload codecs of Kafka (attributes bits 0-2).
//!
//! * gzip: one gzip member (RFC 1952), `flate2`.
//! * snappy: Kafka's Java client writes the xerial "snappy-java" framing — a 16-byte header
//!   (`82 53 4e 41 50 50 59 00`, then big-endian version 1 and compatible-version 1) followed by
//!   blocks of `[i32 big-endian length][raw snappy block]`; librdkafka writes a single raw
//!   snappy block with no framing. Both decode here (the header magic tells them apart); the
//!   encoder writes the xerial framing with 32 KiB blocks like the Java client.
//! * lz4: the LZ4 *frame* format (magic `04 22 4d 18`), independent 64 KiB blocks, no content
//!   checksum — what both the Java client and librdkafka write for magic-2 batches.
//! * zstd: one zstd frame.
//!
//! Decompression never produces more than a caller-given limit: the output buffer grows with
//! the bytes actually produced and stops one byte past the limit.

use std::io::{self, Read, Write};

/// A payload codec, numbered as in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Codec {
    /// Uncompressed.
    None = 0,
    /// gzip.
    Gzip = 1,
    /// snappy.
    Snappy = 2,
    /// LZ4 frame.
    Lz4 = 3,
    /// zstd.
    Zstd = 4,
}

impl Codec {
    /// The codec named by attribute bits 0-2, if it is one Kafka defines.
    pub(crate) fn from_attributes(attributes: i16) -> Option<Codec> {
        match attributes & 0x07 {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Lower-case name, as in Kafka's `compression.type`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why a payload could not be decompressed.
#[derive(Debug)]
pub(crate) enum DecompressFault {
    /// The output would exceed the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The compressed bytes are invalid for the codec.
    Invalid(String),
}

impl From<io::Error> for DecompressFault {
    fn from(e: io::Error) -> Self {
        DecompressFault::Invalid(e.to_string())
    }
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_BLOCK: usize = 32 * 1024;

/// Compresses `data` with `codec`, appending to `out`.
pub(crate) fn compress(codec: Codec, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    match codec {
        Codec::None => out.extend_from_slice(data),
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()?;
        }
        Codec::Snappy => {
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK) {
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(block.len()), 0);
                let n = encoder.compress(block, &mut out[start..]).map_err(io::Error::other)?;
                out.truncate(start + n);
                let n = i32::try_from(n).map_err(io::Error::other)?;
                out[len_at..start].copy_from_slice(&n.to_be_bytes());
            }
        }
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out)?;
            encoder.write_all(data)?;
            let (_, result) = encoder.finish();
            result?;
        }
        Codec::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, 0)?;
            encoder.include_contentsize(true)?;
            encoder.set_pledged_src_size(Some(data.len() as u64))?;
            encoder.write_all(data)?;
            encoder.finish()?;
        }
    }
    Ok(())
}

/// Decompresses `data`, producing at most `limit` bytes.
pub(crate) fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressFault> {
    let hint = data.len().saturating_mul(4).min(limit);
    match codec {
        Codec::None => {
            if data.len() > limit {
                return Err(DecompressFault::TooLarge { limit });
            }
            Ok(data.to_vec())
        }
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(data), limit, hint),
        Codec::Snappy => decompress_snappy(data, limit),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(data)?;
            let out = read_bounded(&mut decoder, limit, hint)?;
            let (_, finished) = decoder.finish();
            finished.map_err(|_| DecompressFault::Invalid("lz4 frame ends early".into()))?;
            Ok(out)
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)?.single_frame();
            read_bounded(decoder, limit, hint)
        }
    }
}

fn read_bounded<R: Read>(reader: R, limit: usize, hint: usize) -> Result<Vec<u8>, DecompressFault> {
    let mut out = Vec::with_capacity(hint);
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(DecompressFault::TooLarge { limit });
    }
    Ok(out)
}

fn decompress_snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressFault> {
    let invalid = |e: snap::Error| DecompressFault::Invalid(format!("snappy: {e}"));
    let mut decoder = snap::raw::Decoder::new();
    if data.len() < XERIAL_HEADER_LEN || data[..8] != XERIAL_MAGIC {
        let len = snap::raw::decompress_len(data).map_err(invalid)?;
        if len > limit {
            return Err(DecompressFault::TooLarge { limit });
        }
        let mut out = vec![0; len];
        let n = decoder.decompress(data, &mut out).map_err(invalid)?;
        out.truncate(n);
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return Err(DecompressFault::Invalid("snappy-java block length is truncated".into()));
        };
        let block_len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let block_len = usize::try_from(block_len)
            .map_err(|_| DecompressFault::Invalid(format!("snappy-java block length {block_len} is negative")))?;
        pos += 4;
        let Some(block) = data.get(pos..pos.saturating_add(block_len)) else {
            return Err(DecompressFault::Invalid(format!(
                "snappy-java block of {block_len} bytes at {pos} runs past the {} payload bytes",
                data.len()
            )));
        };
        pos += block_len;
        let len = snap::raw::decompress_len(block).map_err(invalid)?;
        if out.len().saturating_add(len) > limit {
            return Err(DecompressFault::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        let n = decoder.decompress(block, &mut out[start..]).map_err(invalid)?;
        out.truncate(start + n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn round_trip_every_codec_across_block_boundaries() {
        for codec in ALL {
            for len in [0, 1, 100, XERIAL_BLOCK, XERIAL_BLOCK + 1, 200_000] {
                let data = sample(len);
                let mut packed = Vec::new();
                compress(codec, &data, &mut packed).unwrap();
                let unpacked = decompress(codec, &packed, len).unwrap();
                assert_eq!(unpacked, data, "{} {len}", codec.name());
            }
        }
    }

    #[test]
    fn limit_is_enforced_for_every_codec() {
        for codec in ALL {
            let data = sample(100_000);
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap();
            match decompress(codec, &packed, 99_999) {
                Err(DecompressFault::TooLarge { limit: 99_999 }) => {}
                other => panic!("{}: {other:?}", codec.name()),
            }
        }
    }

    #[test]
    fn raw_snappy_like_librdkafka_decodes() {
        let data = sample(70_000);
        let packed = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Codec::Snappy, &packed, data.len()).unwrap(), data);
    }

    #[test]
    fn xerial_header_layout() {
        let mut packed = Vec::new();
        compress(Codec::Snappy, b"hello", &mut packed).unwrap();
        assert_eq!(&packed[..16], b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01");
        let block_len = i32::from_be_bytes(packed[16..20].try_into().unwrap()) as usize;
        assert_eq!(packed.len(), 20 + block_len);
    }

    #[test]
    fn lz4_frame_uses_independent_blocks_without_content_checksum() {
        let mut packed = Vec::new();
        compress(Codec::Lz4, &sample(1000), &mut packed).unwrap();
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18]);
        // FLG: version 01, block independence set, no block/content checksum, no content size.
        assert_eq!(packed[4], 0b0110_0000);
        // BD: 64 KiB maximum block size.
        assert_eq!(packed[5], 0b0100_0000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec:?}");
        }
        let mut xerial = Vec::new();
        compress(Codec::Snappy, &sample(10), &mut xerial).unwrap();
        xerial.truncate(xerial.len() - 1);
        assert!(matches!(
            decompress(Codec::Snappy, &xerial, 1 << 20),
            Err(DecompressFault::Invalid(_))
        ));
        let mut frame = Vec::new();
        compress(Codec::Lz4, &sample(1000), &mut frame).unwrap();
        frame.truncate(frame.len() - 3);
        assert!(decompress(Codec::Lz4, &frame, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn round_trip_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..5000), codec in 0usize..5) {
            let codec = ALL[codec];
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap();
            prop_assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data);
        }
    }
}
