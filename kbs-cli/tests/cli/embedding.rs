//! kbs-cli as a library: the README's example (`examples/backup_and_restore.rs`) run against
//! Apache Kafka, its copy checked with librdkafka.

use crate::harness::*;

#[allow(dead_code)] // its `main` is the example's command line, not used here
#[path = "../../examples/backup_and_restore.rs"]
mod example;

#[test]
fn the_embedding_example_backs_up_validates_and_restores_a_topic() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "orders", 4_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let summary = rt()
        .block_on(example::backup_and_restore(
            &bootstrap,
            "orders",
            &dir.path().join("backups"),
        ))
        .unwrap_or_else(|e| panic!("the example failed: {e}"));
    assert_eq!(
        (summary.backed_up, summary.checked, summary.restored),
        (4_000, 4_000, 4_000)
    );
    let source = consume(&bootstrap, dir.path(), &["orders"]);
    let copy = consume(&bootstrap, dir.path(), &["orders-copy"]);
    assert_same_records(&renamed(&copy, "orders"), &source);
    assert_eq!(
        watermarks(&bootstrap, "orders-copy").len(),
        3,
        "created with the source's partitions"
    );
}
