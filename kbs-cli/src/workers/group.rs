//! The part every kind of worker shares: membership of the Kafka group (join, heartbeats on a
//! task of their own, rejoin after a rebalance or a fencing, leave), the leader's weighted and
//! sticky assignment of partitions, and the loop that alternates work and waiting until the
//! shared job is complete. What the work is (backup, restore) is a [`GroupJob`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kbs_kafka::{Assignor, HeartbeatOutcome, JoinedMember, KafkaClient, Membership, MembershipConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::records::Owner;
use crate::error::CliError;

/// How often an idle worker checks whether the shared job is complete (cheaply: one read).
const IDLE_TICK: Duration = Duration::from_millis(500);

/// Every how many idle ticks the group's leader checks thoroughly (every 2 s), and the
/// others (every 20 s).
const LEADER_FULL_EVERY: u64 = 4;
const MEMBER_FULL_EVERY: u64 = 40;

/// Fencings in a row, without other progress in between, after which a worker gives up.
const MAX_FENCINGS: u32 = 20;

/// A work item: a partition, `(topic, partition)`.
pub(crate) type Item = (String, i32);

/// How a worker takes part in its group.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The Kafka group the workers of one job share (`--workers`).
    pub group: String,
    /// The coordinator drops a worker whose heartbeats stop for this long; its partitions go
    /// to the others (`--worker-session-timeout`, within the broker's
    /// `group.min.session.timeout.ms`..`group.max.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long a rebalance waits for every worker to finish what it has in hand and join
    /// again.
    pub rebalance_timeout: Duration,
}

impl WorkerOptions {
    /// Options with the documented defaults: a 10 s session, a 60 s rebalance.
    pub fn new(group: impl Into<String>) -> Self {
        WorkerOptions {
            group: group.into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.session_timeout / 5).clamp(Duration::from_millis(200), Duration::from_secs(3))
    }
}

/// What a worker does after one stretch of work.
pub(crate) enum Next {
    /// The shared job is complete.
    Complete,
    /// Join the group again (a rebalance), keeping the partitions held.
    Rejoin,
    /// This worker was fenced: join again holding nothing.
    Fenced,
    /// Nothing (left) for this worker: wait for the others, or a rebalance.
    Idle,
    /// Shutdown was asked (SIGTERM).
    Shutdown,
}

/// How a worker's membership ended.
pub(crate) enum Ended {
    /// The shared job is complete.
    Complete,
    /// Shutdown was asked; the others go on without this worker.
    Shutdown,
}

/// One kind of shared job.
pub(crate) trait GroupJob {
    /// The items not done, each weighted by the work left (for the leader's assignment).
    async fn items(&mut self) -> Result<BTreeMap<Item, u64>, CliError>;

