//! Scale-out workers (docs/DESIGN.md, "Scale-out workers"): several `kbs backup --workers
//! GROUP` processes share one snapshot backup through a Kafka group. The group's leader
//! assigns partitions ([`assign`]); each worker takes its partitions over through their
//! progress objects and backs them up; a merge of the progress objects writes the manifest,
//! complete exactly once.

mod assign;
mod backup;
mod ledger;
mod merge;
mod records;

pub use assign::assign;
pub use backup::{BACKUP_PROTOCOL_TYPE, WorkerOptions, run as run_backup_worker};
pub(crate) use ledger::WorkerLedger;
pub(crate) use records::{Covered, PartitionProgress, SnapshotCut, cut_key};
