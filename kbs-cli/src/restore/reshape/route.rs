//! Which target partition a record of a repartitioned topic goes to.

use serde::Serialize;

/// How a restore places records in the target topic's partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repartition {
    /// Each source partition into one target partition: the same number, or the one
    /// `--partition-map` names.
    #[default]
    Keep,
    /// A keyed record into the partition Kafka's default partitioner gives its key
    /// (`toPositive(murmur2(key)) % partitions`, as the Java producer and librdkafka's
    /// `murmur2_random` choose); a record without a key round robin, as [`Repartition::RoundRobin`].
    Key,
    /// Every record round robin by its place in the source: the record at offset `o` of source
    /// partition `p` into target partition `(p + o) % partitions`. Deterministic, so a resumed
    /// restore places every record where the interrupted run did.
    RoundRobin,
}

impl Repartition {
    /// Parses `keep`, `key` or `round-robin`.
    pub fn parse(text: &str) -> Option<Repartition> {
        match text.to_ascii_lowercase().as_str() {
            "keep" => Some(Repartition::Keep),
            "key" => Some(Repartition::Key),
            "round-robin" | "roundrobin" => Some(Repartition::RoundRobin),
            _ => None,
        }
    }

    /// `keep`, `key` or `round-robin`.
    pub fn name(self) -> &'static str {
        match self {
            Repartition::Keep => "keep",
            Repartition::Key => "key",
            Repartition::RoundRobin => "round-robin",
        }
    }

    /// Whether records are spread over the target's partitions (not kept one to one).
    pub fn reshapes(self) -> bool {
        self != Repartition::Keep
    }

    /// The target partition, out of `partitions` (at least 1), of the record at `offset` of
    /// source partition `source_partition` whose key is `key`. For [`Repartition::Keep`], the
    /// source partition.
    pub fn target_partition(self, key: Option<&[u8]>, source_partition: i32, offset: i64, partitions: i32) -> i32 {
        let partitions = partitions.max(1);
        let round_robin = || (i64::from(source_partition) + offset).rem_euclid(i64::from(partitions)) as i32;
        match (self, key) {
            (Repartition::Keep, _) => source_partition,
            (Repartition::Key, Some(key)) => kbs_kafka::default_partition(key, partitions).unwrap_or(0),
            (Repartition::Key, None) | (Repartition::RoundRobin, _) => round_robin(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_records_go_where_kafkas_partitioner_puts_them() {
        // murmur2("foobar") = -790332482; toPositive = 1357151166.
        assert_eq!(
            Repartition::Key.target_partition(Some(b"foobar"), 3, 17, 24),
            1_357_151_166 % 24
        );
        // The same key lands in the same partition whatever its source partition and offset.
        assert_eq!(
            Repartition::Key.target_partition(Some(b"foobar"), 0, 0, 24),
            Repartition::Key.target_partition(Some(b"foobar"), 11, 99, 24)
        );
        // An empty key is a key (the Java producer hashes it), not a missing one.
        assert_eq!(
            Repartition::Key.target_partition(Some(b""), 1, 0, 5),
            kbs_kafka::default_partition(b"", 5).unwrap()
        );
    }

    #[test]
    fn round_robin_cycles_through_every_partition_from_each_source() {
        for source in 0..3 {
            let mut seen: Vec<i32> = (0..10)
                .map(|o| Repartition::RoundRobin.target_partition(Some(b"k"), source, o, 5))
                .collect();
            assert_eq!(seen[0], source % 5);
            seen.sort_unstable();
            assert_eq!(seen, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        }
        assert_eq!(Repartition::Key.target_partition(None, 2, 4, 5), 1);
        assert_eq!(Repartition::Keep.target_partition(Some(b"k"), 7, 4, 5), 7);
        assert_eq!(Repartition::RoundRobin.target_partition(None, 2, 4, 1), 0);
    }

    #[test]
    fn names_parse_back() {
        for r in [Repartition::Keep, Repartition::Key, Repartition::RoundRobin] {
            assert_eq!(Repartition::parse(r.name()), Some(r));
        }
        assert_eq!(Repartition::parse("hash"), None);
    }
}