    /// Works on `assigned` as `owner` until it is done ([`Next::Idle`] or
    /// [`Next::Complete`]), `beats` tells of a rebalance or a fencing, or `shutdown` turns
    /// true. `leader`: this worker leads the group (and calls [`GroupJob::find_new_items`]
    /// as it works).
    async fn work(
        &mut self,
        owner: &Owner,
        assigned: &[Item],
        leader: bool,
        beats: &mut Heartbeats,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Next, CliError>;

    /// Checks whether the shared job is complete: thoroughly when `full` (e.g. merging every
    /// partition's progress, which completes the job when all are done), else cheaply.
    async fn check_complete(&mut self, full: bool) -> Result<bool, CliError>;

    /// Called on the group's leader every idle tick: looks for items that appeared since the
    /// assignment (at the job's own pace) and returns true when there are, so that the group
    /// rebalances. A job of fixed items has none.
    async fn find_new_items(&mut self) -> Result<bool, CliError> {
        Ok(false)
    }
}

/// What the heartbeat task heard from the coordinator.
#[derive(Debug, Clone)]
pub(crate) enum Beat {
    /// The group is rebalancing: finish what is in hand and join again.
    Rebalance,
    /// This member was dropped (why): what it was assigned is someone else's now.
    Fenced(String),
}

/// The heartbeat task of one stretch of membership (one generation's assignment).
pub(crate) struct Heartbeats {
    task: tokio::task::JoinHandle<()>,
    heard: tokio::sync::mpsc::Receiver<Beat>,
    /// When the coordinator last answered a heartbeat as a member's (Unix ms).
    pub(crate) answered_at_ms: Arc<AtomicI64>,
}

impl Heartbeats {
    fn spawn(membership: Arc<Membership>, every: Duration, group: &str) -> Heartbeats {
        let (tell, heard) = tokio::sync::mpsc::channel(4);
        let group = group.to_string();
        let answered_at_ms = Arc::new(AtomicI64::new(crate::lease::unix_now_ms()));
        let answered = answered_at_ms.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let asked_at = crate::lease::unix_now_ms();
                let beat = match membership.heartbeat().await {
                    Ok(outcome) => {
                        // The session runs from when the heartbeat was sent.
                        answered.fetch_max(asked_at, Ordering::SeqCst);
                        match outcome {
                            HeartbeatOutcome::Stable => continue,
                            HeartbeatOutcome::Rebalance => Beat::Rebalance,
                        }
                    }
                    Err(e) if e.is_fenced_member() => Beat::Fenced(e.to_string()),
                    Err(e) => {
                        tracing::warn!("heartbeat to group {group} failed: {e}; trying again");
                        continue;
                    }
                };
                let fenced = matches!(beat, Beat::Fenced(_));
                // Full: the worker has not taken the last ones in yet, and it acts on the first.
                let _ = tell.try_send(beat);
                if fenced {
                    return;
                }
            }
        });
        Heartbeats {
            task,
            heard,
            answered_at_ms,
        }
    }

    /// The next thing heard (never returns while all is stable).
    pub(crate) async fn next(&mut self) -> Beat {
        match self.heard.recv().await {
            Some(beat) => beat,
            None => std::future::pending().await,
        }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A member's metadata: the items it holds, so that the assignment stays sticky.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemberMetadata {
    held: Vec<Item>,
}

/// A member's assignment.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemberAssignment {
    partitions: Vec<Item>,
}

/// The leader's assignor: the items not done, by weight, sticky (see [`super::assign`]).
struct WeightedAssignor {
    items: BTreeMap<Item, u64>,
}

impl Assignor for WeightedAssignor {
    fn assign(&self, members: &[JoinedMember]) -> BTreeMap<String, Bytes> {
        let held: BTreeMap<String, Vec<Item>> = members
            .iter()
            .map(|m| {
                // A member whose metadata cannot be read holds nothing: it gets new work.
                let metadata: MemberMetadata = serde_json::from_slice(&m.metadata).unwrap_or_default();
                (m.member_id.clone(), metadata.held)
            })
            .collect();
        super::assign(&held, &self.items)
            .into_iter()
            .map(|(member, partitions)| {
                let body = serde_json::to_vec(&MemberAssignment { partitions }).expect("assignment serialises");
                (member, Bytes::from(body))
            })
            .collect()
    }
}

fn member_metadata(held: &[Item]) -> Bytes {
    Bytes::from(serde_json::to_vec(&MemberMetadata { held: held.to_vec() }).expect("metadata serialises"))
}

/// This member's items (an assignment that cannot be read is none).
fn assigned_items(membership: &Membership) -> Vec<Item> {
    match serde_json::from_slice::<MemberAssignment>(membership.assignment()) {
        Ok(a) => a.partitions,
        Err(e) => {
            if !membership.assignment().is_empty() {
                tracing::warn!("unreadable assignment from the group's leader ({e}): taking none");
            }
            Vec::new()
        }
    }
}

