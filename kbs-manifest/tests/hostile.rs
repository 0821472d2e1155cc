//! Hostile JSON gives errors, never panics or stack overflows.

use kbs_manifest::{Checkpoint, Manifest, ManifestError, NameKind};
use serde_json::{Value, json};

const FULL: &[u8] = include_bytes!("data/manifest-full.json");
const CHECKPOINT: &[u8] = include_bytes!("data/checkpoint.json");

fn full_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(FULL).unwrap();
    edit(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

fn checkpoint_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(CHECKPOINT).unwrap();
    edit(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

fn manifest_error(json: &[u8]) -> String {
    match Manifest::from_json(json) {
        Ok(_) => panic!("accepted hostile manifest {}", String::from_utf8_lossy(json)),
        Err(err) => err.to_string(),
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for document in [
        "[".repeat(100_000) + &"]".repeat(100_000),
        "{\"version\":".to_owned() + &"[".repeat(100_000) + &"]".repeat(100_000) + "}",
        "{\"version\":\"1.0\",\"x\":".to_owned() + &"[".repeat(100_000) + &"]".repeat(100_000) + "}",
        "{\"version\":\"1.0\",\"x\":".to_owned() + &"{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000) + "}",
    ] {
        assert!(Manifest::from_json(document.as_bytes()).is_err());
        assert!(Checkpoint::from_json(document.as_bytes()).is_err());
    }
}

#[test]
fn not_json_is_an_error() {
    for document in [
        &b""[..],
        b"null",
        b"42",
        b"\"1.0\"",
        b"[]",
        b"{",
        b"\xff\xfe",
        b"{\"version\": \"1.0\"}",
    ] {
        assert!(matches!(
            Manifest::from_json(document),
            Err(ManifestError::Json { .. } | ManifestError::MissingVersion { .. })
        ));
        assert!(matches!(
            Checkpoint::from_json(document),
            Err(ManifestError::Json { .. })
        ));
    }
}

#[test]
fn huge_numbers_are_errors() {
    for number in [
        "18446744073709551616",
        "1e400",
        "-1e400",
        "1.5",
        "99999999999999999999999999999",
    ] {
        let json = String::from_utf8(FULL.to_vec()).unwrap().replacen(
            "\"records\": 2400",
            &format!("\"records\": {number}"),
            1,
        );
        manifest_error(json.as_bytes());
        let json = String::from_utf8(FULL.to_vec()).unwrap().replacen(
            "\"first_offset\": 250",
            &format!("\"first_offset\": {number}"),
            1,
        );
        manifest_error(json.as_bytes());
    }
    let json = full_with(|doc| doc["topics"][0]["partition_count"] = json!(4_294_967_296u64));
    manifest_error(&json);
    let json = full_with(|doc| doc["topics"][0]["partitions"][0]["partition"] = json!(2_147_483_648u64));
    manifest_error(&json);
}

/// Huge but representable numbers load, and `validate` reports them without overflowing.
#[test]
fn extreme_values_are_validated_without_overflow() {
    let json = full_with(|doc| {
        doc["statistics"]["records"] = json!(u64::MAX);
        let segment = &mut doc["topics"][0]["partitions"][0]["segment_files"][0];
        segment["records"] = json!(u64::MAX);
        segment["size_bytes"] = json!(u64::MAX);
        segment["uncompressed_bytes"] = json!(u64::MAX);
        segment["first_offset"] = json!(i64::MIN);
        segment["last_offset"] = json!(i64::MAX);
        segment["min_timestamp"] = json!(i64::MAX);
        segment["max_timestamp"] = json!(i64::MIN);
        let segment = &mut doc["topics"][0]["partitions"][0]["segment_files"][1];
        segment["records"] = json!(u64::MAX);
        segment["size_bytes"] = json!(u64::MAX);
        doc["topics"][0]["partitions"][1]["gaps"][0]["from_offset"] = json!(i64::MIN);
        doc["topics"][0]["partitions"][1]["gaps"][0]["to_offset"] = json!(i64::MAX);
        doc["time_range"]["earliest_timestamp"] = json!(i64::MAX);
    });
    let manifest = Manifest::from_json(&json).unwrap();
    let problems = manifest.validate();
    assert!(problems.len() > 5, "{problems:?}");
    for problem in &problems {
        let _ = problem.to_string();
    }
}

#[test]
fn negative_counts_are_errors() {
    for path in [
        &["statistics", "records"][..],
        &["statistics", "topics"],
        &["statistics", "compressed_bytes"],
        &["topics", "0", "partition_count"],
        &["topics", "0", "partitions", "0", "records"],
        &["topics", "0", "partitions", "0", "segments"],
        &["topics", "0", "partitions", "0", "segment_files", "0", "records"],
        &["topics", "0", "partitions", "0", "segment_files", "0", "size_bytes"],
        &[
            "topics",
            "0",
            "partitions",
            "0",
            "segment_files",
            "0",
            "uncompressed_bytes",
        ],
    ] {
        let json = full_with(|doc| *doc.pointer_mut(&format!("/{}", path.join("/"))).unwrap() = json!(-1));
        let message = manifest_error(&json);
        assert!(message.contains("-1"), "{path:?}: {message}");
    }
    let json = checkpoint_with(|doc| doc["topics"]["orders"]["0"]["segment_offset"] = json!(-1));
    assert!(Checkpoint::from_json(&json).is_err());
    let json = checkpoint_with(|doc| doc["topics"]["orders"]["0"]["offset"] = json!(-1));
    let err = Checkpoint::from_json(&json).unwrap_err().to_string();
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn path_traversal_names_are_errors() {
    for name in [
        "../../etc",
        "..",
        ".",
        "a/b",
        "/abs",
        "a\\b",
        "",
        "C:",
        "x\u{0}",
        "naïve",
        "a b",
    ] {
        let json = full_with(|doc| doc["topics"][0]["name"] = json!(name));
        let err = Manifest::from_json(&json).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("invalid topic name"), "{message}");
        assert!(message.contains(&format!("{name:?}")), "{message}");

        let json = full_with(|doc| doc["backup_id"] = json!(name));
        assert!(manifest_error(&json).contains("invalid backup id"));

        let json = full_with(|doc| {
            let groups = doc["consumer_groups"]["billing-service"].as_object_mut().unwrap();
            let orders = groups.remove("orders").unwrap();
            groups.insert(name.to_owned(), orders);
        });
        assert!(manifest_error(&json).contains("invalid topic name"));

        let json = checkpoint_with(|doc| {
            let topics = doc["topics"].as_object_mut().unwrap();
            let orders = topics.remove("orders").unwrap();
            topics.insert(name.to_owned(), orders);
        });
        assert!(
            Checkpoint::from_json(&json)
                .unwrap_err()
                .to_string()
                .contains("invalid topic name")
        );

        let json = checkpoint_with(|doc| doc["backup_id"] = json!(name));
        assert!(Checkpoint::from_json(&json).is_err());
    }
    for name in [
        "../segment-00000000.kbs",
        "segment-00000000.kbs/..",
        "segment-0.kbs",
        "x",
        "segment-00000000.kbs\n",
    ] {
        let json = full_with(|doc| doc["topics"][0]["partitions"][0]["segment_files"][0]["name"] = json!(name));
        assert!(manifest_error(&json).contains("invalid segment file name"));
        let json = checkpoint_with(|doc| doc["topics"]["orders"]["0"]["segment"] = json!(name));
        assert!(Checkpoint::from_json(&json).is_err());
    }
}

#[test]
fn invalid_name_error_is_structured() {
    let err = kbs_manifest::TopicName::new("../../etc").unwrap_err();
    assert!(matches!(err, ManifestError::InvalidName { kind: NameKind::Topic, ref value, .. } if value == "../../etc"));
}

#[test]
fn bad_partition_keys_are_errors() {
    for key in ["-1", "01", "+1", " 1", "1.0", "2147483648", "one", ""] {
        let json = checkpoint_with(|doc| {
            let orders = doc["topics"]["orders"].as_object_mut().unwrap();
            let position = orders.remove("1").unwrap();
            orders.insert(key.to_owned(), position);
        });
        let err = Checkpoint::from_json(&json).unwrap_err().to_string();
        assert!(err.contains("invalid partition"), "{key:?}: {err}");

        let json = full_with(|doc| {
            let orders = doc["consumer_groups"]["billing-service"]["orders"]
                .as_object_mut()
                .unwrap();
            let offset = orders.remove("1").unwrap();
            orders.insert(key.to_owned(), offset);
        });
        assert!(manifest_error(&json).contains("invalid partition"), "{key:?}");
    }
}

#[test]
fn duplicate_keys_are_errors() {
    let checkpoint = String::from_utf8(CHECKPOINT.to_vec()).unwrap();
    let duplicated = checkpoint.replacen("\"1\": {", "\"0\": {", 1);
    assert!(
        Checkpoint::from_json(duplicated.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate key")
    );
    let duplicated = checkpoint.replacen("\"payments\": {", "\"orders\": {", 1);
    assert!(
        Checkpoint::from_json(duplicated.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate key")
    );
    let manifest = String::from_utf8(FULL.to_vec()).unwrap();
    let duplicated = manifest.replacen("\"retention.ms\"", "\"cleanup.policy\"", 1);
    assert!(manifest_error(duplicated.as_bytes()).contains("duplicate key"));
    // A duplicated struct field is an error too (serde's own check).
    let duplicated = manifest.replacen(
        "\"status\": \"complete\",",
        "\"status\": \"complete\", \"status\": \"failed\",",
        1,
    );
    assert!(manifest_error(duplicated.as_bytes()).contains("duplicate field"));
}

#[test]
fn wrong_types_and_values_are_errors() {
    let cases: [fn(&mut Value); 14] = [
        |doc| doc["created_at"] = json!("yesterday"),
        |doc| doc["created_at"] = json!(1_795_241_984_123i64),
        |doc| doc["completed_at"] = json!("2026-11-21T06:25:02.481+01:00"),
        |doc| doc["status"] = json!("done"),
        |doc| doc["compression"]["algorithm"] = json!("gzip"),
        |doc| doc["compression"]["algorithm"] = json!("ZSTD"),
        |doc| doc["topics"] = json!({}),
        |doc| doc["topics"][0]["partitions"][0]["segment_files"][0]["crc64"] = json!(42),
        |doc| doc["topics"][0]["partitions"][0]["segment_files"][0]["crc64"] = json!("995DC9BBDF1939FA"),
        |doc| doc["topics"][0]["partitions"][0]["segment_files"][0]["crc64"] = json!("995dc9bbdf1939f"),
        |doc| doc["topics"][0]["partitions"][0]["segment_files"][0]["crc64"] = json!("+95dc9bbdf1939fa"),
        |doc| doc["topics"][0]["configs"]["retention.ms"] = json!(604_800_000),
        |doc| {
            doc["statistics"].as_object_mut().unwrap().remove("records");
        },
        |doc| {
            doc.as_object_mut().unwrap().remove("created_at");
        },
    ];
    for edit in cases {
        manifest_error(&full_with(edit));
    }
}

#[test]
fn null_optional_fields_read_as_absent() {
    let json = full_with(|doc| {
        doc["completed_at"] = Value::Null;
        doc["status"] = Value::Null;
        doc["time_range"] = Value::Null;
        doc["consumer_groups"] = Value::Null;
        doc["topics"][0]["configs"] = Value::Null;
        doc["topics"][0]["partition_count"] = Value::Null;
    });
    let manifest = Manifest::from_json(&json).unwrap();
    assert_eq!(manifest.completed_at, None);
    assert_eq!(manifest.time_range, None);
    assert_eq!(manifest.consumer_groups, None);
}

#[test]
fn long_strings_do_not_break_anything() {
    let json = full_with(|doc| doc["topics"][0]["name"] = json!("a".repeat(1_000_000)));
    assert!(manifest_error(&json).contains("at most 249"));
    let json = full_with(|doc| doc["source_cluster"]["cluster_id"] = json!("\u{202e}".repeat(100_000)));
    assert!(Manifest::from_json(&json).is_ok());
}
