//! Shared inputs for the kbs benchmarks.
//!
//! The benchmarks themselves live in `benches/` (criterion); see `benches/README.md` for how to
//! run them and the latest measured table.

use bytes::Bytes;

/// A realistic Kafka record for benchmarks: a small key, a JSON-ish value of about 1 KiB and two
/// headers.
#[derive(Debug, Clone)]
pub struct SampleRecord {
    /// Offset.
    pub offset: i64,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
    /// Key, like `user-123456`.
    pub key: Bytes,
    /// JSON-ish value of roughly 1 KiB.
    pub value: Bytes,
    /// Two headers: a trace id and a content type.
    pub headers: [(Bytes, Bytes); 2],
}

/// Deterministic pseudo-random numbers (xorshift64*), so every run benchmarks the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "order",
    "created",
    "shipped",
    "pending",
    "customer",
    "premium",
    "warehouse",
    "berlin",
    "lisbon",
    "express",
    "standard",
    "refund",
    "invoice",
    "paid",
    "cart",
    "mobile",
    "desktop",
    "checkout",
    "session",
    "campaign",
];

/// `count` sample records with consecutive offsets from 0 and timestamps 1 ms apart (with some
/// jitter), values of about 1 KiB.
///
/// Like records decoded from a Kafka fetch response, their bytes are slices of one contiguous
/// buffer, laid out in record order.
pub fn sample_records(count: usize) -> Vec<SampleRecord> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = 1_763_700_000_000i64;
    let mut arena: Vec<u8> = Vec::with_capacity(count * 1200);
    let mut layout = Vec::with_capacity(count);
    let push = |arena: &mut Vec<u8>, bytes: &[u8]| {
        let at = arena.len();
        arena.extend_from_slice(bytes);
        at..arena.len()
    };
    for i in 0..count {
        let key = format!("user-{:06}", rng.below(1_000_000));
        let mut value = String::with_capacity(1100);
        value.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"ts\":{},\"amount\":{}.{:02},\"items\":[",
            i,
            key,
            start + i as i64,
            rng.below(10_000),
            rng.below(100)
        ));
        let mut first = true;
        while value.len() < 1000 {
            if !first {
                value.push(',');
            }
            first = false;
            value.push_str(&format!(
                "{{\"sku\":\"{:08x}\",\"qty\":{},\"tag\":\"{}-{}\"}}",
                rng.next() as u32,
                rng.below(20),
                WORDS[rng.below(WORDS.len() as u64) as usize],
                WORDS[rng.below(WORDS.len() as u64) as usize]
            ));
        }
        value.push_str("]}");
        let trace = format!("{:016x}{:016x}", rng.next(), rng.next());
        let timestamp = start + i as i64 + rng.below(5) as i64 - 2;
        let ranges = [
            push(&mut arena, key.as_bytes()),
            push(&mut arena, value.as_bytes()),
            push(&mut arena, b"trace-id"),
            push(&mut arena, trace.as_bytes()),
            push(&mut arena, b"content-type"),
            push(&mut arena, b"application/json"),
        ];
        layout.push((timestamp, ranges));
    }
    let arena = Bytes::from(arena);
    layout
        .into_iter()
        .enumerate()
        .map(|(i, (timestamp, [key, value, h1k, h1v, h2k, h2v]))| SampleRecord {
            offset: i as i64,
            timestamp,
            key: arena.slice(key),
            value: arena.slice(value),
            headers: [
                (arena.slice(h1k), arena.slice(h1v)),
                (arena.slice(h2k), arena.slice(h2v)),
            ],
        })
        .collect()
}
