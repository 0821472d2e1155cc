//! Encryption at rest through the `kbs` binary, on the filesystem and on S3 (moto): segments
//! sealed to age recipients restore exactly with one of their keys; every reader without the
//! right key says which backup and which recipients; nothing readable is stored; a backup
//! never mixes plain and encrypted segments; SIGKILLed encrypted backups resume exactly once;
//! and an independent Python reader written from docs/FORMAT.md opens what kbs wrote.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kbs_format::Identities;

use crate::harness::*;
use crate::lifecycle::{Store, backup};
use crate::resilience::{Rng, run_and_kill_at_random};
use crate::restore::{assert_same_partitions, by_partition, kill_while_producing_then_finish};

/// A new identity, written to `dir/NAME.key`: (identity, its file, its public key).
fn identity(dir: &Path, name: &str) -> (Identities, PathBuf, String) {
    let identities = Identities::generate();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, identities.to_file_text().as_bytes()).unwrap();
    let public = identities.recipients().remove(0);
    (identities, path, public)
}

#[test]
fn encrypted_backups_restore_exactly_and_every_reader_needs_a_recipients_key() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "lc", 3_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let source = consume(&bootstrap, dir.path(), &["lc"]);
    let (alice, alice_file, alice_key) = identity(dir.path(), "alice");
    let (_, bob_file, bob_key) = identity(dir.path(), "bob");
    let (_, stranger_file, stranger_key) = identity(dir.path(), "stranger");
    let (alice_file, bob_file, stranger_file) = (
        alice_file.to_str().unwrap(),
        bob_file.to_str().unwrap(),
        stranger_file.to_str().unwrap(),
    );
    // A value as the producer wrote it: no stored object may contain it.
    let plaintext = B64.decode(source[0].5.as_ref().unwrap()).unwrap();
    let probe = &plaintext[..plaintext.len().min(48)];

    let mut stores = vec![Store::filesystem(dir.path())];
    stores.extend(Store::s3());
    assert_eq!(stores.len(), 2, "moto is part of the test kit");
    for (index, store) in stores.iter().enumerate() {
        let to = format!("{alice_key},{bob_key}");
        backup(
            store,
            &bootstrap,
            "sealed",
            &[
                "--encrypt-to",
                &to,
                "--compression",
                "lz4",
                "--segment-max-records",
                "400",
            ],
        );

        // Without a key: list, describe and quick validation work.
        assert!(store.ok(&["list"]).contains("sealed"));
        let described = store.ok(&["describe", "--backup-id", "sealed"]);
        assert!(
            described.contains(&alice_key) && described.contains(&bob_key),
            "{described}"
        );
        assert!(store.ok(&["validate", "--backup-id", "sealed"]).starts_with("VALID"));

        // Reading records needs a recipient's key; errors name the backup and the recipients.
        store.fails(&["validate", "--backup-id", "sealed", "--deep"], 1, &alice_key);
        store.fails(
            &[
                "validate",
                "--backup-id",
                "sealed",
                "--deep",
                "--identity",
                stranger_file,
            ],
            1,
            &format!("the identity given is for {stranger_key}, none of them"),
        );
        let deep = store.ok(&["validate", "--backup-id", "sealed", "--deep", "--identity", bob_file]);
        assert!(deep.starts_with("VALID") && deep.contains("3000 records"), "{deep}");

        // What is stored equals what the independent consumer reads, and nothing is plaintext.
        let (manifest, stored) = rt().block_on(read_backup_with(&store.storage, "sealed", Some(&alice)));
        assert_same_records(&stored, &source);
        assert!(manifest.statistics.segments >= 3, "{:?}", manifest.statistics);
        for key in store.keys("sealed/") {
            let bytes = rt().block_on(store.storage.get(&key)).unwrap().bytes;
            assert!(
                !bytes.windows(probe.len()).any(|w| w == probe),
                "{key} holds a record value in the clear"
            );
            assert!(
                !String::from_utf8_lossy(&bytes).contains("AGE-SECRET-KEY"),
                "{key} holds a secret"
            );
        }

        // Restore: refused without the key (before touching the target), exact with it.
        let target = format!("lc-restored-{index}");
        let map = format!("lc={target}");
        let restore = |extra: &[&str]| {
            let mut args = vec![
                "restore",
                "--bootstrap-servers",
                &bootstrap,
                "--backup-id",
                "sealed",
                "--topic-map",
                &map,
                "--create-topics",
                "-q",
            ];
            args.extend_from_slice(extra);
            store.run(&args)
        };
        // Planning reads only the manifest: no key needed.
        let planned = restore(&["--dry-run"]);
        assert!(planned.status.success(), "{}", String::from_utf8_lossy(&planned.stderr));
        let refused = restore(&[]);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{said}");
        assert!(
            said.contains("backup sealed is encrypted to") && said.contains(&bob_key),
            "{said}"
        );
        let described = kbs_testkit::run_script("kafka_admin.py", &["describe", &bootstrap]);
        let topics: serde_json::Value = serde_json::from_slice(&described.stdout).unwrap();
        assert!(
            topics["topics"].get(&target).is_none(),
            "a refused restore created {target}"
        );
        let done = restore(&["--identity", alice_file]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(done.status.success(), "{said}");
        assert!(!said.contains("AGE-SECRET-KEY"), "{said}");
        let restored = consume(&bootstrap, dir.path(), &[&target]);
        assert_same_records(&restored, &renamed(&source, &target));

        // A backup never mixes plain and encrypted segments, or recipients.
        store.fails(
            &[
                "backup",
                "--bootstrap-servers",
                &bootstrap,
                "--backup-id",
                "sealed",
                "--topics",
                "lc",
            ],
            1,
            "continue it with the same --encrypt-to",
        );
        store.fails(
            &[
                "backup",
                "--bootstrap-servers",
                &bootstrap,
                "--backup-id",
                "sealed",
                "--topics",
                "lc",
                "--encrypt-to",
                &alice_key,
            ],
            1,
            "not to",
        );
        backup(store, &bootstrap, "plain", &[]);
        store.fails(
            &[
                "backup",
                "--bootstrap-servers",
                &bootstrap,
                "--backup-id",
                "plain",
                "--topics",
                "lc",
                "--encrypt-to",
                &alice_key,
            ],
            1,
            "holds unencrypted segments",
        );
        // The same recipients, in another order, continue it.
        backup(
            store,
            &bootstrap,
            "sealed",
            &["--encrypt-to", &format!("{bob_key},{alice_key}")],
        );
    }

    // inspect and the independent reader, on one segment of the filesystem store.
    let root = &stores[0].args[1];
    let manifest = read_stored_manifest(root, "sealed");
    let topic = &manifest.topics[0];
    let partition = &topic.partitions[0];
    let segment = Path::new(root).join(
        kbs_manifest::layout::segment_key(
            &manifest.backup_id,
            &topic.name,
            partition.partition,
            partition.segment_files[0].name,
        )
        .unwrap(),
    );
    let segment = segment.to_str().unwrap();
    let out = run(&["inspect", segment]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an age identity"));
    let inspected = run_ok(&["inspect", segment, "--identity", alice_file]);
    let mut lines = inspected.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["header"]["encrypted"], true);
    let from_kbs: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kbs-format/tests/spec_reader.py");
    let independent = kbs_testkit::run_python(&reader, &[segment, bob_file]);
    assert!(
        independent.status.success(),
        "{}",
        String::from_utf8_lossy(&independent.stderr)
    );
    let independent: Vec<serde_json::Value> = serde_json::from_slice(&independent.stdout).unwrap();
    assert_eq!(independent.len(), from_kbs.len());
    for (theirs, ours) in independent.iter().zip(&from_kbs) {
        for field in ["offset", "timestamp", "key", "value"] {
            assert_eq!(theirs[field], ours[field], "{field}");
        }
    }
    let refused = kbs_testkit::python_command(&reader)
        .args([segment, stranger_file])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a stranger's key opened the segment");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no identity matches"));
}

