//! Encryption at rest (format version 1.1, header flag bit 1).
//!
//! An encrypted segment has two more parts than a plain one, and its batch payloads are sealed:
//!
//! ```text
//! header (32) · key block · batch 1 · … · batch N · sealed trailer (40) · footer (16)
//!
//! Key block
//! +-----+------+--------------------------------------------------------------+
//! |   0 |    4 | length L (u32, 1..=65536)                                    |
//! |   4 |    L | an age v1 file (binary, not armored) to the recipients,      |
//! |     |      | whose plaintext is the segment's 32-byte data key            |
//! +-----+------+--------------------------------------------------------------+
//!
//! Batch i (0-based): the 24-byte batch header, then the sealed payload
//!   sealed  = ChaCha20-Poly1305(data key, nonce_i, aad_i, compressed payload)
//!             (ciphertext · 16-byte tag); "compressed size" is the sealed length
//!   nonce_i = i (u64 LE) · 00 00 00 00
//!   aad_i   = segment header bytes 0..16 · batch header bytes 0..20
//!   the batch CRC-32 covers the sealed bytes
//!
//! Sealed trailer (40 bytes)
//! +-----+------+--------------------------------------------------------------+
//! |   0 |    8 | smallest record timestamp (i64)                              |
//! |   8 |    8 | largest record timestamp (i64)                               |
//! |  16 |    8 | timestamp of the last record (i64)                           |
//! |  24 |   16 | tag: ChaCha20-Poly1305 of the empty plaintext with           |
//! |     |      |   nonce = N (u64 LE) · ff ff ff ff, N = the batch count,     |
//! |     |      |   aad = header bytes 0..24 · footer bytes 0..8 · trailer 0..24 |
//! +-----+------+--------------------------------------------------------------+
//! ```
//!
//! The nonces number the batches, so moving, dropping or repeating a batch fails its tag; the
//! trailer's tag binds the record count, the last offset and the number of batches, so cutting
//! batches off the end fails too; each segment has its own random data key, so batches spliced
//! in from another segment fail. Header, footer, key block, batch headers and trailer stay
//! readable without a key, and the CRC-64 still covers every byte after the header.

use std::io::{Read, Write};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::rand::SecureRandom as _;
use zeroize::Zeroizing;

use crate::error::FormatError;

/// Length of a data key.
const DATA_KEY_LEN: usize = 32;
/// Length of a ChaCha20-Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the sealed trailer.
pub(crate) const TRAILER_LEN: usize = 24 + TAG_LEN;
/// Largest key block a reader accepts (an X25519 stanza takes about 100 bytes).
pub(crate) const MAX_KEY_BLOCK_LEN: u32 = 64 << 10;

/// The public keys a segment's data key is wrapped to: X25519 recipients of the age format
/// (`age1…`). Holding them needs no secret.
///
/// ```
/// let identity = kbs_format::Identities::generate();
/// let recipients = kbs_format::Recipients::parse(identity.recipients())?;
/// assert_eq!(recipients.to_strings(), identity.recipients());
/// # Ok::<(), kbs_format::FormatError>(())
/// ```
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl Recipients {
    /// Parses `age1…` public keys; at least one is needed, duplicates are dropped.
    pub fn parse<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Result<Self, FormatError> {
        let mut parsed: Vec<age::x25519::Recipient> = Vec::new();
        for key in keys {
            let key = key.as_ref().trim();
            let recipient: age::x25519::Recipient = key.parse().map_err(|reason: &str| {
                FormatError::InvalidKey(format!("{key:?} is not an age X25519 recipient (age1…): {reason}"))
            })?;
            if !parsed.iter().any(|known| known.to_string() == recipient.to_string()) {
                parsed.push(recipient);
            }
        }
        if parsed.is_empty() {
            return Err(FormatError::InvalidKey("no recipient given".into()));
        }
        Ok(Recipients { keys: parsed })
    }

    /// The recipients as `age1…` strings, in the order given.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(ToString::to_string).collect()
    }
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

