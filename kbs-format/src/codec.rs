//! Batch payload compression with reusable contexts.

use crate::Compression;
use crate::error::{BatchFault, FormatError};

/// Compresses batch payloads with one codec, reusing its context and output buffer across
/// batches.
pub(crate) struct Compressor {
    codec: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// Output buffer; for LZ4 it keeps the length of the largest bound seen, so it is never
    /// re-zeroed (the codec overwrites what it uses).
    out: Vec<u8>,
}

impl Compressor {
    pub(crate) fn new(codec: Compression, zstd_level: i32) -> Result<Self, FormatError> {
        let zstd = match codec {
            Compression::Zstd => Some(
                zstd::bulk::Compressor::new(zstd_level).map_err(|e| FormatError::Compress {
                    codec,
                    message: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Compressor {
            codec,
            zstd,
            out: Vec::new(),
        })
    }

    /// Compresses `src`, returning the compressed bytes (`src` itself for [`Compression::None`]).
    pub(crate) fn compress<'a>(&'a mut self, src: &'a [u8]) -> Result<&'a [u8], FormatError> {
        let codec = self.codec;
        let err = |e: std::io::Error| FormatError::Compress {
            codec,
            message: e.to_string(),
        };
        match (codec, self.zstd.as_mut()) {
            (Compression::Zstd, Some(ctx)) => {
                self.out.clear();
                self.out.reserve(zstd::zstd_safe::compress_bound(src.len()));
                ctx.compress_to_buffer(src, &mut self.out).map_err(err)?;
                Ok(&self.out)
            }
            (Compression::Lz4, _) => {
                let bound = lz4::block::compress_bound(src.len()).map_err(err)?;
                if self.out.len() < bound {
                    self.out.resize(bound, 0);
                }
                let n = lz4::block::compress_to_buffer(src, None, false, &mut self.out[..bound]).map_err(err)?;
                Ok(&self.out[..n])
            }
            _ => Ok(src),
        }
    }
}

/// Decompresses batch payloads, reusing the zstd context across batches.
pub(crate) struct Decompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decompressor {
    pub(crate) fn new() -> Self {
        Decompressor { zstd: None }
    }

    /// Decompresses `src` into `out` (resized to fit), producing exactly `uncompressed_size`
    /// bytes or an error. The output never grows beyond `uncompressed_size`, which the caller
    /// has checked against its allocation limit.
    pub(crate) fn decompress(
        &mut self,
        codec: Compression,
        src: &[u8],
        uncompressed_size: u32,
        position: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let size = uncompressed_size as usize;
        let err = |message: String| FormatError::Decompress {
            position,
            codec,
            message,
        };
        // Size the buffer without re-zeroing a reused one: decompression overwrites it and
        // must produce exactly `size` bytes, which is checked below.
        if out.is_empty() {
            *out = vec![0u8; size];
        } else {
            out.resize(size, 0);
        }
        let produced = match codec {
            Compression::None => {
                out.clear();
                out.extend_from_slice(src);
                src.len()
            }
            Compression::Lz4 => {
                let size_i32 = i32::try_from(size).map_err(|_| err(format!("{size} bytes is beyond LZ4's limit")))?;
                let n = lz4::block::decompress_to_buffer(src, Some(size_i32), out).map_err(|e| err(e.to_string()))?;
                out.truncate(n);
                n
            }
            Compression::Zstd => {
                // Exactly one standard frame: no trailing frames, no skippable frames.
                let frame_len = zstd::zstd_safe::find_frame_compressed_size(src)
                    .map_err(|code| err(zstd::zstd_safe::get_error_name(code).to_string()))?;
                if frame_len != src.len() {
                    return Err(err(format!(
                        "payload holds {} bytes after the first zstd frame",
                        src.len() - frame_len
                    )));
                }
                let ctx = match self.zstd.as_mut() {
                    Some(ctx) => ctx,
                    None => self
                        .zstd
                        .insert(zstd::bulk::Decompressor::new().map_err(|e| err(e.to_string()))?),
                };
                // The slice's length bounds the output: zstd fails rather than write more.
                let n = ctx
                    .decompress_to_buffer(src, &mut out[..])
                    .map_err(|e| err(e.to_string()))?;
                out.truncate(n);
                n
            }
        };
        if produced != size {
            return Err(FormatError::InvalidBatch {
                position,
                reason: BatchFault::UncompressedSize {
                    declared: uncompressed_size,
                    actual: produced as u64,
                },
            });
        }
        Ok(())
    }
}
