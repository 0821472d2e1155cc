//! Group membership under a protocol of kbs's own, against Apache Kafka's group coordinator:
//! three members share twelve work items, every item exactly once; a member whose heartbeats
//! stop is dropped after the session timeout and its items go to the others in a new
//! generation; the dropped member learns on its next heartbeat that it is fenced; a member
//! that leaves hands its items over at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_kafka::{Assignor, HeartbeatOutcome, JoinedMember, Membership, MembershipConfig};
use kbs_testkit::KafkaCluster;

use crate::harness::client;

const ITEMS: u32 = 12;

/// Deals the items round robin over the members in member-id order; an assignment is the
/// items' numbers, one byte each.
struct RoundRobin;

impl Assignor for RoundRobin {
    fn assign(&self, members: &[JoinedMember]) -> BTreeMap<String, Bytes> {
        let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        ids.sort();
        let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for item in 0..ITEMS {
            out.entry(ids[item as usize % ids.len()].to_owned())
                .or_default()
                .push(item as u8);
        }
        out.into_iter().map(|(id, items)| (id, Bytes::from(items))).collect()
    }
}

fn config(name: &str) -> MembershipConfig {
    MembershipConfig {
        group: "kbs-workers".into(),
        protocol_type: "kbs".into(),
        protocol_name: "kbs-round-robin".into(),
        metadata: Bytes::from(name.to_owned()),
        // The broker's smallest allowed session timeout (group.min.session.timeout.ms).
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(20),
    }
}

fn items(members: &[&Membership]) -> Vec<u8> {
    let mut all: Vec<u8> = members.iter().flat_map(|m| m.assignment().to_vec()).collect();
    all.sort();
    all
}

/// Brings members to one generation that every one of them holds: heartbeats each, and while
/// any is asked to rebalance (or the generations differ: a member that joined first may have
/// completed a generation alone), all join again together.
async fn settle(mut members: Vec<Membership>) -> Vec<Membership> {
    let start = Instant::now();
    loop {
        let mut stable = true;
        for member in &members {
            stable &= matches!(member.heartbeat().await, Ok(HeartbeatOutcome::Stable));
        }
        let generation = members[0].generation();
        if stable && members.iter().all(|m| m.generation() == generation) {
            return members;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the group did not settle");
        let mut rejoining = tokio::task::JoinSet::new();
        for (i, mut member) in members.into_iter().enumerate() {
            rejoining.spawn(async move {
                member.rejoin(&RoundRobin).await.unwrap();
                (i, member)
            });
        }
        let mut back = Vec::new();
        while let Some(joined) = rejoining.join_next().await {
            back.push(joined.unwrap());
        }
        back.sort_by_key(|(i, _)| *i);
        members = back.into_iter().map(|(_, m)| m).collect();
    }
}

/// Heartbeats (every 500 ms, the member's duty while it holds its assignment) until the
/// coordinator asks for a rebalance.
async fn until_rebalance(member: &Membership, deadline: Duration) {
    let start = Instant::now();
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    loop {
        beat.tick().await;
        match member.heartbeat().await.unwrap() {
            HeartbeatOutcome::Rebalance => return,
            HeartbeatOutcome::Stable => assert!(start.elapsed() < deadline, "no rebalance within {deadline:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_work_exactly_once_across_deaths_and_departures() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let (a, b, c) = (client(&kafka).await, client(&kafka).await, client(&kafka).await);

    // Three members join: once settled, one generation, one leader, every item exactly once.
    let (ma, mb, mc) = tokio::join!(
        a.join_group(config("a"), &RoundRobin),
        b.join_group(config("b"), &RoundRobin),
        c.join_group(config("c"), &RoundRobin),
    );
    let mut settled = settle(vec![ma.unwrap(), mb.unwrap(), mc.unwrap()]).await;
    let mc = settled.pop().unwrap();
    let (ma, mb) = (settled.remove(0), settled.remove(0));
    let first = ma.generation();
    assert!(mb.generation() == first && mc.generation() == first);
    assert_eq!(
        [&ma, &mb, &mc].iter().filter(|m| m.is_leader()).count(),
        1,
        "one leader"
    );
    assert_eq!(items(&[&ma, &mb, &mc]), (0..ITEMS as u8).collect::<Vec<_>>());
    for m in [&ma, &mb, &mc] {
        assert_eq!(m.assignment().len(), 4, "{}", m.member_id());
    }

    // c stops heartbeating (a long pause, a dead host). After the session timeout the
    // coordinator drops it; a and b, heartbeating meanwhile, are asked to rebalance and share
    // all twelve items in a new generation.
    tokio::join!(
        until_rebalance(&ma, Duration::from_secs(30)),
        until_rebalance(&mb, Duration::from_secs(30))
    );
    let mut survivors = settle(vec![ma, mb]).await;
    let (mut ma, mb) = (survivors.remove(0), survivors.remove(0));
    assert!(ma.generation() > first && ma.generation() == mb.generation());
    assert_eq!(items(&[&ma, &mb]), (0..ITEMS as u8).collect::<Vec<_>>());
    assert_eq!(ma.assignment().len() + mb.assignment().len(), ITEMS as usize);

    // c comes back: its generation is over, and it is told so rather than carrying on with
    // items that are someone else's now.
    let fenced = mc.heartbeat().await.unwrap_err();
    assert!(fenced.is_fenced_member(), "{fenced}");
    assert!(!fenced.to_string().is_empty());

    // b leaves: a is asked to rebalance at once (no session timeout to wait for) and takes
    // everything.
    let before = ma.generation();
    mb.leave().await.unwrap();
    let start = Instant::now();
    until_rebalance(&ma, Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    ma.rejoin(&RoundRobin).await.unwrap();
    assert!(ma.generation() > before);
    assert!(ma.is_leader());
    assert_eq!(items(&[&ma]), (0..ITEMS as u8).collect::<Vec<_>>());
    let members: BTreeSet<String> = a
        .describe_groups(&["kbs-workers"])
        .await
        .unwrap()
        .remove(0)
        .members
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(members, BTreeSet::from([ma.member_id().to_owned()]));
    ma.leave().await.unwrap();
}
