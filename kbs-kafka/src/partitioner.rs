//! Where Kafka's producers put a keyed record: the partition the Java client's default
//! partitioner (and librdkafka's `murmur2_random`) chooses for a key.
//!
//! The hash is MurmurHash2 (32-bit, seed `0x9747b28c`) over the key bytes as Kafka's
//! `Utils.murmur2` computes it: the key read as little-endian 32-bit words, the 1 to 3 bytes
//! left over mixed in last, then the final avalanche. The partition is that hash with its sign
//! bit cleared (`Utils.toPositive`, not `abs`), modulo the partition count.

/// Kafka's 32-bit MurmurHash2 of `data` (`org.apache.kafka.common.utils.Utils.murmur2`).
///
/// ```
/// assert_eq!(kbs_kafka::murmur2(b"foobar"), -790_332_482);
/// ```
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The length enters as Java's int; keys are far below 2^31 bytes (a record is at most
    // 2 GiB), and the truncation is what Java does for the low 32 bits either way.
    let mut h = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a record with key `key` in a topic of
/// `partitions` partitions: `toPositive(murmur2(key)) % partitions`. `None` for a topic
/// without partitions.
///
/// ```
/// // Any Kafka producer puts key "order-17" of a 24-partition topic here.
/// let p = kbs_kafka::default_partition(b"order-17", 24).unwrap();
/// assert!((0..24).contains(&p));
/// ```
pub fn default_partition(key: &[u8], partitions: i32) -> Option<i32> {
    (partitions > 0).then(|| (murmur2(key) & 0x7fff_ffff) % partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Apache Kafka's own `UtilsTest.testMurmur2` checks, which cover every tail
    /// length (0 to 3 bytes after the last word).
    #[test]
    fn hashes_match_kafkas_published_test_values() {
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
        }
    }

    #[test]
    fn partitions_use_the_sign_bit_cleared_hash() {
        // murmur2("21") is negative: toPositive clears the sign bit rather than negating.
        let positive = (-973_932_308i32 & 0x7fff_ffff) % 7;
        assert_eq!(default_partition(b"21", 7), Some(positive));
        assert_ne!(positive, 973_932_308 % 7);
        assert_eq!(default_partition(b"21", 0), None);
        assert_eq!(default_partition(b"", 1), Some(0));
    }
}
