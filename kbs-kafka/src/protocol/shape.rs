//! A check of a response body's shape against its message schema, run before kafka-protocol
//! decodes it, so that no length or count read off the wire can make the decoder allocate more
//! than the frame holds.
//!
//! kafka-protocol's array decoders reserve `count` elements before decoding the first one, and
//! `count` is whatever the broker sent: up to 2^31 - 1 for an `INT32` count, 2^32 - 2 for a
//! compact one. One hostile or corrupt frame of a few bytes could thus ask for hundreds of
//! gigabytes, and a failed allocation aborts the process rather than returning an error. This
//! walk reads the same bytes the decoder will read, field by field as the schema in
//! [`schemas`](super::schemas) lays them out, and refuses the body when
//!
//! * an array declares more elements than the bytes left could hold, counting each element at
//!   its smallest encoding (e.g. 16 bytes for a UUID, one byte for a compact string) — so every
//!   count the decoder later trusts is backed by bytes of the frame;
//! * a string, bytes or records value is longer than what is left;
//! * a known tagged field's value does not fill exactly the size its header gives (the decoder
//!   reads known tagged fields without looking at that size, so a lying size would make it read
//!   bytes this walk never checked).
//!
//! The walk allocates nothing and its time is linear in the body's size: every step consumes
//! at least one byte or fails. Null is accepted wherever a length may say so; whether the
//! field is nullable is the decoder's business, and it refuses what the schema forbids.
//!
//! Encodings, as Kafka's protocol guide gives them (flexible versions use the compact forms):
//!
//! | type | classic | flexible |
//! |---|---|---|
//! | string | `INT16` length, -1 = null | `UNSIGNED_VARINT` length + 1, 0 = null |
//! | bytes, records | `INT32` length, -1 = null | `UNSIGNED_VARINT` length + 1, 0 = null |
//! | array | `INT32` count, -1 = null | `UNSIGNED_VARINT` count + 1, 0 = null |
//! | struct | its fields in order | its fields, then tagged fields |
//!
//! Tagged fields: `UNSIGNED_VARINT` count, then per field `UNSIGNED_VARINT` tag,
//! `UNSIGNED_VARINT` size and `size` bytes of value.

use super::schemas::{Field, Schema, Ty};

/// Checks that `body`, a response at `version`, has the shape of `schema` with every count and
/// length backed by bytes, and returns how many bytes the response takes. Bytes left over at
/// the end are the caller's business.
pub(crate) fn check_response(schema: &Schema, body: &[u8], version: i16) -> Result<usize, String> {
    let mut walk = Walk {
        rest: body,
        start: body.len(),
        version,
        flexible: version >= schema.flexible_from,
    };
    walk.structure(schema.fields)?;
    Ok(walk.position())
}

/// Where the walk is in one body (or in one tagged field's value).
struct Walk<'a> {
    rest: &'a [u8],
    /// The length of the whole slice walked, for positions in messages.
    start: usize,
    version: i16,
    flexible: bool,
}

impl<'a> Walk<'a> {
    fn position(&self) -> usize {
        self.start - self.rest.len()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!(
                "{what} of {n} bytes at byte {} but only {} bytes remain",
                self.position(),
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn int16(&mut self) -> Result<i16, String> {
        let b = self.take(2, "an INT16")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn int32(&mut self) -> Result<i32, String> {
        let b = self.take(4, "an INT32")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An `UNSIGNED_VARINT`, read exactly as kafka-protocol reads it (at most five bytes, bits
    /// beyond 32 dropped), so both walks stay on the same bytes.
    fn unsigned_varint(&mut self) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = u32::from(self.take(1, "a varint byte")?[0]);
            value |= (b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length or count: `None` for null.
    fn length(&mut self, classic: Classic) -> Result<Option<usize>, String> {
        if self.flexible {
            return Ok(match self.unsigned_varint()? {
                0 => None,
                n => Some((n - 1) as usize),
            });
        }
        let n = match classic {
            Classic::Int16 => i32::from(self.int16()?),
            Classic::Int32 => self.int32()?,
        };
        match n {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            n => Err(format!("negative length {n} at byte {}", self.position())),
        }
    }

    fn value(&mut self, ty: Ty) -> Result<(), String> {
        match ty {
            Ty::Bool | Ty::Int8 => self.take(1, "an INT8").map(drop),
            Ty::Int16 => self.take(2, "an INT16").map(drop),
            Ty::Int32 => self.take(4, "an INT32").map(drop),
            Ty::Int64 => self.take(8, "an INT64").map(drop),
            Ty::Uuid => self.take(16, "a UUID").map(drop),
            Ty::String => {
                if let Some(n) = self.length(Classic::Int16)? {
                    self.take(n, "a string")?;
                }
                Ok(())
            }
            Ty::Bytes => {
                if let Some(n) = self.length(Classic::Int32)? {
                    self.take(n, "a bytes value")?;
                }
                Ok(())
            }
            Ty::Int32s => self.array(Ty::Int32),
            Ty::Strings => self.array(Ty::String),
            Ty::Structs(fields) => self.array(Ty::Struct(fields)),
            Ty::Struct(fields) => self.structure(fields),
        }
    }

    fn array(&mut self, element: Ty) -> Result<(), String> {
        let at = self.position();
        let Some(count) = self.length(Classic::Int32)? else {
            return Ok(());
        };
        let smallest = self.smallest_encoding(element).max(1);
        if count.saturating_mul(smallest) > self.rest.len() {
            return Err(format!(
                "the array at byte {at} declares {count} elements, which need at least {} bytes, \
                 but only {} bytes remain",
                count.saturating_mul(smallest),
                self.rest.len()
            ));
        }
        for _ in 0..count {
            self.value(element)?;
        }
        Ok(())
    }

    fn structure(&mut self, fields: &[Field]) -> Result<(), String> {
        let version = self.version;
        for field in fields.iter().filter(|f| f.tag.is_none() && f.present_in(version)) {
            self.value(field.ty)?;
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, fields: &[Field]) -> Result<(), String> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            let at = self.position();
            let value = self.take(size, "a tagged field")?;
            let known = fields.iter().find(|f| f.tag == Some(tag) && f.present_in(self.version));
            if let Some(field) = known {
                let mut inner = Walk {
                    rest: value,
                    start: value.len(),
                    version: self.version,
                    flexible: self.flexible,
                };
                inner
                    .value(field.ty)
                    .map_err(|e| format!("tagged field {tag} at byte {at}: {e}"))?;
                if !inner.rest.is_empty() {
                    return Err(format!(
                        "tagged field {tag} at byte {at} declares {size} bytes but its value takes {}",
                        size - inner.rest.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fewest bytes a value of `ty` takes at this version.
    fn smallest_encoding(&self, ty: Ty) -> usize {
        let length = |classic: usize| if self.flexible { 1 } else { classic };
        match ty {
            Ty::Bool | Ty::Int8 => 1,
            Ty::Int16 => 2,
            Ty::Int32 => 4,
            Ty::Int64 => 8,
            Ty::Uuid => 16,
            Ty::String => length(2),
            Ty::Bytes | Ty::Int32s | Ty::Strings | Ty::Structs(_) => length(4),
            Ty::Struct(fields) => {
                let tagged = usize::from(self.flexible);
                fields
                    .iter()
                    .filter(|f| f.tag.is_none() && f.present_in(self.version))
                    .map(|f| self.smallest_encoding(f.ty))
                    .sum::<usize>()
                    + tagged
            }
        }
    }
}

/// The width of a length in classic (non-flexible) versions.
#[derive(Clone, Copy)]
enum Classic {
    Int16,
    Int32,
}
