//! Consumer-group offsets against Apache Kafka, with a librdkafka group member.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kbs_kafka::{CommittedOffset, Error, NewTopic};

use kbs_testkit::KafkaCluster;

use crate::harness::{client, script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_fetch_offsets_of_an_inactive_group() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client
        .create_topics(&[NewTopic::new("orders", 3), NewTopic::new("payments", 1)])
        .await
        .unwrap();
    assert!(
        client
            .fetch_committed_offsets("restore", None)
            .await
            .unwrap()
            .is_empty()
    );

    let mut offsets = vec![
        CommittedOffset::new("orders", 0, 42),
        CommittedOffset::new("orders", 2, 7),
        CommittedOffset::new("payments", 0, 1_000_000),
    ];
    offsets[1].metadata = Some("restored by kbs".into());
    client.commit_offsets("restore", &offsets).await.unwrap();

    let all = client.fetch_committed_offsets("restore", None).await.unwrap();
    let key = |o: &CommittedOffset| (o.topic.clone(), o.partition, o.offset);
    assert_eq!(
        all.iter().map(key).collect::<Vec<_>>(),
        offsets.iter().map(key).collect::<Vec<_>>()
    );
    // Kafka keeps the commit metadata and returns it; no metadata comes back as "".
    let metadata: Vec<Option<&str>> = all.iter().map(|o| o.metadata.as_deref()).collect();
    assert_eq!(metadata, [Some(""), Some("restored by kbs"), Some("")]);
    let orders = client
        .fetch_committed_offsets("restore", Some(&["orders"]))
        .await
        .unwrap();
    assert_eq!(
        orders.iter().map(|o| (o.partition, o.offset)).collect::<Vec<_>>(),
        [(0, 42), (2, 7)]
    );

    let groups = client.list_groups().await.unwrap();
    assert!(groups.iter().any(|g| g.group_id == "restore"), "{groups:?}");
    let described = client.describe_groups(&["restore"]).await.unwrap();
    assert!(described[0].members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committing_for_a_group_with_active_members_is_refused() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("live", 2)]).await.unwrap();
    let mut member = kbs_testkit::python_command(&script("group_member.py"))
        .args([&kafka.bootstrap(), "busy", "live"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(member.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "assigned",
        "the librdkafka member did not join (broker log: {})",
        kafka.log_text()
    );

    let described = client.describe_groups(&["busy"]).await.unwrap();
    assert_eq!(described[0].members.len(), 1);
    assert_eq!(described[0].protocol_type, "consumer");
    match client
        .commit_offsets("busy", &[CommittedOffset::new("live", 0, 5)])
        .await
    {
        Err(Error::GroupActive {
            group,
            members: 1,
            state,
        }) => {
            assert_eq!(group, "busy");
            assert_ne!(state, "Empty");
        }
        other => panic!("{other:?}"),
    }

    // Once the member leaves, the commit goes through.
    drop(member.stdin.take());
    assert!(member.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .commit_offsets("busy", &[CommittedOffset::new("live", 0, 5)])
            .await
        {
            Ok(()) => break,
            Err(Error::GroupActive { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let committed = client.fetch_committed_offsets("busy", Some(&["live"])).await.unwrap();
    assert_eq!(
        committed.iter().map(|o| (o.partition, o.offset)).collect::<Vec<_>>(),
        [(0, 5)]
    );
}
