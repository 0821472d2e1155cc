//! [`Manifest::validate`]: internal consistency checks.

use std::fmt;

use crate::manifest::{BackupStatus, Gap, Manifest, PartitionEntry, SegmentFile, TimeRange, TopicEntry};
use crate::names::{SegmentName, TopicName};
use crate::time::UtcTimestamp;

/// One inconsistency found by [`Manifest::validate`] (or refused by the builder): where
/// it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationProblem {
    /// The topic concerned, if the problem is inside one.
    pub topic: Option<TopicName>,
    /// The partition concerned, if the problem is inside one.
    pub partition: Option<i32>,
    /// The segment file concerned, if the problem is about one.
    pub segment: Option<SegmentName>,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for ValidationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if let Some(topic) = &self.topic {
            write!(f, "topic {topic}")?;
            wrote = true;
        }
        if let Some(partition) = self.partition {
            write!(f, "{}partition {partition}", if wrote { " " } else { "" })?;
            wrote = true;
        }
        if let Some(segment) = self.segment {
            write!(f, "{}{segment}", if wrote { " " } else { "" })?;
            wrote = true;
        }
        if !wrote {
            f.write_str("manifest")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What is inconsistent. Each variant is one rule of [`Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A summary field differs from what the entries below it add up to: a
    /// `statistics` field (`"statistics.records"`, …) or a partition's `first_offset`,
    /// `last_offset`, `records` or `segments` compared with its segment files.
    SummaryMismatch {
        /// The field, e.g. `"statistics.segments"` or `"last_offset"`.
        field: &'static str,
        /// The value in the manifest.
        recorded: i128,
        /// The value derived from the entries.
        derived: i128,
    },
    /// `time_range` differs from the one derived from the segment files.
    TimeRangeMismatch {
        /// The value in the manifest.
        recorded: Option<TimeRange>,
        /// The value derived from the segment files (`None`: no records).
        derived: Option<TimeRange>,
    },
    /// `time_range` is absent although `statistics.records` is not zero.
    TimeRangeMissing,
    /// A smallest timestamp is greater than the largest (`time_range` or a segment).
    TimestampsInverted {
        /// `earliest_timestamp` or `min_timestamp`.
        min: i64,
        /// `latest_timestamp` or `max_timestamp`.
        max: i64,
    },
    /// `status` and `completed_at` disagree: `"complete"` needs `completed_at`, and any
    /// other status must not have it.
    StatusMismatch {
        /// The status.
        status: BackupStatus,
        /// The completion time.
        completed_at: Option<UtcTimestamp>,
    },
    /// `completed_at` is earlier than `created_at`.
    CompletedBeforeCreated {
        /// Start time.
        created_at: UtcTimestamp,
        /// Completion time.
        completed_at: UtcTimestamp,
    },
    /// A topic's name is not greater than the previous topic's (unsorted or duplicate).
    TopicOutOfOrder {
        /// The previous topic.
        previous: TopicName,
    },
    /// A partition number is not greater than the previous one (unsorted or duplicate).
    PartitionOutOfOrder {
        /// The previous partition.
        previous: i32,
    },
    /// A partition number is negative.
    NegativePartition,
    /// A partition number is not below the topic's `partition_count`.
    PartitionBeyondCount {
        /// The topic's `partition_count`.
        partition_count: u32,
    },
    /// An offset that Kafka never makes negative is negative.
    NegativeOffset {
        /// The field, e.g. `"first_offset"` or `"gaps.from_offset"`.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// `first_offset` is greater than `last_offset` (or, for a partition without
    /// records, greater than `last_offset + 1`).
    OffsetRangeInverted {
        /// First offset.
        first_offset: i64,
        /// Last offset.
        last_offset: i64,
    },
    /// More records than offsets in `first_offset..=last_offset` (a segment or
    /// partition), or a segment file with no record.
    RecordCountImpossible {
        /// The record count.
        records: u64,
        /// First offset.
        first_offset: i64,
        /// Last offset.
        last_offset: i64,
    },
    /// A segment file starts at or before the end of the previous segment or gap.
    SegmentOverlap {
        /// The segment's first offset.
        first_offset: i64,
        /// The last offset covered by what comes before it.
        previous_last_offset: i64,
    },
    /// A segment's sequence number is not greater than the previous segment's.
    SegmentNameOutOfOrder {
        /// The previous segment.
        previous: SegmentName,
    },
    /// `from_offset` is greater than `to_offset` in a gap.
    GapInverted {
        /// The gap.
        gap: Gap,
    },
    /// A gap overlaps a segment file or starts at or before the end of the previous gap.
    GapOverlap {
        /// The gap.
        gap: Gap,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::SummaryMismatch {
                field,
                recorded,
                derived,
            } => {
                write!(f, "{field} is {recorded} but the entries add up to {derived}")
            }
            ProblemKind::TimeRangeMismatch { recorded, derived } => {
                let show = |r: &Option<TimeRange>| match r {
                    Some(r) => format!("{}..={}", r.earliest_timestamp, r.latest_timestamp),
                    None => "absent".to_owned(),
                };
                write!(
                    f,
                    "time_range is {} but the segment files give {}",
                    show(recorded),
                    show(derived)
                )
            }
            ProblemKind::TimeRangeMissing => f.write_str("time_range is absent but there are records"),
            ProblemKind::TimestampsInverted { min, max } => {
                write!(f, "smallest timestamp {min} is greater than largest timestamp {max}")
            }
            ProblemKind::StatusMismatch { status, completed_at } => match completed_at {
                Some(at) => write!(f, "status is {status:?} but completed_at is set ({at})"),
                None => write!(f, "status is {status:?} but completed_at is absent"),
            },
            ProblemKind::CompletedBeforeCreated {
                created_at,
                completed_at,
            } => {
                write!(f, "completed_at {completed_at} is before created_at {created_at}")
            }
            ProblemKind::TopicOutOfOrder { previous } => {
                write!(f, "topics are not sorted and unique: follows topic {previous}")
            }
            ProblemKind::PartitionOutOfOrder { previous } => {
                write!(f, "partitions are not sorted and unique: follows partition {previous}")
            }
            ProblemKind::NegativePartition => f.write_str("partition number is negative"),
            ProblemKind::PartitionBeyondCount { partition_count } => {
                write!(f, "partition number is not below partition_count {partition_count}")
            }
            ProblemKind::NegativeOffset { field, value } => write!(f, "{field} {value} is negative"),
            ProblemKind::OffsetRangeInverted {
                first_offset,
                last_offset,
            } => {
                write!(f, "first_offset {first_offset} is after last_offset {last_offset}")
            }
            ProblemKind::RecordCountImpossible {
                records,
                first_offset,
                last_offset,
            } => write!(
                f,
                "{records} records cannot occupy offsets {first_offset}..={last_offset}"
            ),
            ProblemKind::SegmentOverlap {
                first_offset,
                previous_last_offset,
            } => write!(
                f,
                "first_offset {first_offset} is not after offset {previous_last_offset} already covered"
            ),
            ProblemKind::SegmentNameOutOfOrder { previous } => {
                write!(f, "sequence number is not greater than that of {previous}")
            }
            ProblemKind::GapInverted { gap } => {
                write!(f, "gap {}..={} is inverted", gap.from_offset, gap.to_offset)
            }
            ProblemKind::GapOverlap { gap } => write!(
                f,
                "gap {}..={} overlaps a segment file or an earlier gap",
                gap.from_offset, gap.to_offset
            ),
        }
    }
}

/// Collects problems with their location.
struct Problems {
    found: Vec<ValidationProblem>,
}

impl Problems {
    fn push(
        &mut self,
        topic: Option<&TopicName>,
        partition: Option<i32>,
        segment: Option<SegmentName>,
        kind: ProblemKind,
    ) {
        self.found.push(ValidationProblem {
            topic: topic.cloned(),
            partition,
            segment,
            kind,
        });
    }
}

/// Offsets `first..=last` can hold at most this many records (0 if inverted).
fn offset_span(first: i64, last: i64) -> i128 {
    (i128::from(last) - i128::from(first) + 1).max(0)
}

/// Checks one segment file on its own. Shared with the builder.
pub(crate) fn segment_problems(segment: &SegmentFile) -> Vec<ProblemKind> {
    let mut problems = Vec::new();
    if segment.first_offset < 0 {
        problems.push(ProblemKind::NegativeOffset {
            field: "first_offset",
            value: segment.first_offset,
        });
    }
    if segment.first_offset > segment.last_offset {
        problems.push(ProblemKind::OffsetRangeInverted {
            first_offset: segment.first_offset,
            last_offset: segment.last_offset,
        });
    } else if segment.records == 0
        || i128::from(segment.records) > offset_span(segment.first_offset, segment.last_offset)
    {
        problems.push(ProblemKind::RecordCountImpossible {
            records: segment.records,
            first_offset: segment.first_offset,
            last_offset: segment.last_offset,
        });
    }
    if segment.min_timestamp > segment.max_timestamp {
        problems.push(ProblemKind::TimestampsInverted {
            min: segment.min_timestamp,
            max: segment.max_timestamp,
        });
    }
    problems
}

/// Checks one gap on its own. Shared with the builder.
pub(crate) fn gap_problems(gap: &Gap) -> Vec<ProblemKind> {
    let mut problems = Vec::new();
    if gap.from_offset < 0 {
        problems.push(ProblemKind::NegativeOffset {
            field: "gaps.from_offset",
            value: gap.from_offset,
        });
    }
    if gap.from_offset > gap.to_offset {
        problems.push(ProblemKind::GapInverted { gap: gap.clone() });
    }
    problems
}

/// Running sums over the manifest, wide enough never to overflow.
#[derive(Default)]
struct Totals {
    segments: i128,
    records: i128,
    uncompressed_bytes: i128,
    compressed_bytes: i128,
    /// Every partition with segments lists its segment files.
    detailed: bool,
    time_range: Option<TimeRange>,
}

impl Manifest {
    /// Checks internal consistency and returns every problem found (empty: consistent).
    ///
    /// Rules (one [`ProblemKind`] each):
    /// - `statistics` equal the sums over topics, partitions and segment files
    ///   (`SummaryMismatch`); byte totals and `time_range` are checked when every
    ///   partition with segments lists its `segment_files` (`TimeRangeMismatch`,
    ///   otherwise `TimeRangeMissing` if records exist but `time_range` does not);
    /// - timestamps ordered (`TimestampsInverted`), `completed_at` not before
    ///   `created_at`, `status` agrees with `completed_at`;
    /// - topics sorted by name and unique, partitions sorted by number and unique,
    ///   partition numbers non-negative and below `partition_count`;
    /// - per partition: offsets non-negative and ordered, records fit in the offset
    ///   range, `first_offset`/`last_offset`/`records`/`segments` match the segment
    ///   files; segment files and gaps in increasing, non-overlapping offset order, with
    ///   increasing sequence numbers.
    #[must_use = "validate returns the problems; it does not fail"]
    pub fn validate(&self) -> Vec<ValidationProblem> {
        let mut problems = Problems { found: Vec::new() };
        self.check_header(&mut problems);
        let mut totals = Totals {
            detailed: true,
            ..Totals::default()
        };
        let mut partitions: i128 = 0;
        let mut previous_topic: Option<&TopicName> = None;
        for topic in &self.topics {
            if let Some(previous) = previous_topic {
                if topic.name <= *previous {
                    problems.push(
                        Some(&topic.name),
                        None,
                        None,
                        ProblemKind::TopicOutOfOrder {
                            previous: previous.clone(),
                        },
                    );
                }
            }
            previous_topic = Some(&topic.name);
            partitions += topic.partitions.len() as i128;
            check_topic(topic, &mut problems, &mut totals);
        }
        let stats = &self.statistics;
        let mut compare = |field, recorded: u64, derived: i128| {
            if i128::from(recorded) != derived {
                problems.push(
                    None,
                    None,
                    None,
                    ProblemKind::SummaryMismatch {
                        field,
                        recorded: i128::from(recorded),
                        derived,
                    },
                );
            }
        };
        compare("statistics.topics", stats.topics, self.topics.len() as i128);
        compare("statistics.partitions", stats.partitions, partitions);
        compare("statistics.segments", stats.segments, totals.segments);
        compare("statistics.records", stats.records, totals.records);
        if totals.detailed {
            compare(
                "statistics.uncompressed_bytes",
                stats.uncompressed_bytes,
                totals.uncompressed_bytes,
            );
            compare(
                "statistics.compressed_bytes",
                stats.compressed_bytes,
                totals.compressed_bytes,
            );
        }
        let derived_range = if totals.records == 0 {
            Some(None)
        } else if totals.detailed {
            Some(totals.time_range)
        } else {
            None
        };
        match derived_range {
            Some(derived) if derived != self.time_range => problems.push(
                None,
                None,
                None,
                ProblemKind::TimeRangeMismatch {
                    recorded: self.time_range,
                    derived,
                },
            ),
            None if self.time_range.is_none() => problems.push(None, None, None, ProblemKind::TimeRangeMissing),
            _ => {}
        }
        problems.found
    }

    /// Top-level timestamps and status.
    fn check_header(&self, problems: &mut Problems) {
        if let Some(range) = self.time_range {
            if range.earliest_timestamp > range.latest_timestamp {
                problems.push(
                    None,
                    None,
                    None,
                    ProblemKind::TimestampsInverted {
                        min: range.earliest_timestamp,
                        max: range.latest_timestamp,
                    },
                );
            }
        }
        if let Some(completed_at) = &self.completed_at {
            if completed_at.unix_millis() < self.created_at.unix_millis() {
                problems.push(
                    None,
                    None,
                    None,
                    ProblemKind::CompletedBeforeCreated {
                        created_at: self.created_at.clone(),
                        completed_at: completed_at.clone(),
                    },
                );
            }
        }
        if let Some(status) = self.status {
            if (status == BackupStatus::Complete) != self.completed_at.is_some() {
                problems.push(
                    None,
                    None,
                    None,
                    ProblemKind::StatusMismatch {
                        status,
                        completed_at: self.completed_at.clone(),
                    },
                );
            }
        }
    }
}

fn check_topic(topic: &TopicEntry, problems: &mut Problems, totals: &mut Totals) {
    let name = Some(&topic.name);
    let mut previous: Option<i32> = None;
    for entry in &topic.partitions {
        let at = Some(entry.partition);
        if let Some(previous) = previous {
            if entry.partition <= previous {
                problems.push(name, at, None, ProblemKind::PartitionOutOfOrder { previous });
            }
        }
        previous = Some(entry.partition);
        if entry.partition < 0 {
            problems.push(name, at, None, ProblemKind::NegativePartition);
        } else if let Some(partition_count) = topic.partition_count {
            if i64::from(entry.partition) >= i64::from(partition_count) {
                problems.push(name, at, None, ProblemKind::PartitionBeyondCount { partition_count });
            }
        }
        check_partition(&topic.name, entry, problems, totals);
    }
}

fn check_partition(topic: &TopicName, entry: &PartitionEntry, problems: &mut Problems, totals: &mut Totals) {
    let (name, at) = (Some(topic), Some(entry.partition));
    totals.segments += i128::from(entry.segments);
    totals.records += i128::from(entry.records);

    // The partition's own offsets.
    for (field, value) in [("first_offset", entry.first_offset), ("last_offset", entry.last_offset)] {
        // An empty partition starting at 0 has last_offset -1.
        let allowed = if field == "last_offset" && entry.records == 0 {
            -1
        } else {
            0
        };
        if value < allowed {
            problems.push(name, at, None, ProblemKind::NegativeOffset { field, value });
        }
    }
    let empty = entry.records == 0;
    let span = offset_span(entry.first_offset, entry.last_offset);
    if (!empty && entry.first_offset > entry.last_offset)
        || (empty && i128::from(entry.first_offset) > i128::from(entry.last_offset) + 1)
    {
        problems.push(
            name,
            at,
            None,
            ProblemKind::OffsetRangeInverted {
                first_offset: entry.first_offset,
                last_offset: entry.last_offset,
            },
        );
    } else if i128::from(entry.records) > span {
        problems.push(
            name,
            at,
            None,
            ProblemKind::RecordCountImpossible {
                records: entry.records,
                first_offset: entry.first_offset,
                last_offset: entry.last_offset,
            },
        );
    }

    // Segment files, gaps, and the summary derived from them.
    if entry.segment_files.is_empty() && entry.segments > 0 {
        totals.detailed = false;
    }
    let mut covered_until: Option<i64> = None;
    let mut previous_name: Option<SegmentName> = None;
    let mut records: i128 = 0;
    for segment in &entry.segment_files {
        let here = Some(segment.name);
        for kind in segment_problems(segment) {
            problems.push(name, at, here, kind);
        }
        if let Some(previous) = previous_name {
            if segment.name <= previous {
                problems.push(name, at, here, ProblemKind::SegmentNameOutOfOrder { previous });
            }
        }
        previous_name = Some(segment.name);
        if let Some(previous_last_offset) = covered_until {
            if segment.first_offset <= previous_last_offset {
                problems.push(
                    name,
                    at,
                    here,
                    ProblemKind::SegmentOverlap {
                        first_offset: segment.first_offset,
                        previous_last_offset,
                    },
                );
            }
        }
        covered_until = Some(covered_until.map_or(segment.last_offset, |c| c.max(segment.last_offset)));
        records += i128::from(segment.records);
        totals.uncompressed_bytes += i128::from(segment.uncompressed_bytes);
        totals.compressed_bytes += i128::from(segment.size_bytes);
        let range = totals.time_range.get_or_insert(TimeRange {
            earliest_timestamp: segment.min_timestamp,
            latest_timestamp: segment.max_timestamp,
        });
        range.earliest_timestamp = range.earliest_timestamp.min(segment.min_timestamp);
        range.latest_timestamp = range.latest_timestamp.max(segment.max_timestamp);
    }
    check_gaps(topic, entry, problems);

    let mut compare = |field, recorded: i128, derived: i128| {
        if recorded != derived {
            problems.push(
                name,
                at,
                None,
                ProblemKind::SummaryMismatch {
                    field,
                    recorded,
                    derived,
                },
            );
        }
    };
    match (entry.segment_files.first(), entry.segment_files.last()) {
        (Some(first), Some(last)) => {
            compare("first_offset", entry.first_offset.into(), first.first_offset.into());
            compare("last_offset", entry.last_offset.into(), last.last_offset.into());
            compare("records", entry.records.into(), records);
            compare("segments", entry.segments.into(), entry.segment_files.len() as i128);
        }
        _ if !entry.gaps.is_empty() => {
            // Detailed partition with gaps only: nothing stored.
            compare("records", entry.records.into(), 0);
            compare("segments", entry.segments.into(), 0);
        }
        _ => {}
    }
}

/// Gaps: each valid, in order, not overlapping each other or any segment file.
fn check_gaps(topic: &TopicName, entry: &PartitionEntry, problems: &mut Problems) {
    let (name, at) = (Some(topic), Some(entry.partition));
    if entry.gaps.is_empty() {
        return;
    }
    // Segment ranges sorted by first offset, with the running maximum of last offsets,
    // so each gap is checked in O(log n) even when the segment files are out of order.
    let mut ranges: Vec<(i64, i64)> = entry
        .segment_files
        .iter()
        .map(|s| (s.first_offset, s.last_offset))
        .collect();
    ranges.sort_unstable();
    let mut max_last = i64::MIN;
    for range in &mut ranges {
        max_last = max_last.max(range.1);
        range.1 = max_last;
    }
    let mut previous_to: Option<i64> = None;
    for gap in &entry.gaps {
        for kind in gap_problems(gap) {
            problems.push(name, at, None, kind);
        }
        let after_previous = previous_to.is_none_or(|to| gap.from_offset > to);
        // Segments starting at or before the gap's end; does any reach its start?
        let starting_before_end = ranges.partition_point(|&(first, _)| first <= gap.to_offset);
        let hits_segment = starting_before_end > 0 && ranges[starting_before_end - 1].1 >= gap.from_offset;
        if !after_previous || hits_segment {
            problems.push(name, at, None, ProblemKind::GapOverlap { gap: gap.clone() });
        }
        previous_to = Some(previous_to.map_or(gap.to_offset, |to| to.max(gap.to_offset)));
    }
}