/// Secret keys that open encrypted segments: X25519 identities of the age format
/// (`AGE-SECRET-KEY-1…`). `Debug` shows only their public keys.
#[derive(Clone)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl Identities {
    /// Parses an age identity file: one `AGE-SECRET-KEY-1…` per line; blank lines and lines
    /// starting with `#` are skipped. Errors never quote the file's contents.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity: age::x25519::Identity = line.parse().map_err(|reason: &str| {
                FormatError::InvalidKey(format!(
                    "line {} is not an age X25519 identity (AGE-SECRET-KEY-1…): {reason}",
                    index + 1
                ))
            })?;
            keys.push(identity);
        }
        if keys.is_empty() {
            return Err(FormatError::InvalidKey("the identity file holds no identity".into()));
        }
        Ok(Identities { keys })
    }

    /// A new random identity.
    pub fn generate() -> Self {
        Identities {
            keys: vec![age::x25519::Identity::generate()],
        }
    }

    /// The identity file text of these identities (secret: handle it as one).
    pub fn to_file_text(&self) -> Zeroizing<String> {
        use age::secrecy::ExposeSecret;
        let mut text = String::new();
        for key in &self.keys {
            text.push_str(key.to_string().expose_secret());
            text.push('\n');
        }
        Zeroizing::new(text)
    }

    /// The public keys (`age1…`) of these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.keys.iter().map(|key| key.to_public().to_string()).collect()
    }

    /// Unwraps the data key from a key block's age file.
    fn unwrap_key(&self, age_file: &[u8]) -> Result<DataKey, FormatError> {
        let decryptor = age::Decryptor::new_buffered(age_file).map_err(|e| FormatError::InvalidKeyBlock {
            reason: format!("not an age v1 file: {e}"),
        })?;
        let mut reader = match decryptor.decrypt(self.keys.iter().map(|key| key as &dyn age::Identity)) {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => return Err(FormatError::NoMatchingIdentity),
            Err(e) => {
                return Err(FormatError::InvalidKeyBlock {
                    reason: format!("the data key does not unwrap: {e}"),
                });
            }
        };
        let mut plain = Zeroizing::new(Vec::with_capacity(DATA_KEY_LEN + 1));
        reader
            .by_ref()
            .take(DATA_KEY_LEN as u64 + 1)
            .read_to_end(&mut plain)
            .map_err(|e| FormatError::InvalidKeyBlock {
                reason: format!("the data key does not decrypt: {e}"),
            })?;
        let key: [u8; DATA_KEY_LEN] = plain.as_slice().try_into().map_err(|_| FormatError::InvalidKeyBlock {
            reason: format!("the wrapped data key is {} bytes, not {DATA_KEY_LEN}", plain.len()),
        })?;
        Ok(DataKey(Zeroizing::new(key)))
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .finish_non_exhaustive()
    }
}

struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

/// A new random data key and its key block (length prefix included).
pub(crate) fn new_key_block(recipients: &Recipients) -> Result<(SegmentCipher, Vec<u8>), FormatError> {
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    ring::rand::SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| FormatError::InvalidKey("the system's random source failed".into()))?;
    let encryptor = age::Encryptor::with_recipients(recipients.keys.iter().map(|key| key as &dyn age::Recipient))
        .map_err(|e| FormatError::InvalidKey(format!("cannot wrap the data key: {e}")))?;
    let mut block = vec![0u8; 4];
    let mut writer = encryptor.wrap_output(&mut block)?;
    writer.write_all(key.as_ref())?;
    writer.finish()?;
    let len = u32::try_from(block.len() - 4)
        .ok()
        .filter(|len| *len <= MAX_KEY_BLOCK_LEN)
        .ok_or_else(|| FormatError::InvalidKey("too many recipients: the key block exceeds 64 KiB".into()))?;
    block[..4].copy_from_slice(&len.to_le_bytes());
    Ok((SegmentCipher::new(&DataKey(key)), block))
}

/// Opens the key block found at the start of `rest` (right after the header): returns the
/// cipher and the key block's total length.
pub(crate) fn open_key_block(rest: &[u8], identities: &Identities) -> Result<(SegmentCipher, usize), FormatError> {
    let age_file = key_block(rest)?;
    let key = identities.unwrap_key(age_file)?;
    Ok((SegmentCipher::new(&key), 4 + age_file.len()))
}

/// The age file of the key block at the start of `rest`, bounds checked.
pub(crate) fn key_block(rest: &[u8]) -> Result<&[u8], FormatError> {
    let Some(len) = rest.get(..4) else {
        return Err(FormatError::InvalidKeyBlock {
            reason: "the segment ends inside the key block's length".into(),
        });
    };
    let len = checked_key_block_len(len.try_into().expect("4 bytes"))?;
    rest.get(4..4 + len as usize)
        .ok_or_else(|| FormatError::InvalidKeyBlock {
            reason: format!("declared length {len} runs past the segment's end"),
        })
}

/// The key block's declared length, checked against 1..=[`MAX_KEY_BLOCK_LEN`] before anything
/// is read.
fn checked_key_block_len(bytes: [u8; 4]) -> Result<u32, FormatError> {
    let len = u32::from_le_bytes(bytes);
    if len == 0 || len > MAX_KEY_BLOCK_LEN {
        return Err(FormatError::InvalidKeyBlock {
            reason: format!("declared length {len} is outside 1..={MAX_KEY_BLOCK_LEN}"),
        });
    }
    Ok(len)
}

