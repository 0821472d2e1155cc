#!/usr/bin/env python3
"""An independent reader of .kbs segments, written from docs/FORMAT.md alone.

Reads plain and encrypted (format 1.1) segments with codec none or lz4 and prints their
records as JSON, in the golden vectors' sidecar form. It shares no code with kbs: its age
X25519 unwrap follows https://age-encryption.org/v1, with the `cryptography` package for
X25519, HKDF-SHA256, HMAC-SHA256 and ChaCha20-Poly1305, and its LZ4 block decoder follows
the LZ4 block format. Every checksum and tag is checked; any mismatch exits non-zero.

usage: spec_reader.py SEGMENT [IDENTITY_FILE]
"""

import base64
import json
import struct
import sys
import zlib

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def fail(message):
    sys.exit(f"spec_reader: {message}")


# --- CRC-64/XZ (FORMAT.md, Conventions) ---------------------------------------------------
def _crc64_table():
    poly = 0xC96C5795D7870F42  # 0x42f0e1eba9ea3693 reflected
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC64_TABLE = _crc64_table()


def crc64(data):
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


# --- varints ---------------------------------------------------------------------------
def varint(buf, pos, max_bytes):
    value, shift = 0, 0
    for i in range(max_bytes):
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos + i + 1
    fail("varint too long")


# --- LZ4 block format ------------------------------------------------------------------
def lz4_length(src, pos, nibble):
    # a nibble of 15 continues in the following bytes, each added, until one is not 255
    length = nibble
    if nibble == 15:
        while True:
            extra = src[pos]
            pos += 1
            length += extra
            if extra != 255:
                break
    return length, pos


def lz4_block_decompress(src, size):
    out = bytearray()
    pos = 0
    while pos < len(src):
        token = src[pos]
        pos += 1
        literals, pos = lz4_length(src, pos, token >> 4)
        out += src[pos : pos + literals]
        pos += literals
        if pos >= len(src):
            break
        distance = src[pos] | src[pos + 1] << 8
        pos += 2
        if distance == 0 or distance > len(out):
            fail("lz4: bad match distance")
        length, pos = lz4_length(src, pos, token & 15)
        length += 4
        start = len(out) - distance
        for i in range(length):
            out.append(out[start + i])
    if len(out) != size:
        fail(f"lz4 block gives {len(out)} bytes, header says {size}")
    return bytes(out)


# --- age v1, X25519 recipients ---------------------------------------------------------
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_decode(text):
    text = text.lower()
    hrp, _, data = text.rpartition("1")
    values = [BECH32.index(c) for c in data]
    # checksum: polymod of hrp expansion + data must be 1 (Bech32, BIP 173)
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    if chk != 1:
        fail("bech32 checksum")
    acc, bits, out = 0, 0, bytearray()
    for v in values[:-6]:
        acc = acc << 5 | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
    return hrp, bytes(out)


def b64(text):
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def age_decrypt(blob, identities):
    header_end = blob.index(b"\n---")
    mac_line_end = blob.index(b"\n", header_end + 1)
    lines = blob[:header_end].decode().split("\n")
    if lines[0] != "age-encryption.org/v1":
        fail("not an age v1 file")
    stanzas, i = [], 1
    while i < len(lines):
        args = lines[i].split(" ")
        body, i = "", i + 1
        while True:
            body += lines[i]
            i += 1
            if len(lines[i - 1]) < 64:
                break
        stanzas.append((args, b64(body)))
    file_key = None
    for args, body in stanzas:
        if args[1] != "X25519":
            continue
        share = b64(args[2])
        for secret in identities:
            private = X25519PrivateKey.from_private_bytes(secret)
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            shared = private.exchange(X25519PublicKey.from_public_bytes(share))
            wrap_key = hkdf(shared, share + public, b"age-encryption.org/v1/X25519")
            try:
                file_key = ChaCha20Poly1305(wrap_key).decrypt(b"\0" * 12, body, None)
                break
            except Exception:
                continue
        if file_key:
            break
    if file_key is None:
        fail("no identity matches the key block")
    mac = hmac.HMAC(hkdf(file_key, b"", b"header"), hashes.SHA256())
    mac.update(blob[: header_end + 4])
    mac.verify(b64(blob[header_end + 5 : mac_line_end].decode()))
    nonce = blob[mac_line_end + 1 : mac_line_end + 17]
    payload_key = hkdf(file_key, nonce, b"payload")
    chunk = blob[mac_line_end + 17 :]
    return ChaCha20Poly1305(payload_key).decrypt(b"\0" * 11 + b"\x01", chunk, None)


