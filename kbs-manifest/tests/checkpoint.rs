//! `Checkpoint`: updates and parsing.

use kbs_manifest::{BackupId, Checkpoint, ManifestError, PartitionCheckpoint, SegmentName, TopicName, UtcTimestamp};

fn position(offset: i64, segment: u64) -> PartitionCheckpoint {
    PartitionCheckpoint {
        offset,
        timestamp: offset * 10,
        segment: SegmentName::new(segment),
        segment_offset: 64,
    }
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new(BackupId::new("b1").unwrap(), UtcTimestamp::from_unix_millis(0).unwrap())
}

#[test]
fn records_positions_forward_only() {
    let mut checkpoint = checkpoint();
    let t = TopicName::new("t").unwrap();
    checkpoint.record(&t, 3, position(10, 0)).unwrap();
    checkpoint.record(&t, 3, position(10, 0)).unwrap();
    checkpoint.record(&t, 3, position(20, 1)).unwrap();
    assert_eq!(checkpoint.position("t", 3), Some(&position(20, 1)));
    let err = checkpoint.record(&t, 3, position(19, 1)).unwrap_err();
    assert!(
        matches!(err, ManifestError::CheckpointRegression { current, proposed, .. }
        if current.offset == 20 && proposed.offset == 19)
    );
    assert!(matches!(
        checkpoint.record(&t, 3, position(25, 0)),
        Err(ManifestError::CheckpointRegression { .. })
    ));
    assert!(matches!(
        checkpoint.record(&t, -1, position(0, 0)),
        Err(ManifestError::InvalidPartition { .. })
    ));
    assert!(matches!(
        checkpoint.record(&t, 4, position(-1, 0)),
        Err(ManifestError::NegativeCheckpointOffset { offset: -1, .. })
    ));
    assert_eq!(checkpoint.position("t", 3), Some(&position(20, 1)));
    assert_eq!(checkpoint.position("t", 4), None);
}

#[test]
fn json_round_trip_with_numeric_partition_order() {
    let mut checkpoint = checkpoint();
    let t = TopicName::new("t").unwrap();
    for partition in [10, 2, 0] {
        checkpoint.record(&t, partition, position(1, 0)).unwrap();
    }
    let json = String::from_utf8(checkpoint.to_json_pretty()).unwrap();
    let (zero, two, ten) = (
        json.find("\"0\"").unwrap(),
        json.find("\"2\"").unwrap(),
        json.find("\"10\"").unwrap(),
    );
    assert!(zero < two && two < ten, "{json}");
    assert_eq!(Checkpoint::from_json(json.as_bytes()).unwrap(), checkpoint);
}

#[test]
fn regression_error_message() {
    let mut checkpoint = checkpoint();
    let t = TopicName::new("orders").unwrap();
    checkpoint.record(&t, 0, position(20, 1)).unwrap();
    assert_eq!(
        checkpoint.record(&t, 0, position(19, 1)).unwrap_err().to_string(),
        "checkpoint of topic orders partition 0 cannot move back from offset 20 in segment-00000001.kbs \
         to offset 19 in segment-00000001.kbs"
    );
}
