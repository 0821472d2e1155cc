//! `Manifest::validate`: one test per rule, each breaking a consistent example.

use kbs_manifest::{BackupStatus, Gap, Manifest, ProblemKind, SegmentName, TimeRange, ValidationProblem};

const DOCUMENTED: &[u8] = include_bytes!("data/manifest-documented.json");
const FULL: &[u8] = include_bytes!("data/manifest-full.json");

/// A change that breaks one rule.
type Edit = fn(&mut Manifest);

fn full() -> Manifest {
    Manifest::from_json(FULL).unwrap()
}

fn documented() -> Manifest {
    Manifest::from_json(DOCUMENTED).unwrap()
}

/// Asserts that `validate` finds a problem at the given place matching `kind`.
#[track_caller]
fn assert_problem(
    manifest: &Manifest,
    topic: Option<&str>,
    partition: Option<i32>,
    segment: Option<u64>,
    kind: impl Fn(&ProblemKind) -> bool,
) -> Vec<ValidationProblem> {
    let problems = manifest.validate();
    let found = problems.iter().any(|p| {
        p.topic.as_ref().map(|t| t.as_str()) == topic
            && p.partition == partition
            && p.segment == segment.map(SegmentName::new)
            && kind(&p.kind)
    });
    assert!(found, "expected problem not found in {problems:#?}");
    for problem in &problems {
        assert!(!problem.to_string().is_empty());
    }
    problems
}

#[test]
fn examples_are_consistent() {
    assert_eq!(full().validate(), vec![]);
    assert_eq!(documented().validate(), vec![]);
}

