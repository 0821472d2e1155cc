//! The test kit's own Kafka cluster, checked from the outside with confluent-kafka: a node
//! answers on every listener, a three-node quorum survives a SIGKILL and a clean stop of a
//! node and takes it back, and the SASL listener admits the test user with every mechanism
//! (checked by the cluster's start) and refuses a wrong password.

use std::time::Instant;

use kbs_testkit::{KafkaCluster, KafkaOptions, Listener, note, run_script};

/// Topics and partition leaders as confluent-kafka sees them through `bootstrap`.
fn describe(bootstrap: &str) -> serde_json::Value {
    let out = run_script("kafka_admin.py", &["describe", bootstrap]);
    serde_json::from_slice(&out.stdout).expect("kafka_admin.py describe prints JSON")
}

#[test]
fn one_node_serves_both_listeners() {
    let started = Instant::now();
    let Some(kafka) = KafkaCluster::start() else { return };
    note(&format!("one Kafka node ready in {:?}", started.elapsed()));
    assert_eq!(kafka.nodes().len(), 1);
    run_script("kafka_admin.py", &["create-topic", &kafka.bootstrap(), "t", "3", "1"]);
    for bootstrap in [kafka.bootstrap(), kafka.internal_bootstrap()] {
        let described = describe(&bootstrap);
        assert_eq!(described["brokers"], serde_json::json!([1]), "{described}");
        assert_eq!(described["cluster_id"], kafka.cluster_id(), "{described}");
        assert_eq!(described["topics"]["t"].as_array().unwrap().len(), 3, "{described}");
    }
}

#[test]
fn three_nodes_survive_a_killed_and_a_stopped_node() {
    let started = Instant::now();
    let Some(mut kafka) = KafkaCluster::start_with(KafkaOptions::nodes(3)) else {
        return;
    };
    note(&format!("three Kafka nodes ready in {:?}", started.elapsed()));
    run_script("kafka_admin.py", &["create-topic", &kafka.bootstrap(), "r3", "3", "3"]);
    kafka.kill_node(2);
    // Every partition gets a leader among the two nodes left (the quorum keeps a majority).
    run_script("kafka_admin.py", &["wait-leaders", &kafka.bootstrap(), "r3", "1,3"]);
    kafka.restart_node(2);
    kafka.stop_node(3);
    run_script("kafka_admin.py", &["wait-leaders", &kafka.bootstrap(), "r3", "1,2"]);
    kafka.restart_node(3);
    let described = describe(&kafka.bootstrap());
    assert_eq!(described["brokers"], serde_json::json!([1, 2, 3]), "{described}");
}

#[test]
fn sasl_ssl_admits_the_test_user_and_refuses_a_wrong_password() {
    let started = Instant::now();
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::default().with_listener(Listener::SaslSsl)) else {
        return;
    };
    note(&format!(
        "one Kafka node with SASL_SSL and SCRAM users ready in {:?}",
        started.elapsed()
    ));
    let ca = kafka
        .pki()
        .expect("TLS certificates")
        .ca_file
        .to_str()
        .unwrap()
        .to_owned();
    let out = run_script(
        "kafka_admin.py",
        &[
            "try-login",
            &kafka.bootstrap(),
            "SASL_SSL",
            "SCRAM-SHA-512",
            "kbs",
            "wrong",
            &ca,
        ],
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("refused") && answer.contains("uthentication"),
        "{answer}"
    );
}
