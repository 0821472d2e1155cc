//! Membership of a classic group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) under a
//! protocol type of the caller's own, so that processes share work through Kafka's group
//! coordinator: it keeps the members, elects a leader, hands out generations and drops a
//! member whose heartbeats stop for the session timeout.
//!
//! One round of the protocol, as this module runs it:
//!
//! ```text
//! JoinGroup(member id "")   -> MEMBER_ID_REQUIRED with the id to use (JoinGroup v4+)
//! JoinGroup(member id)      -> generation, leader; the leader also gets every member's metadata
//! SyncGroup(generation)     -> this member's assignment (the leader sends everyone's, computed
//!                              by its Assignor; the others send none)
//! Heartbeat(generation)     -> NONE while the generation holds; REBALANCE_IN_PROGRESS when a
//!                              member joins or leaves (rejoin); ILLEGAL_GENERATION or
//!                              UNKNOWN_MEMBER_ID once this member was dropped (fenced)
//! LeaveGroup(member id)     -> the others rebalance at once instead of after the timeout
//! ```
//!
//! The generation is a fencing token: a member that missed a rebalance (a long pause, a
//! network partition) learns it from its next heartbeat, and whatever it writes elsewhere can
//! be checked against the generation it holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};

use crate::client::KafkaClient;
use crate::connection::Connection;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::str_bytes;

/// `MEMBER_ID_REQUIRED`: a new member must join again with the id in the answer.
const MEMBER_ID_REQUIRED: ErrorCode = ErrorCode(79);
/// `REBALANCE_IN_PROGRESS`: the group is rebalancing; join again.
const REBALANCE_IN_PROGRESS: ErrorCode = ErrorCode(27);
/// `ILLEGAL_GENERATION`: this member's generation is over.
const ILLEGAL_GENERATION: ErrorCode = ErrorCode(22);
/// `UNKNOWN_MEMBER_ID`: the coordinator dropped this member.
const UNKNOWN_MEMBER_ID: ErrorCode = ErrorCode(25);

/// How a member joins a group.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The group id.
    pub group: String,
    /// The protocol type: every member of a group must give the same one (`consumer` is
    /// Kafka's consumers'; pick another so no consumer can join by mistake).
    pub protocol_type: String,
    /// The assignment protocol's name (one protocol per member here).
    pub protocol_name: String,
    /// This member's metadata, handed to the leader's [`Assignor`] (opaque to Kafka).
    pub metadata: Bytes,
    /// How long the coordinator waits for a heartbeat before it drops the member (within the
    /// broker's `group.min.session.timeout.ms`..`group.max.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to join again in a rebalance.
    pub rebalance_timeout: Duration,
}

/// A member as the leader's assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its [`MembershipConfig::metadata`].
    pub metadata: Bytes,
}

/// Computes every member's assignment, on the member the coordinator elected leader.
pub trait Assignor: Send + Sync {
    /// Each member's assignment (members left out get an empty one).
    fn assign(&self, members: &[JoinedMember]) -> BTreeMap<String, Bytes>;
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The generation holds.
    Stable,
    /// A member joined or left: call [`Membership::rejoin`] (this member's assignment stays
    /// valid until then, as the coordinator still counts it in).
    Rebalance,
}

/// This process's membership of a group, in one generation at a time.
#[derive(Debug)]
pub struct Membership {
    client: KafkaClient,
    config: MembershipConfig,
    member_id: String,
    generation: i32,
    leader: String,
    assignment: Bytes,
}

impl KafkaClient {
    /// Joins a group and waits for the first assignment. Errors: [`Error::Group`] with the
    /// coordinator's code (e.g. `INCONSISTENT_GROUP_PROTOCOL` when the group's members use
    /// another protocol type).
    pub async fn join_group(&self, config: MembershipConfig, assignor: &dyn Assignor) -> Result<Membership> {
        let mut membership = Membership {
            client: self.clone(),
            config,
            member_id: String::new(),
            generation: -1,
            leader: String::new(),
            assignment: Bytes::new(),
        };
        membership.rejoin(assignor).await?;
        Ok(membership)
    }
}

