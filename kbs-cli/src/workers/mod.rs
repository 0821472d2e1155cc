//! Scale-out workers (docs/DESIGN.md, "Scale-out workers"): several `kbs backup --workers
//! GROUP` (or `kbs restore --workers GROUP`) processes share one job through a Kafka group.
//! The group's leader assigns partitions ([`assign`]); each worker takes its partitions over
//! through their progress objects (compare-and-swap, the group generation as fencing token)
//! and works on them; the job completes exactly once.

mod assign;
mod backup;
mod cut;
mod group;
mod ledger;
mod merge;
mod presence;
mod records;
mod restore;

pub use assign::assign;
pub use backup::{BACKUP_PROTOCOL_TYPE, run as run_backup_worker};
pub use group::WorkerOptions;
pub(crate) use ledger::{WorkerLedger, commit_refused, describe_owner};
pub(crate) use presence::Presence;
pub(crate) use records::{Covered, Owner, PartitionProgress, SnapshotCut, cut_key, read_json_objects};
pub use restore::{RESTORE_PROTOCOL_TYPE, run as run_restore_worker};
