//! The deterministic merge of a topic's source partitions into one sequence.
//!
//! The merge repeatedly takes, among the next selected record of every source partition, the
//! one with the smallest `(timestamp, source partition, source offset)`. Each source partition
//! is read in offset order, so the records of one source partition (and so of one key, when
//! the source was partitioned by key) keep their order. The choice depends only on the next
//! record of each source, so a merge restarted after the last record it took from each source
//! continues with exactly the records the first merge would have produced, in the same order:
//! this is what lets a repartitioning restore resume exactly once.
//!
//! Timestamps need not grow within a partition (CreateTime is the producer's clock); the merge
//! is then not a sort by time, but it is still deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::super::segments::{SourceItem, SourceRecords};
use crate::error::CliError;

/// The next record of one source, as the merge orders it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    timestamp: i64,
    partition: i32,
    offset: i64,
    source: usize,
}

/// A k-way merge of source partitions (see the module docs).
pub(super) struct Merge<'a> {
    sources: Vec<(i32, SourceRecords<'a>)>,
    next: Vec<Option<kbs_format::Record>>,
    heads: BinaryHeap<Reverse<Head>>,
}

impl<'a> Merge<'a> {
    /// Starts the merge of `sources` (source partition, its records from where to resume).
    pub(super) async fn new(sources: Vec<(i32, SourceRecords<'a>)>) -> Result<Merge<'a>, CliError> {
        let mut merge = Merge {
            next: (0..sources.len()).map(|_| None).collect(),
            sources,
            heads: BinaryHeap::new(),
        };
        for i in 0..merge.sources.len() {
            merge.refill(i).await?;
        }
        Ok(merge)
    }

    /// The next record of the sequence and its source partition; `None` when every source
    /// is exhausted.
    pub(super) async fn next(&mut self) -> Result<Option<(i32, kbs_format::Record)>, CliError> {
        let Some(Reverse(head)) = self.heads.pop() else {
            return Ok(None);
        };
        let record = self.next[head.source].take().expect("a head has its record");
        self.refill(head.source).await?;
        Ok(Some((head.partition, record)))
    }

    async fn refill(&mut self, source: usize) -> Result<(), CliError> {
        let (partition, records) = &mut self.sources[source];
        while let Some(item) = records.next().await? {
            if let SourceItem::Record(record) = item {
                self.heads.push(Reverse(Head {
                    timestamp: record.timestamp,
                    partition: *partition,
                    offset: record.offset,
                    source,
                }));
                self.next[source] = Some(record);
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merge order on heads alone: a merge restarted from any point continues the same.
    #[test]
    fn heads_order_by_time_then_partition_then_offset() {
        let head = |timestamp, partition, offset| Head {
            timestamp,
            partition,
            offset,
            source: 0,
        };
        let mut heads = [
            head(5, 0, 9),
            head(3, 2, 1),
            head(3, 1, 7),
            head(3, 1, 2),
            head(-1, 9, 0),
        ];
        heads.sort();
        let order: Vec<_> = heads.iter().map(|h| (h.timestamp, h.partition, h.offset)).collect();
        assert_eq!(order, [(-1, 9, 0), (3, 1, 2), (3, 1, 7), (3, 2, 1), (5, 0, 9)]);
    }
}