impl Membership {
    /// The member id the coordinator gave this process.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation this member's assignment belongs to.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether this member computed the generation's assignment.
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }

    /// This member's assignment in the current generation.
    pub fn assignment(&self) -> &Bytes {
        &self.assignment
    }

    /// Replaces the metadata this member gives at its next [`Membership::rejoin`] (e.g. the
    /// work it holds, for a sticky assignor).
    pub fn set_metadata(&mut self, metadata: Bytes) {
        self.config.metadata = metadata;
    }

    fn group_error(&self, api: &'static str, code: ErrorCode) -> Error {
        Error::Group {
            api,
            group: self.config.group.clone(),
            code,
        }
    }

    /// Joins again (after [`HeartbeatOutcome::Rebalance`], or to come back after being
    /// fenced) and waits for the new generation's assignment.
    pub async fn rejoin(&mut self, assignor: &dyn Assignor) -> Result<()> {
        // Rounds lost to a rebalance that moved on, or to a coordinator that moved; each kind
        // ends by itself in a healthy group, so a bound only stops a group that never settles.
        const ROUNDS: u32 = 50;
        let mut moved: u64 = 0;
        for round in 1..=ROUNDS {
            let connection = self.coordinator().await?;
            match self.join_once(&connection, assignor).await {
                Ok(()) => return Ok(()),
                // The group moved on while this member synced: join the next round.
                Err(Error::Group { code, .. }) if code == REBALANCE_IN_PROGRESS => {}
                // Dropped meanwhile: join as a new member.
                Err(Error::Group { code, .. }) if code == UNKNOWN_MEMBER_ID || code == ILLEGAL_GENERATION => {
                    self.member_id.clear();
                }
                // NOT_COORDINATOR and the like: find the coordinator again, after a pause.
                Err(e) if e.is_retriable() && round < ROUNDS => {
                    moved += 1;
                    tokio::time::sleep(Duration::from_millis(100 * moved.min(10))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Group {
            api: "JoinGroup",
            group: self.config.group.clone(),
            code: REBALANCE_IN_PROGRESS,
        })
    }

    /// The group's coordinator, found again (with the client's retries) when it moved or is
    /// still loading.
    async fn coordinator(&self) -> Result<Arc<Connection>> {
        self.client
            .retry("FindCoordinator", |_| self.client.coordinator(&self.config.group))
            .await
    }

    /// One JoinGroup and SyncGroup round.
    async fn join_once(&mut self, connection: &Arc<Connection>, assignor: &dyn Assignor) -> Result<()> {
        let version = connection.version::<JoinGroupRequest>()?;
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(str_bytes(&self.config.group));
        request.session_timeout_ms = millis(self.config.session_timeout);
        request.rebalance_timeout_ms = millis(self.config.rebalance_timeout);
        request.member_id = str_bytes(&self.member_id);
        request.protocol_type = str_bytes(&self.config.protocol_type);
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = str_bytes(&self.config.protocol_name);
        protocol.metadata = self.config.metadata.clone();
        request.protocols = vec![protocol];
        // The coordinator answers when every member joined, up to the rebalance timeout.
        let wait = self.config.rebalance_timeout + connection.request_timeout();
        connection.throttle_pause().await;
        let response = connection.send(&request, version, wait)?.wait().await?;
        let code = ErrorCode::check(response.error_code);
        if code == Some(MEMBER_ID_REQUIRED) {
            self.member_id = response.member_id.to_string();
            return Box::pin(self.join_once(connection, assignor)).await;
        }
        if let Some(code) = code {
            return Err(self.group_error("JoinGroup", code));
        }
        self.member_id = response.member_id.to_string();
        self.generation = response.generation_id;
        self.leader = response.leader.to_string();
        let assignments = if self.is_leader() && !response.skip_assignment {
            let members: Vec<JoinedMember> = response
                .members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.to_string(),
                    metadata: m.metadata.clone(),
                })
                .collect();
            let mut assigned = assignor.assign(&members);
            members
                .iter()
                .map(|m| {
                    let mut a = SyncGroupRequestAssignment::default();
                    a.member_id = str_bytes(&m.member_id);
                    a.assignment = assigned.remove(&m.member_id).unwrap_or_default();
                    a
                })
                .collect()
        } else {
            Vec::new()
        };
        let version = connection.version::<SyncGroupRequest>()?;
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(str_bytes(&self.config.group));
        sync.generation_id = self.generation;
        sync.member_id = str_bytes(&self.member_id);
        if version >= 5 {
            sync.protocol_type = Some(str_bytes(&self.config.protocol_type));
            sync.protocol_name = Some(str_bytes(&self.config.protocol_name));
        }
        sync.assignments = assignments;
        // Followers wait for the leader's SyncGroup.
        let response = connection.send(&sync, version, wait)?.wait().await?;
        if let Some(code) = ErrorCode::check(response.error_code) {
            return Err(self.group_error("SyncGroup", code));
        }
        self.assignment = response.assignment;
        Ok(())
    }

    /// One heartbeat. [`Error::Group`] with `ILLEGAL_GENERATION` or `UNKNOWN_MEMBER_ID`: this
    /// member was dropped and its assignment is no longer its own ([`Error::is_fenced_member`]).
    pub async fn heartbeat(&self) -> Result<HeartbeatOutcome> {
        let connection = self.coordinator().await?;
        let version = connection.version::<HeartbeatRequest>()?;
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(str_bytes(&self.config.group));
        request.generation_id = self.generation;
        request.member_id = str_bytes(&self.member_id);
        let response = connection.call(&request, version).await?;
        match ErrorCode::check(response.error_code) {
            None => Ok(HeartbeatOutcome::Stable),
            Some(code) if code == REBALANCE_IN_PROGRESS => Ok(HeartbeatOutcome::Rebalance),
            Some(code) => Err(self.group_error("Heartbeat", code)),
        }
    }

    /// Leaves the group, so the others rebalance at once.
    pub async fn leave(self) -> Result<()> {
        let connection = self.coordinator().await?;
        let version = connection.version::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default();
        request.group_id = GroupId(str_bytes(&self.config.group));
        let mut member = MemberIdentity::default();
        member.member_id = str_bytes(&self.member_id);
        request.members = vec![member];
        let response = connection.call(&request, version).await?;
        let code = ErrorCode::check(response.error_code)
            .or_else(|| response.members.iter().find_map(|m| ErrorCode::check(m.error_code)));
        match code {
            // Already gone is what leaving wants.
            None => Ok(()),
            Some(code) if code == UNKNOWN_MEMBER_ID => Ok(()),
            Some(code) => Err(self.group_error("LeaveGroup", code)),
        }
    }
}

impl Error {
    /// True when a group member was dropped by its coordinator (`ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID`): what it was assigned is someone else's now.
    pub fn is_fenced_member(&self) -> bool {
        matches!(self, Error::Group { code, .. } if *code == ILLEGAL_GENERATION || *code == UNKNOWN_MEMBER_ID)
    }
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