#[test]
fn statistics_must_equal_sums() {
    let fields: [(&str, Edit); 6] = [
        ("statistics.topics", |m| m.statistics.topics += 1),
        ("statistics.partitions", |m| m.statistics.partitions -= 1),
        ("statistics.segments", |m| m.statistics.segments += 1),
        ("statistics.records", |m| m.statistics.records -= 1),
        ("statistics.uncompressed_bytes", |m| {
            m.statistics.uncompressed_bytes += 1
        }),
        ("statistics.compressed_bytes", |m| m.statistics.compressed_bytes = 0),
    ];
    for (name, edit) in fields {
        let mut manifest = full();
        edit(&mut manifest);
        let problems = assert_problem(
            &manifest,
            None,
            None,
            None,
            |k| matches!(k, ProblemKind::SummaryMismatch { field, .. } if *field == name),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
    // Plain manifests: counts are checked, byte totals cannot be.
    let mut manifest = documented();
    manifest.statistics.compressed_bytes = 1;
    assert_eq!(manifest.validate(), vec![]);
    manifest.statistics.segments = 5;
    assert_problem(&manifest, None, None, None, |k| {
        matches!(
            k,
            ProblemKind::SummaryMismatch {
                field: "statistics.segments",
                recorded: 5,
                derived: 4
            }
        )
    });
}

#[test]
fn partition_summary_must_match_segment_files() {
    let edits: [(&str, Edit); 4] = [
        ("first_offset", |m| m.topics[0].partitions[0].first_offset = 1),
        ("last_offset", |m| m.topics[0].partitions[0].last_offset = 1000),
        ("records", |m| m.topics[0].partitions[0].records = 1499),
        ("segments", |m| m.topics[0].partitions[0].segments = 3),
    ];
    for (name, edit) in edits {
        let mut manifest = full();
        edit(&mut manifest);
        assert_problem(
            &manifest,
            Some("orders"),
            Some(0),
            None,
            |k| matches!(k, ProblemKind::SummaryMismatch { field, .. } if *field == name),
        );
    }
}

#[test]
fn time_range_must_match_segment_files() {
    let mut manifest = full();
    manifest.time_range = Some(TimeRange {
        earliest_timestamp: 0,
        latest_timestamp: 1_795_239_900_000,
    });
    assert_problem(&manifest, None, None, None, |k| {
        matches!(k, ProblemKind::TimeRangeMismatch { .. })
    });
    let mut manifest = full();
    manifest.time_range = None;
    assert_problem(&manifest, None, None, None, |k| {
        matches!(
            k,
            ProblemKind::TimeRangeMismatch {
                recorded: None,
                derived: Some(_)
            }
        )
    });
}

#[test]
fn time_range_required_when_there_are_records() {
    let mut manifest = documented();
    manifest.time_range = None;
    let problems = assert_problem(&manifest, None, None, None, |k| {
        matches!(k, ProblemKind::TimeRangeMissing)
    });
    assert_eq!(problems.len(), 1);
}

#[test]
fn timestamps_must_be_ordered() {
    let mut manifest = full();
    let segment = &mut manifest.topics[1].partitions[0].segment_files[0];
    std::mem::swap(&mut segment.min_timestamp, &mut segment.max_timestamp);
    assert_problem(&manifest, Some("payments"), Some(0), Some(0), |k| {
        matches!(
            k,
            ProblemKind::TimestampsInverted {
                min: 1_795_239_900_000,
                max: 1_795_236_800_000
            }
        )
    });
    let mut manifest = documented();
    manifest.time_range = Some(TimeRange {
        earliest_timestamp: 2,
        latest_timestamp: 1,
    });
    assert_problem(&manifest, None, None, None, |k| {
        matches!(k, ProblemKind::TimestampsInverted { min: 2, max: 1 })
    });
}

#[test]
fn status_must_agree_with_completed_at() {
    let mut manifest = full();
    manifest.completed_at = None;
    assert_problem(&manifest, None, None, None, |k| {
        matches!(
            k,
            ProblemKind::StatusMismatch {
                status: BackupStatus::Complete,
                completed_at: None
            }
        )
    });
    let mut manifest = full();
    manifest.status = Some(BackupStatus::InProgress);
    assert_problem(&manifest, None, None, None, |k| {
        matches!(
            k,
            ProblemKind::StatusMismatch {
                status: BackupStatus::InProgress,
                completed_at: Some(_)
            }
        )
    });
    // Without status (plain manifest), completed_at alone is fine either way.
    let mut manifest = documented();
    manifest.completed_at = None;
    assert_eq!(manifest.validate(), vec![]);
    assert!(!manifest.is_complete());
}

#[test]
fn completed_at_not_before_created_at() {
    let mut manifest = full();
    manifest.completed_at = Some("2026-11-21T06:19:44.122Z".parse().unwrap());
    assert_problem(&manifest, None, None, None, |k| {
        matches!(k, ProblemKind::CompletedBeforeCreated { .. })
    });
}

#[test]
fn topics_sorted_and_unique() {
    let mut manifest = full();
    manifest.topics.swap(0, 1);
    assert_problem(
        &manifest,
        Some("orders"),
        None,
        None,
        |k| matches!(k, ProblemKind::TopicOutOfOrder { previous } if previous.as_str() == "payments"),
    );
    let mut manifest = documented();
    manifest.topics[1].name = manifest.topics[0].name.clone();
    assert_problem(&manifest, Some("orders"), None, None, |k| {
        matches!(k, ProblemKind::TopicOutOfOrder { .. })
    });
}

#[test]
fn partitions_sorted_and_unique() {
    let mut manifest = full();
    manifest.topics[0].partitions.swap(0, 1);
    assert_problem(&manifest, Some("orders"), Some(0), None, |k| {
        matches!(k, ProblemKind::PartitionOutOfOrder { previous: 1 })
    });
    let mut manifest = documented();
    manifest.topics[0].partitions[1].partition = 0;
    assert_problem(&manifest, Some("orders"), Some(0), None, |k| {
        matches!(k, ProblemKind::PartitionOutOfOrder { previous: 0 })
    });
}

#[test]
fn partition_numbers_not_negative() {
    let mut manifest = documented();
    manifest.topics[1].partitions[0].partition = -1;
    assert_problem(&manifest, Some("payments"), Some(-1), None, |k| {
        matches!(k, ProblemKind::NegativePartition)
    });
}

#[test]
fn partition_numbers_below_partition_count() {
    let mut manifest = full();
    manifest.topics[0].partition_count = Some(1);
    let problems = assert_problem(&manifest, Some("orders"), Some(1), None, |k| {
        matches!(k, ProblemKind::PartitionBeyondCount { partition_count: 1 })
    });
    assert_eq!(problems.len(), 1);
}

#[test]
fn offsets_not_negative() {
    let mut manifest = documented();
    manifest.topics[1].partitions[0].first_offset = -5;
    manifest.topics[1].partitions[0].records = 50;
    assert_problem(&manifest, Some("payments"), Some(0), None, |k| {
        matches!(
            k,
            ProblemKind::NegativeOffset {
                field: "first_offset",
                value: -5
            }
        )
    });
    let mut manifest = full();
    manifest.topics[0].partitions[1].gaps[0].from_offset = -1;
    assert_problem(&manifest, Some("orders"), Some(1), None, |k| {
        matches!(
            k,
            ProblemKind::NegativeOffset {
                field: "gaps.from_offset",
                value: -1
            }
        )
    });
    let mut manifest = full();
    manifest.topics[1].partitions[0].segment_files[0].first_offset = -1;
    assert_problem(&manifest, Some("payments"), Some(0), Some(0), |k| {
        matches!(
            k,
            ProblemKind::NegativeOffset {
                field: "first_offset",
                value: -1
            }
        )
    });
}

#[test]
fn offset_ranges_not_inverted() {
    let mut manifest = documented();
    manifest.topics[1].partitions[0].first_offset = 200;
    assert_problem(&manifest, Some("payments"), Some(0), None, |k| {
        matches!(
            k,
            ProblemKind::OffsetRangeInverted {
                first_offset: 200,
                last_offset: 119
            }
        )
    });
    let mut manifest = full();
    manifest.topics[1].partitions[0].segment_files[0].last_offset = -1;
    assert_problem(&manifest, Some("payments"), Some(0), Some(0), |k| {
        matches!(k, ProblemKind::OffsetRangeInverted { .. })
    });
}

#[test]
fn record_counts_fit_offset_ranges() {
    let mut manifest = documented();
    manifest.topics[1].partitions[0].records = 121;
    manifest.statistics.records += 21;
    let problems = assert_problem(&manifest, Some("payments"), Some(0), None, |k| {
        matches!(
            k,
            ProblemKind::RecordCountImpossible {
                records: 121,
                first_offset: 0,
                last_offset: 119
            }
        )
    });
    assert_eq!(problems.len(), 1);
    let mut manifest = full();
    manifest.topics[1].partitions[0].segment_files[0].records = 0;
    assert_problem(&manifest, Some("payments"), Some(0), Some(0), |k| {
        matches!(k, ProblemKind::RecordCountImpossible { records: 0, .. })
    });
}

#[test]
fn segments_in_order_without_overlap() {
    let mut manifest = full();
    manifest.topics[0].partitions[0].segment_files[1].first_offset = 999;
    assert_problem(&manifest, Some("orders"), Some(0), Some(1), |k| {
        matches!(
            k,
            ProblemKind::SegmentOverlap {
                first_offset: 999,
                previous_last_offset: 999
            }
        )
    });
    let mut manifest = full();
    manifest.topics[0].partitions[0].segment_files.swap(0, 1);
    assert_problem(&manifest, Some("orders"), Some(0), Some(0), |k| {
        matches!(
            k,
            ProblemKind::SegmentOverlap {
                first_offset: 0,
                previous_last_offset: 1499
            }
        )
    });
}

#[test]
fn segment_sequence_numbers_increase() {
    let mut manifest = full();
    manifest.topics[0].partitions[0].segment_files[1].name = SegmentName::FIRST;
    let problems = assert_problem(
        &manifest,
        Some("orders"),
        Some(0),
        Some(0),
        |k| matches!(k, ProblemKind::SegmentNameOutOfOrder { previous } if *previous == SegmentName::FIRST),
    );
    assert_eq!(problems.len(), 1);
}

#[test]
fn gaps_not_inverted() {
    let mut manifest = full();
    manifest.topics[0].partitions[1].gaps[0] = Gap {
        from_offset: 200,
        to_offset: 100,
        reason: "retention".into(),
    };
    assert_problem(
        &manifest,
        Some("orders"),
        Some(1),
        None,
        |k| matches!(k, ProblemKind::GapInverted { gap } if gap.from_offset == 200),
    );
}

#[test]
fn gaps_do_not_overlap() {
    let mut manifest = full();
    manifest.topics[0].partitions[1].gaps[0].to_offset = 250;
    let problems = assert_problem(
        &manifest,
        Some("orders"),
        Some(1),
        None,
        |k| matches!(k, ProblemKind::GapOverlap { gap } if gap.to_offset == 250),
    );
    assert_eq!(problems.len(), 1);
    let mut manifest = full();
    let gaps = &mut manifest.topics[0].partitions[1].gaps;
    gaps[0].to_offset = 99;
    gaps.push(Gap {
        from_offset: 50,
        to_offset: 249,
        reason: "retention".into(),
    });
    assert_problem(
        &manifest,
        Some("orders"),
        Some(1),
        None,
        |k| matches!(k, ProblemKind::GapOverlap { gap } if gap.from_offset == 50),
    );
    // A gap after the last segment is fine.
    let mut manifest = full();
    manifest.topics[0].partitions[1].gaps.push(Gap {
        from_offset: 1050,
        to_offset: 1060,
        reason: "retention".into(),
    });
    assert_eq!(manifest.validate(), vec![]);
}

#[test]
fn every_problem_is_reported() {
    let mut manifest = full();
    manifest.statistics.topics = 9;
    manifest.topics.swap(0, 1);
    manifest.completed_at = None;
    manifest.topics[1].partitions[1].gaps[0].from_offset = 300;
    assert!(manifest.validate().len() >= 4, "{:#?}", manifest.validate());
}
