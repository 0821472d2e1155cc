//! The records of a reshaped topic's sequence between the acknowledged prefix and what is
//! still being written.
//!
//! Every record the merge routes gets the next sequence index and an entry here; the target
//! partition's writer reports the target offset it got (acknowledged by the broker, or found
//! already written by an interrupted run). The entries at the front whose every record has its
//! target offset form the acknowledged prefix: [`Sequence::take_written`] hands them over to
//! the progress document, in sequence order.

use std::collections::VecDeque;

/// One record of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// Its source partition.
    pub(super) source_partition: i32,
    /// Its source offset.
    pub(super) source_offset: i64,
    /// Its target partition.
    pub(super) target_partition: i32,
    /// Its key and value bytes.
    pub(super) bytes: u64,
    /// Its target offset, once written.
    pub(super) target_offset: Option<i64>,
}

/// The sequence's records from the acknowledged prefix on.
#[derive(Debug, Default)]
pub(super) struct Sequence {
    /// The sequence index of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry>,
}

impl Sequence {
    /// A sequence whose acknowledged prefix holds `first` records.
    pub(super) fn starting_at(first: u64) -> Sequence {
        Sequence {
            first,
            entries: VecDeque::new(),
        }
    }

    /// Appends a record (without target offset); returns its sequence index.
    pub(super) fn push(&mut self, entry: Entry) -> u64 {
        self.entries.push_back(entry);
        self.first + self.entries.len() as u64 - 1
    }

    /// Records that the record at `index` was written at `target_offset`.
    pub(super) fn written(&mut self, index: u64, target_offset: i64) {
        let entry = index
            .checked_sub(self.first)
            .and_then(|i| self.entries.get_mut(i as usize))
            .expect("written records are in the sequence, past its prefix");
        entry.target_offset = Some(target_offset);
    }

    /// Removes and returns the written records at the front, in sequence order.
    pub(super) fn take_written(&mut self) -> Vec<Entry> {
        let count = self.entries.iter().take_while(|e| e.target_offset.is_some()).count();
        self.first += count as u64;
        self.entries.drain(..count).collect()
    }

    /// Records not yet in the acknowledged prefix.
    pub(super) fn pending(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(target_partition: i32) -> Entry {
        Entry {
            source_partition: 0,
            source_offset: 0,
            target_partition,
            bytes: 1,
            target_offset: None,
        }
    }

    #[test]
    fn the_prefix_stops_at_the_first_record_not_written() {
        let mut s = Sequence::starting_at(10);
        assert_eq!(s.push(entry(0)), 10);
        assert_eq!(s.push(entry(1)), 11);
        assert_eq!(s.push(entry(0)), 12);
        s.written(10, 100);
        s.written(12, 101);
        let taken = s.take_written();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].target_offset, Some(100));
        assert!(s.take_written().is_empty(), "index 11 is not written yet");
        s.written(11, 7);
        assert_eq!(
            s.take_written().iter().map(|e| e.target_offset).collect::<Vec<_>>(),
            [Some(7), Some(101)]
        );
        assert_eq!(s.pending(), 0);
        assert_eq!(s.push(entry(2)), 13);
    }
}
