//! Strict map deserialisation: duplicate keys are errors, partition keys are canonical.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::error::ManifestError;
use crate::names::TopicName;

/// Partition number → value, as JSON objects keyed by decimal strings.
pub(crate) type PartitionMap<T> = BTreeMap<i32, T>;
/// Topic → partition → value.
pub(crate) type TopicPartitionMap<T> = BTreeMap<TopicName, PartitionMap<T>>;

/// Parses a partition key: a canonical decimal number from 0 to `i32::MAX` (no sign,
/// no leading zeros, no spaces).
pub(crate) fn parse_partition_key(s: &str) -> Result<i32, ManifestError> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<i32>() {
        Ok(p) if canonical => Ok(p),
        _ => Err(ManifestError::InvalidPartition { value: s.to_owned() }),
    }
}

/// A `BTreeMap` whose JSON object must not repeat a key.
pub(crate) struct UniqueMap<K, V>(pub(crate) BTreeMap<K, V>);

impl<'de, K, V> Deserialize<'de> for UniqueMap<K, V>
where
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord + fmt::Display,
            V: Deserialize<'de>,
        {
            type Value = UniqueMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object without duplicate keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some(key) = access.next_key::<K>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
                    }
                    let value = access.next_value::<V>()?;
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A partition number used as a JSON object key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PartitionKey(i32);

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        parse_partition_key(&s).map(PartitionKey).map_err(de::Error::custom)
    }
}

/// A strict topic → partition → value map.
pub(crate) struct StrictTopicPartitionMap<T>(pub(crate) TopicPartitionMap<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrictTopicPartitionMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = UniqueMap::<TopicName, UniqueMap<PartitionKey, T>>::deserialize(deserializer)?;
        Ok(StrictTopicPartitionMap(
            raw.0
                .into_iter()
                .map(|(topic, partitions)| (topic, partitions.0.into_iter().map(|(k, v)| (k.0, v)).collect()))
                .collect(),
        ))
    }
}

/// `deserialize_with` for a topic → partition → value map.
pub(crate) fn topic_partition_map<'de, D, T>(deserializer: D) -> Result<TopicPartitionMap<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    StrictTopicPartitionMap::deserialize(deserializer).map(|m| m.0)
}

/// `deserialize_with` for an optional string → string map without duplicate keys.
pub(crate) fn optional_string_map<'de, D>(deserializer: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<UniqueMap<String, String>>::deserialize(deserializer).map(|m| m.map(|m| m.0))
}

/// `deserialize_with` for an optional group → topic → partition → value map.
pub(crate) fn optional_group_map<'de, D, T>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, TopicPartitionMap<T>>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let raw = Option::<UniqueMap<String, StrictTopicPartitionMap<T>>>::deserialize(deserializer)?;
    Ok(raw.map(|groups| groups.0.into_iter().map(|(g, m)| (g, m.0)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys() {
        assert_eq!(parse_partition_key("0").unwrap(), 0);
        assert_eq!(parse_partition_key("17").unwrap(), 17);
        assert_eq!(parse_partition_key("2147483647").unwrap(), i32::MAX);
        for bad in ["", "-1", "+1", "01", "00", " 1", "1 ", "1.0", "2147483648", "x", "１"] {
            assert!(parse_partition_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = serde_json::from_str::<UniqueMap<String, u8>>(r#"{"a":1,"a":2}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
        let err = serde_json::from_str::<StrictTopicPartitionMap<u8>>(r#"{"t":{"1":1,"1":2}}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }
}