def read_identities(path):
    keys = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            hrp, key = bech32_decode(line)
            if hrp != "age-secret-key-":
                fail("not an age identity")
            keys.append(key)
    return keys


# --- the segment -----------------------------------------------------------------------
def read_segment(data, identities):
    magic, version, codec, flags, first_offset, count, stored_crc64 = struct.unpack_from("<4sBBHqQQ", data, 0)
    if magic != b"KBS1" or version != 1 or data[-4:] != b"1SBK":
        fail("bad magic or version")
    if flags & ~3:
        fail(f"unknown flags {flags:#x}")
    if codec not in (0, 1):
        fail("this reader knows codecs none and lz4")
    last_offset, header_crc = struct.unpack_from("<qI", data, len(data) - 16)
    if zlib.crc32(data[:24]) != header_crc or crc64(data[32:]) != stored_crc64:
        fail("checksum mismatch")
    per_record_crc, encrypted = flags & 1, flags & 2
    pos, end, aead = 32, len(data) - 16, None
    if encrypted:
        (block_len,) = struct.unpack_from("<I", data, 32)
        aead = ChaCha20Poly1305(age_decrypt(data[36 : 36 + block_len], identities))
        pos, end = 36 + block_len, end - 40
    records, index = [], 0
    while pos < end:
        base, n, stored, size, crc = struct.unpack_from("<qIIII", data, pos)
        payload = data[pos + 24 : pos + 24 + stored]
        if zlib.crc32(payload) != crc:
            fail("batch checksum mismatch")
        if aead:
            nonce = struct.pack("<QI", index, 0)
            payload = aead.decrypt(nonce, payload, data[:16] + data[pos : pos + 20])
        payload = lz4_block_decompress(payload, size) if codec == 1 else payload
        if len(payload) != size:
            fail("payload size")
        p, first_ts = 0, 0
        for i in range(n):
            start = p
            delta, p = varint(payload, p, 5)
            ts, p = varint(payload, p, 10)
            # the first record's timestamp is absolute, later ones are deltas from it
            if i == 0:
                first_ts = ts
            else:
                ts += first_ts
            fields = []
            for _ in range(2):
                length, p = varint(payload, p, 5)
                fields.append(None if length < 0 else payload[p : p + length])
                p += max(length, 0)
            headers = []
            header_count, p = varint(payload, p, 5)
            for _ in range(header_count):
                klen, p = varint(payload, p, 5)
                key = payload[p : p + klen]
                p += klen
                vlen, p = varint(payload, p, 5)
                headers.append((key, None if vlen < 0 else payload[p : p + vlen]))
                p += max(vlen, 0)
            if per_record_crc:
                (rcrc,) = struct.unpack_from("<I", payload, p)
                if zlib.crc32(payload[start:p]) != rcrc:
                    fail("record checksum mismatch")
                p += 4
            records.append((base + delta, ts, fields[0], fields[1], headers))
        if p != len(payload):
            fail("bytes left in a batch")
        pos += 24 + stored
        index += 1
    if encrypted:
        trailer = data[end : end + 40]
        nonce = struct.pack("<Q", index) + b"\xff" * 4
        aad = data[:24] + struct.pack("<q", last_offset) + trailer[:24]
        aead.decrypt(nonce, trailer[24:], aad)
    if len(records) != count or records[0][0] != first_offset or records[-1][0] != last_offset:
        fail("totals differ from header and footer")
    return records


def enc(value):
    return None if value is None else base64.b64encode(value).decode()


def main():
    data = open(sys.argv[1], "rb").read()
    identities = read_identities(sys.argv[2]) if len(sys.argv) > 2 else []
    out = [
        {
            "offset": offset,
            "timestamp": ts,
            "key": enc(key),
            "value": enc(value),
            "headers": [{"key": enc(k), "value": enc(v)} for k, v in headers],
        }
        for offset, ts, key, value, headers in read_segment(data, identities)
    ]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
