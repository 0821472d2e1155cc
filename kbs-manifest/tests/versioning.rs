//! Version handling: 1.x readable with unknown fields ignored, other majors refused.

use kbs_manifest::{Document, Manifest, ManifestError, ManifestVersion};
use serde_json::{Value, json};

const DOCUMENTED: &[u8] = include_bytes!("data/manifest-documented.json");

fn documented_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(DOCUMENTED).unwrap();
    edit(doc.as_object_mut().unwrap());
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn later_minor_version_with_unknown_fields_loads() {
    let json = documented_with(|doc| {
        doc.insert("version".into(), json!("1.7"));
        doc.insert("retention_policy".into(), json!({"keep_days": 30}));
        let topic = doc["topics"][0].as_object_mut().unwrap();
        topic.insert("schema_subject".into(), json!("orders-value"));
        let partition = topic["partitions"][0].as_object_mut().unwrap();
        partition.insert("leader_epoch".into(), json!(7));
    });
    let manifest = Manifest::from_json(&json).unwrap();
    assert_eq!(manifest.version, ManifestVersion { major: 1, minor: 7 });
    assert!(manifest.validate().is_empty());
    // Unknown fields are not carried over.
    let written: Value = serde_json::from_slice(&manifest.to_json_pretty()).unwrap();
    assert!(written.get("retention_policy").is_none());
    assert_eq!(written["version"], "1.7");
}

#[test]
fn unknown_major_version_is_refused_naming_both_versions() {
    // The rest of the document is not a 1.x manifest at all: the version error wins.
    let err = Manifest::from_json(br#"{"topics": "elsewhere", "version": "2.0", "backup_id": 42}"#).unwrap_err();
    match &err {
        ManifestError::UnsupportedVersion {
            document: Document::Manifest,
            found,
            supported,
        } => {
            assert_eq!(found, "\"2.0\"");
            assert_eq!(*supported, "1.0");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("\"2.0\"") && message.contains("1.0"), "{message}");
}

#[test]
fn unknown_major_version_is_refused_by_serde_too() {
    let json = documented_with(|doc| {
        doc.insert("version".into(), json!("0.9"));
    });
    let err = serde_json::from_slice::<Manifest>(&json).unwrap_err();
    assert!(err.to_string().contains("\"0.9\""), "{err}");
}

#[test]
fn missing_version_is_refused() {
    let json = documented_with(|doc| {
        doc.remove("version");
    });
    assert!(matches!(
        Manifest::from_json(&json),
        Err(ManifestError::MissingVersion { .. })
    ));
}

#[test]
fn malformed_versions_are_refused() {
    for version in [
        json!(1.0),
        json!(1),
        json!(null),
        json!("1"),
        json!("01.0"),
        json!("1.0.0"),
        json!("v1.0"),
        json!(""),
        json!("1.-1"),
        json!(["1.0"]),
    ] {
        let json = documented_with(|doc| {
            doc.insert("version".into(), version.clone());
        });
        let err = Manifest::from_json(&json).unwrap_err();
        let expected = if version.is_null() {
            matches!(err, ManifestError::MissingVersion { .. })
        } else {
            matches!(err, ManifestError::UnsupportedVersion { .. })
        };
        assert!(expected, "{version}: {err:?}");
    }
}

#[test]
fn current_version_is_written() {
    assert_eq!(ManifestVersion::CURRENT.to_string(), "1.0");
}