fn read_stored_manifest(root: &str, id: &str) -> kbs_manifest::Manifest {
    let bytes = std::fs::read(Path::new(root).join(id).join("manifest.json")).unwrap();
    kbs_manifest::Manifest::from_json(&bytes).unwrap()
}

#[test]
fn encrypted_backups_killed_at_random_moments_resume_exactly_once() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    // The key pair from `kbs keygen`: a new file, readable by its owner only, never overwritten.
    let identity_file = dir.path().join("ops.key");
    let key_path = identity_file.to_str().unwrap();
    let public = run_ok(&["keygen", key_path]).trim().to_string();
    let identities = Identities::parse(&std::fs::read_to_string(&identity_file).unwrap()).unwrap();
    assert_eq!(identities.recipients(), vec![public.clone()]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&identity_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = run(&["keygen", key_path]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("File exists"));
    assert!(!String::from_utf8_lossy(&again.stdout).contains("age1"));
    seed_simple(&bootstrap, "crash", 10_000, 3, true);
    let mut rng = Rng(0x5eed_e4c7_0000_0011);
    let (mut kills, mut iteration) = (0, 0);
    let backup_args = [
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "sealed",
        "--topics",
        "crash",
        "--compression",
        "lz4",
        "--segment-max-records",
        "500",
        "--encrypt-to",
        &public,
        "-q",
    ];
    while kills < 10 {
        iteration += 1;
        assert!(iteration <= 60, "only {kills} runs were still going when killed");
        // New data every time, so each run has work to interrupt.
        seed_simple(&bootstrap, "crash", 8_000, 3, false);
        if run_and_kill_at_random(&backup_args, &mut rng, 250, iteration) {
            kills += 1;
        }
    }
    run_ok(&backup_args);
    let identity_file = identity_file.to_str().unwrap();
    let deep = run_ok(&[
        "validate",
        "--path",
        root,
        "--backup-id",
        "sealed",
        "--deep",
        "--identity",
        identity_file,
    ]);
    assert!(deep.starts_with("VALID"), "{deep}");
    let source = consume(&bootstrap, dir.path(), &["crash"]);
    let storage = rt().block_on(open_storage(root, None));
    let (manifest, stored) = rt().block_on(read_backup_with(&storage, "sealed", Some(&identities)));
    assert_same_records(&stored, &source);
    assert!(manifest.statistics.segments > 20, "{:?}", manifest.statistics);
}

