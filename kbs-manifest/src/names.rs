//! Validated names that end up in object keys: topic names, backup ids and segment file names.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ManifestError, NameKind};

/// Longest name Kafka allows for a topic (and this crate for a backup id).
pub const MAX_NAME_LEN: usize = 249;

/// Checks the Kafka naming rule shared by topic names and backup ids.
fn check_kafka_style(kind: NameKind, value: &str) -> Result<(), ManifestError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_NAME_LEN {
        "must be at most 249 characters long"
    } else if value == "." || value == ".." {
        "must not be \".\" or \"..\""
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "may only contain ASCII letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(ManifestError::InvalidName {
        kind,
        value: value.to_owned(),
        reason,
    })
}

macro_rules! kafka_style_name {
    ($(#[$meta:meta])* $name:ident, $kind:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, ManifestError> {
                let value = value.into();
                check_kafka_style($kind, &value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ManifestError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ManifestError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ManifestError;

            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

kafka_style_name!(
    /// A Kafka topic name: 1–249 characters from `[a-zA-Z0-9._-]`, and not `.` or `..`.
    ///
    /// These are exactly the names Kafka accepts, and none of them can climb out of a
    /// directory or object prefix, so a topic name is safe to put in an object key.
    /// Invalid names are rejected when parsing JSON, so a manifest naming the topic
    /// `"../../etc"` does not load.
    ///
    /// ```
    /// use kbs_manifest::TopicName;
    ///
    /// assert_eq!(TopicName::new("orders.v2").unwrap().as_str(), "orders.v2");
    /// assert!(TopicName::new("../../etc").is_err());
    /// assert!(TopicName::new("..").is_err());
    /// ```
    TopicName,
    NameKind::Topic
);

kafka_style_name!(
    /// A backup id: the first component of every key of a backup. Same rule as a Kafka
    /// topic name: 1–249 characters from `[a-zA-Z0-9._-]`, and not `.` or `..`.
    ///
    /// ```
    /// use kbs_manifest::BackupId;
    ///
    /// assert!(BackupId::new("nightly-2026-11-21").is_ok());
    /// assert!(BackupId::new("a/b").is_err());
    /// ```
    BackupId,
    NameKind::BackupId
);

/// A segment file name, `segment-NNNNNNNN.kbs`: the segment's sequence number within
/// its partition (from 0), zero-padded to 8 digits (`printf("segment-%08d.kbs")`).
///
/// Sequence numbers above 99,999,999 take as many digits as they need, without leading
/// zeros (`segment-100000000.kbs`). Parsing accepts exactly the names this type writes,
/// so each sequence number has one name. Order segments by [`sequence`](Self::sequence),
/// not by name: beyond 8 digits, string order differs from numeric order.
///
/// In JSON it is the name string.
///
/// ```
/// use kbs_manifest::SegmentName;
///
/// let name: SegmentName = "segment-00000042.kbs".parse().unwrap();
/// assert_eq!(name.sequence(), 42);
/// assert_eq!(SegmentName::new(7).to_string(), "segment-00000007.kbs");
/// assert!("segment-42.kbs".parse::<SegmentName>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName(u64);

impl SegmentName {
    /// The name of a partition's first segment, `segment-00000000.kbs`.
    pub const FIRST: SegmentName = SegmentName(0);

    /// The segment name for a sequence number.
    pub fn new(sequence: u64) -> Self {
        SegmentName(sequence)
    }

    /// The sequence number within the partition.
    pub fn sequence(self) -> u64 {
        self.0
    }

    /// The name of the following segment (`None` after `u64::MAX`).
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(SegmentName)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment-{:08}.kbs", self.0)
    }
}

impl FromStr for SegmentName {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ManifestError::InvalidName {
            kind: NameKind::SegmentFile,
            value: s.to_owned(),
            reason,
        };
        let digits = s
            .strip_prefix("segment-")
            .and_then(|rest| rest.strip_suffix(".kbs"))
            .ok_or_else(|| invalid("expected \"segment-NNNNNNNN.kbs\""))?;
        if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected at least 8 decimal digits"));
        }
        if digits.len() > 8 && digits.starts_with('0') {
            return Err(invalid("sequence numbers beyond 8 digits must not have leading zeros"));
        }
        digits
            .parse::<u64>()
            .map(SegmentName)
            .map_err(|_| invalid("sequence number does not fit in 64 bits"))
    }
}

impl TryFrom<&str> for SegmentName {
    type Error = ManifestError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl Serialize for SegmentName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SegmentName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names() {
        for ok in ["a", "A-z_0.9", "...", ".a", &"x".repeat(249)] {
            assert!(TopicName::new(ok).is_ok(), "{ok}");
            assert!(BackupId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "../x",
            "a b",
            "é",
            "a\0",
            "%2e%2e",
            &"x".repeat(250),
        ] {
            assert!(TopicName::new(bad).is_err(), "{bad:?}");
            assert!(BackupId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segment_names() {
        assert_eq!(SegmentName::new(0).to_string(), "segment-00000000.kbs");
        assert_eq!(SegmentName::new(99_999_999).to_string(), "segment-99999999.kbs");
        assert_eq!(SegmentName::new(100_000_000).to_string(), "segment-100000000.kbs");
        assert_eq!(
            SegmentName::new(u64::MAX).to_string(),
            "segment-18446744073709551615.kbs"
        );
        for n in [0, 1, 99_999_999, 100_000_000, u64::MAX] {
            let name = SegmentName::new(n);
            assert_eq!(name.to_string().parse::<SegmentName>().unwrap(), name);
        }
        for bad in [
            "segment-0000000.kbs",
            "segment-000000000.kbs",
            "segment-0000000a.kbs",
            "segment-+0000001.kbs",
            "segment-18446744073709551616.kbs",
            "Segment-00000000.kbs",
            "segment-00000000.KBS",
            "segment-00000000.kbs/",
            "../segment-00000000.kbs",
            "segment-00000000",
            "",
        ] {
            assert!(bad.parse::<SegmentName>().is_err(), "{bad}");
        }
        assert_eq!(SegmentName::new(u64::MAX).next(), None);
        assert_eq!(SegmentName::FIRST.next(), Some(SegmentName::new(1)));
    }
}