/// Takes part in `workers.group` for `job` until the job is complete or `shutdown` turns
/// true. `protocol_name` should name the job (e.g. the backup id): a member of another job
/// in the same group is then refused by the coordinator instead of handed this job's items.
pub(crate) async fn run_in_group<J: GroupJob>(
    job: &mut J,
    client: &KafkaClient,
    workers: &WorkerOptions,
    protocol_type: &str,
    protocol_name: String,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, CliError> {
    let mut held: Vec<Item> = Vec::new();
    let config = MembershipConfig {
        group: workers.group.clone(),
        protocol_type: protocol_type.into(),
        protocol_name,
        metadata: member_metadata(&held),
        session_timeout: workers.session_timeout,
        rebalance_timeout: workers.rebalance_timeout,
    };
    let assignor = WeightedAssignor {
        items: job.items().await?,
    };
    let mut membership = client
        .join_group(config, &assignor)
        .await
        .map_err(|e| group_error(&workers.group, e))?;
    let mut fencings = 0;
    loop {
        let assigned = assigned_items(&membership);
        held = assigned.clone();
        tracing::info!(
            member = membership.member_id(),
            generation = membership.generation(),
            leader = membership.is_leader(),
            "assigned {} partitions",
            assigned.len()
        );
        let leader = membership.is_leader();
        let owner = Owner {
            member_id: membership.member_id().to_string(),
            generation: membership.generation(),
            host: crate::lease::host_name(),
            pid: std::process::id(),
        };
        // Heartbeats run on a task of their own, so that no storage call of the work (a slow
        // store, a takeover) keeps them back past the session timeout.
        let shared = Arc::new(membership);
        let mut beats = Heartbeats::spawn(shared.clone(), workers.heartbeat_interval(), &workers.group);
        let mut next = if assigned.is_empty() {
            Ok(Next::Idle)
        } else {
            job.work(&owner, &assigned, leader, &mut beats, shutdown).await
        };
        if matches!(next, Ok(Next::Idle)) {
            next = idle(job, &mut beats, leader, shutdown).await;
        }
        beats.stop().await;
        membership = Arc::try_unwrap(shared).expect("the heartbeat task has stopped");
        let ended = match next {
            Ok(Next::Complete) => Ok(Ended::Complete),
            Ok(Next::Shutdown) => Ok(Ended::Shutdown),
            Err(e) => Err(e),
            Ok(Next::Fenced) if fencings >= MAX_FENCINGS => Err(CliError::Fenced(format!(
                "worker fenced {MAX_FENCINGS} times in a row in group {}: stopping",
                workers.group
            ))),
            Ok(next) => {
                if matches!(next, Next::Fenced) {
                    // What it held is no longer its own: it joins holding nothing.
                    fencings += 1;
                    held.clear();
                } else {
                    fencings = 0;
                }
                membership.set_metadata(member_metadata(&held));
                let assignor = WeightedAssignor {
                    items: job.items().await?,
                };
                membership
                    .rejoin(&assignor)
                    .await
                    .map_err(|e| group_error(&workers.group, e))?;
                continue;
            }
        };
        // Leaving hands this worker's items to the others at once, not after the session
        // timeout.
        if let Err(e) = membership.leave().await {
            tracing::warn!("could not leave group {}: {e}", workers.group);
        }
        return ended;
    }
}

/// Waits with nothing to do: heartbeats go on, and the job is checked for completion cheaply
/// every half second; thoroughly every 2 s by the leader and every 20 s by the others (so a
/// job whose last worker died right after its last commit still completes while the leader
/// is being replaced).
async fn idle<J: GroupJob>(
    job: &mut J,
    beats: &mut Heartbeats,
    leader: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Next, CliError> {
    let mut tick = tokio::time::interval(IDLE_TICK);
    let mut ticks: u64 = 0;
    let mut listening = true;
    loop {
        tokio::select! {
            beat = beats.next() => return Ok(match beat {
                Beat::Rebalance => Next::Rejoin,
                Beat::Fenced(_) => Next::Fenced,
            }),
            _ = tick.tick() => {
                ticks += 1;
                let every = if leader { LEADER_FULL_EVERY } else { MEMBER_FULL_EVERY };
                if job.check_complete(ticks % every == 1).await? {
                    return Ok(Next::Complete);
                }
                if leader && job.find_new_items().await? {
                    return Ok(Next::Rejoin);
                }
            }
            changed = shutdown.changed(), if listening => {
                listening = changed.is_ok();
                if changed.is_ok() && *shutdown.borrow() {
                    return Ok(Next::Shutdown);
                }
            }
        }
    }
}

fn group_error(group: &str, e: kbs_kafka::Error) -> CliError {
    if let kbs_kafka::Error::Group { code, .. } = &e
        && code.0 == 23
    {
        return CliError::Locked(format!(
            "group {group} is used by workers of another job (or by consumers): give each job's workers a group \
             of their own ({e})"
        ));
    }
    e.into()
}
