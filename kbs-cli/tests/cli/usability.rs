//! What a newcomer meets first: a missing storage root is named, `--output json` failures are
//! JSON on stdout with a stable `kind` and the documented exit code.

use crate::harness::*;

#[test]
fn a_missing_local_root_is_an_error_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let missing = missing.to_str().unwrap();
    let out = run(&["list", "--storage", missing]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(missing) && stderr.contains("does not exist"),
        "{stderr}"
    );

    let out = run(&["list", "--storage", missing, "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(error["error"]["kind"], "storage_root_missing", "{error}");
    assert_eq!(error["error"]["exit_code"], 1, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("does not exist"),
        "{error}"
    );

    // An existing, empty root is an empty list.
    let out = run_ok(&["list", "--storage", dir.path().to_str().unwrap(), "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["backups"],
        serde_json::json!([])
    );
    // A wrong flag value is a usage error (exit 2), in JSON too.
    let out = run(&[
        "backup",
        "--storage",
        missing,
        "--backup-id",
        "x",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--compression",
        "brotli",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(error["error"]["kind"], "invalid_argument", "{error}");
}
