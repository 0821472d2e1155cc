//! Object keys of a backup, relative to the storage root.
//!
//! ```text
//! <backup-id>/manifest.json
//! <backup-id>/checkpoints/checkpoint.json
//! <backup-id>/lease.json
//! <backup-id>/deleting.json          (only while the backup is being deleted)
//! <backup-id>/restores/<restore-id>/progress.json, lease.json
//! <backup-id>/topics/<topic>/<partition>/segment-NNNNNNNN.kbs
//! ```
//!
//! Every component is a validated name ([`BackupId`], [`TopicName`], [`SegmentName`])
//! or a non-negative partition number, so no key can leave its backup's prefix.
//!
//! ```
//! use kbs_manifest::{BackupId, SegmentName, TopicName, layout};
//!
//! let id = BackupId::new("nightly-2026-11-21")?;
//! let topic = TopicName::new("orders")?;
//! assert_eq!(layout::manifest_key(&id), "nightly-2026-11-21/manifest.json");
//! let key = layout::segment_key(&id, &topic, 2, SegmentName::new(7))?;
//! assert_eq!(key, "nightly-2026-11-21/topics/orders/2/segment-00000007.kbs");
//! let parsed = layout::parse_segment_key(&key)?;
//! assert_eq!((parsed.topic.as_str(), parsed.partition, parsed.segment.sequence()), ("orders", 2, 7));
//! assert!(layout::parse_segment_key("nightly/topics/../2/segment-00000007.kbs").is_err());
//! # Ok::<(), kbs_manifest::ManifestError>(())
//! ```

use crate::error::ManifestError;
use crate::names::{BackupId, SegmentName, TopicName};
use crate::serde_util::parse_partition_key;

/// `<backup-id>/`: the prefix of every key of the backup.
pub fn backup_prefix(backup_id: &BackupId) -> String {
    format!("{backup_id}/")
}

/// `<backup-id>/manifest.json`.
pub fn manifest_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/manifest.json")
}

/// `<backup-id>/checkpoints/checkpoint.json`.
pub fn checkpoint_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/checkpoints/checkpoint.json")
}

/// `<backup-id>/lease.json`: the lease object that guards a backup against concurrent
/// writers.
pub fn lease_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/lease.json")
}

/// `<backup-id>/deleting.json`: the deletion marker. Written before any object of a backup
/// is deleted and removed last, so a backup with it is gone for every reader, and a deletion
/// interrupted at any point is finished by running it again.
pub fn deletion_marker_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/deleting.json")
}

/// `<backup-id>/topics/<topic>/<partition>/`: the prefix of a partition's segments.
/// Fails for a negative partition.
pub fn partition_prefix(backup_id: &BackupId, topic: &TopicName, partition: i32) -> Result<String, ManifestError> {
    if partition < 0 {
        return Err(ManifestError::InvalidPartition {
            value: partition.to_string(),
        });
    }
    Ok(format!("{backup_id}/topics/{topic}/{partition}/"))
}

/// `<backup-id>/topics/<topic>/<partition>/segment-NNNNNNNN.kbs`. Fails for a negative
/// partition.
pub fn segment_key(
    backup_id: &BackupId,
    topic: &TopicName,
    partition: i32,
    segment: SegmentName,
) -> Result<String, ManifestError> {
    Ok(format!("{}{segment}", partition_prefix(backup_id, topic, partition)?))
}

/// The parts of a segment key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKey {
    /// The backup.
    pub backup_id: BackupId,
    /// The topic.
    pub topic: TopicName,
    /// The partition (non-negative).
    pub partition: i32,
    /// The segment, with its sequence number.
    pub segment: SegmentName,
}

/// Parses a key made by [`segment_key`], validating every component; anything else
/// (other shapes, extra or empty components, `..`, non-canonical numbers) fails with
/// [`ManifestError::InvalidSegmentKey`].
pub fn parse_segment_key(key: &str) -> Result<SegmentKey, ManifestError> {
    let invalid = |reason: String| ManifestError::InvalidSegmentKey {
        key: key.to_owned(),
        reason,
    };
    let parts: Vec<&str> = key.split('/').collect();
    let [backup_id, "topics", topic, partition, segment] = parts[..] else {
        return Err(invalid(
            "expected <backup-id>/topics/<topic>/<partition>/segment-NNNNNNNN.kbs".to_owned(),
        ));
    };
    Ok(SegmentKey {
        backup_id: BackupId::new(backup_id).map_err(|e| invalid(e.to_string()))?,
        topic: TopicName::new(topic).map_err(|e| invalid(e.to_string()))?,
        partition: parse_partition_key(partition).map_err(|e| invalid(e.to_string()))?,
        segment: segment.parse().map_err(|e: ManifestError| invalid(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BackupId {
        BackupId::new("b1").unwrap()
    }

    #[test]
    fn keys() {
        let topic = TopicName::new("t.x").unwrap();
        assert_eq!(backup_prefix(&id()), "b1/");
        assert_eq!(manifest_key(&id()), "b1/manifest.json");
        assert_eq!(checkpoint_key(&id()), "b1/checkpoints/checkpoint.json");
        assert_eq!(lease_key(&id()), "b1/lease.json");
        assert_eq!(partition_prefix(&id(), &topic, 0).unwrap(), "b1/topics/t.x/0/");
        assert_eq!(
            segment_key(&id(), &topic, 11, SegmentName::new(123_456_789)).unwrap(),
            "b1/topics/t.x/11/segment-123456789.kbs"
        );
        assert!(segment_key(&id(), &topic, -1, SegmentName::FIRST).is_err());
        assert!(partition_prefix(&id(), &topic, i32::MIN).is_err());
    }

    #[test]
    fn parse_round_trip() {
        let topic = TopicName::new("orders").unwrap();
        for partition in [0, 1, 10, i32::MAX] {
            for sequence in [0, 5, 99_999_999, 100_000_000] {
                let key = segment_key(&id(), &topic, partition, SegmentName::new(sequence)).unwrap();
                let parsed = parse_segment_key(&key).unwrap();
                assert_eq!(
                    parsed,
                    SegmentKey {
                        backup_id: id(),
                        topic: topic.clone(),
                        partition,
                        segment: SegmentName::new(sequence)
                    }
                );
            }
        }
    }

    #[test]
    fn hostile_keys() {
        for bad in [
            "",
            "b1",
            "b1/manifest.json",
            "/b1/topics/t/0/segment-00000000.kbs",
            "b1/topics/t/0/segment-00000000.kbs/",
            "b1//topics/t/0/segment-00000000.kbs",
            "../topics/t/0/segment-00000000.kbs",
            "b1/topics/../0/segment-00000000.kbs",
            "b1/topics/./0/segment-00000000.kbs",
            "b1/topics/t/-1/segment-00000000.kbs",
            "b1/topics/t/01/segment-00000000.kbs",
            "b1/topics/t/0/segment-0.kbs",
            "b1/topics/t/0/../segment-00000000.kbs",
            "b1/restores/t/0/segment-00000000.kbs",
            "b1\\topics\\t\\0\\segment-00000000.kbs",
        ] {
            let err = parse_segment_key(bad).unwrap_err();
            assert!(matches!(err, ManifestError::InvalidSegmentKey { .. }), "{bad}: {err}");
        }
    }
}