/// The independent reader decodes every golden vector it supports (codecs none and lz4, plain
/// and encrypted) to exactly the records of its sidecar: the spec is complete.
#[test]
fn the_independent_reader_decodes_every_golden_vector_from_the_spec() {
    if kbs_testkit::python().is_none() {
        kbs_testkit::require("KBS_SKIP_KAFKA", &["the venv python".into()]);
        return;
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kbs-format/tests/data");
    let reader = data.join("../spec_reader.py");
    let identity = data.join("encrypted.identity");
    let mut checked = (0, 0);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().unwrap().to_str().unwrap().strip_suffix(".kbs") else {
            continue;
        };
        let plain_name = name.strip_prefix("encrypted-").unwrap_or(name);
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join(format!("{plain_name}.json"))).unwrap()).unwrap();
        if sidecar["options"]["compression"] == "zstd" {
            continue;
        }
        let mut args = vec![path.to_str().unwrap()];
        if name != plain_name {
            args.push(identity.to_str().unwrap());
            checked.1 += 1;
        } else {
            checked.0 += 1;
        }
        let out = kbs_testkit::run_python(&reader, &args);
        let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(records, sidecar["records"], "{name}");
    }
    assert!(checked.0 >= 8 && checked.1 >= 3, "{checked:?}");
}

/// Restores of an encrypted backup SIGKILLed while producing, then rerun: every record exactly
/// once, in order, as the source holds it.
#[test]
fn sigkilled_restores_of_an_encrypted_backup_resume_without_duplicates() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "rk", 40_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let (_, key_file, public) = identity(dir.path(), "ops");
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "k",
        "--segment-max-records",
        "3000",
        "--encrypt-to",
        &public,
        "-q",
    ]);
    let source = consume(&bootstrap, dir.path(), &["rk"]);
    // Slowed down so the kills land while records are being produced.
    let restore = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id k --topic-map rk=rk-copy --create-topics \
         --identity {} --restore-id kill-me --max-bytes-per-sec 512K -q",
        key_file.to_str().unwrap()
    );
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "rk-copy", "3", "1"]);
    kill_while_producing_then_finish(
        &bootstrap,
        &restore,
        "rk-copy",
        6,
        std::time::Duration::from_millis(700),
    );
    let copy = consume(&bootstrap, dir.path(), &["rk-copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    assert_same_partitions(
        &by_partition(&copy, |_| "rk".into()),
        &by_partition(&source, str::to_string),
    );
}