/// Reads a key block from a stream (the 4-byte length first, bounded).
pub(crate) fn read_key_block(inner: &mut impl Read) -> Result<Vec<u8>, FormatError> {
    let mut len = [0u8; 4];
    inner.read_exact(&mut len).map_err(|_| FormatError::InvalidKeyBlock {
        reason: "the segment ends inside the key block's length".into(),
    })?;
    let declared = checked_key_block_len(len)?;
    let mut block = len.to_vec();
    inner.take(u64::from(declared)).read_to_end(&mut block)?;
    if block.len() != 4 + declared as usize {
        return Err(FormatError::InvalidKeyBlock {
            reason: format!("declared length {declared} runs past the segment's end"),
        });
    }
    Ok(block)
}

/// The AEAD of one segment: ChaCha20-Poly1305 (RFC 8439) under its data key, from `ring`,
/// whose assembly implementations run at several GB/s.
#[derive(Clone)]
pub(crate) struct SegmentCipher {
    aead: LessSafeKey,
}

impl std::fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentCipher(..)")
    }
}

impl SegmentCipher {
    fn new(key: &DataKey) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key.0.as_ref()).expect("a 32-byte key");
        SegmentCipher {
            aead: LessSafeKey::new(key),
        }
    }

    fn batch_nonce(index: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&index.to_le_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    fn batch_aad(segment_head: &[u8; 16], batch_head: &[u8; 20]) -> [u8; 36] {
        let mut aad = [0u8; 36];
        aad[..16].copy_from_slice(segment_head);
        aad[16..].copy_from_slice(batch_head);
        aad
    }

    /// Seals `buf` (the compressed payload) in place and appends the tag.
    pub(crate) fn seal_batch(&self, index: u64, segment_head: &[u8; 16], batch_head: &[u8; 20], buf: &mut Vec<u8>) {
        let aad = Self::batch_aad(segment_head, batch_head);
        let tag = self
            .aead
            .seal_in_place_separate_tag(Self::batch_nonce(index), Aad::from(aad), buf)
            .expect("a batch is far below ChaCha20-Poly1305's message limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Opens a sealed payload into `out` (replacing its contents); `false` when the tag fails.
    pub(crate) fn open_batch(
        &self,
        index: u64,
        segment_head: &[u8; 16],
        batch_head: &[u8; 20],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
            return false;
        };
        let Ok(tag) = Tag::try_from(&sealed[split..]) else {
            return false;
        };
        out.extend_from_slice(&sealed[..split]);
        let aad = Self::batch_aad(segment_head, batch_head);
        let opened = self
            .aead
            .open_in_place_separate_tag(Self::batch_nonce(index), Aad::from(aad), tag, out, 0..)
            .is_ok();
        if !opened {
            out.clear();
        }
        opened
    }

    fn trailer_nonce(batch_count: u64) -> Nonce {
        let mut nonce = [0xffu8; 12];
        nonce[..8].copy_from_slice(&batch_count.to_le_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    fn trailer_aad(header_head: &[u8; 24], last_offset: i64, trailer_head: &[u8; 24]) -> [u8; 56] {
        let mut aad = [0u8; 56];
        aad[..24].copy_from_slice(header_head);
        aad[24..32].copy_from_slice(&last_offset.to_le_bytes());
        aad[32..].copy_from_slice(trailer_head);
        aad
    }

    /// The trailer's tag.
    pub(crate) fn trailer_tag(
        &self,
        batch_count: u64,
        header_head: &[u8; 24],
        last_offset: i64,
        trailer_head: &[u8; 24],
    ) -> [u8; TAG_LEN] {
        let aad = Self::trailer_aad(header_head, last_offset, trailer_head);
        let tag = self
            .aead
            .seal_in_place_separate_tag(Self::trailer_nonce(batch_count), Aad::from(aad), &mut [])
            .expect("empty plaintext");
        tag.as_ref().try_into().expect("a 16-byte tag")
    }

    /// Checks the trailer's tag.
    pub(crate) fn check_trailer(
        &self,
        batch_count: u64,
        header_head: &[u8; 24],
        last_offset: i64,
        trailer: &[u8; TRAILER_LEN],
    ) -> bool {
        let head: &[u8; 24] = trailer[..24].try_into().expect("24 bytes");
        let aad = Self::trailer_aad(header_head, last_offset, head);
        let Ok(tag) = Tag::try_from(&trailer[24..]) else {
            return false;
        };
        self.aead
            .open_in_place_separate_tag(Self::trailer_nonce(batch_count), Aad::from(aad), tag, &mut [], 0..)
            .is_ok()
    }
}

/// The sealed trailer's plaintext fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrailerTimes {
    pub(crate) min_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) last_timestamp: i64,
}

impl TrailerTimes {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.min_timestamp.to_le_bytes());
        out[8..16].copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[16..].copy_from_slice(&self.last_timestamp.to_le_bytes());
        out
    }

    pub(crate) fn decode(trailer: &[u8; TRAILER_LEN]) -> Self {
        let field = |at: usize| i64::from_le_bytes(trailer[at..at + 8].try_into().expect("8 bytes"));
        TrailerTimes {
            min_timestamp: field(0),
            max_timestamp: field(8),
            last_timestamp: field(16),
        }
    }
}
