//! `kbs` against Apache Kafka's own authentication: SASL PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
//! and OAUTHBEARER over plaintext and over TLS, and mutual TLS. Every backup is compared with an independent
//! consumer; a wrong password fails with an error that names the mechanism and never the
//! secret (in stdout, stderr or the JSON error).

use kbs_testkit::{KafkaCluster, KafkaOptions, Listener, SASL_PASSWORD, SASL_USER, unsecured_jwt};

use crate::harness::*;

/// The `kbs` flags that reach `kafka`'s client listener with `mechanism` and `password`.
fn flags(kafka: &KafkaCluster, mechanism: &str, password: &str) -> Vec<String> {
    let mut flags = vec!["--bootstrap-servers".to_owned(), kafka.bootstrap()];
    let tls = kafka.pki().map(|pki| pki.ca_file.to_str().unwrap().to_owned());
    let protocol = match (tls.is_some(), mechanism.is_empty()) {
        (true, true) => "SSL",
        (true, false) => "SASL_SSL",
        (false, _) => "SASL_PLAINTEXT",
    };
    flags.extend(["--security-protocol".to_owned(), protocol.to_owned()]);
    if let Some(ca) = tls {
        flags.extend(["--ssl-ca-location".to_owned(), ca]);
    }
    if !mechanism.is_empty() {
        flags.extend(
            [
                "--sasl-mechanism",
                mechanism,
                "--sasl-username",
                SASL_USER,
                "--sasl-password",
                password,
            ]
            .map(str::to_owned),
        );
    }
    flags
}

/// The flags for OAUTHBEARER on `kafka`'s SASL listener with one token flag.
fn oauth_flags(kafka: &KafkaCluster, token_flag: &str, value: &str) -> Vec<String> {
    let mut flags = flags(kafka, "PLAIN", "");
    let at = flags.iter().position(|f| f == "--sasl-mechanism").unwrap();
    flags.truncate(at);
    flags.extend(["--sasl-mechanism", "OAUTHBEARER", token_flag, value].map(str::to_owned));
    flags
}

fn backup_with(kafka: &KafkaCluster, flags: &[String], root: &str, id: &str) -> std::process::Output {
    let mut args: Vec<&str> = vec!["backup", "--storage", root, "--backup-id", id, "--topics", "auth", "-q"];
    args.extend(flags.iter().map(String::as_str));
    let _ = kafka;
    run(&args)
}

fn every_mechanism_backs_up_and_a_wrong_password_is_named_without_the_secret(listener: Listener) {
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::default().with_listener(listener)) else {
        return;
    };
    let internal = kafka.internal_bootstrap();
    seed_simple(&internal, "auth", 2_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let source = consume(&internal, dir.path(), &["auth"]);
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let id = format!("auth-{}", mechanism.to_lowercase());
        let out = backup_with(&kafka, &flags(&kafka, mechanism, SASL_PASSWORD), root, &id);
        assert!(
            out.status.success(),
            "{mechanism}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, stored) = read_stored(root, &id);
        assert_same_records(&stored, &source);

        let secret = "Wr0ng-and-SECRET";
        for output in ["text", "json"] {
            let mut wrong = flags(&kafka, mechanism, secret);
            wrong.extend(["--output".to_owned(), output.to_owned()]);
            let out = backup_with(&kafka, &wrong, root, &format!("{id}-wrong"));
            assert!(!out.status.success(), "{mechanism}: a wrong password was accepted");
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                stderr.contains(mechanism) && stderr.contains("SASL_AUTHENTICATION_FAILED"),
                "{mechanism}: {stderr}"
            );
            assert!(
                !stderr.contains(secret) && !stdout.contains(secret),
                "the password leaked: {stdout}{stderr}"
            );
        }
    }
    // The password from a file, so it need not sit in `ps` output or the environment.
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{SASL_PASSWORD}\n")).unwrap();
    let mut from_file = flags(&kafka, "SCRAM-SHA-256", "");
    let at = from_file.iter().position(|f| f == "--sasl-password").unwrap();
    from_file.splice(
        at..at + 2,
        ["--sasl-password-file".to_owned(), password_file.display().to_string()],
    );
    let out = backup_with(&kafka, &from_file, root, "auth-password-file");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // OAUTHBEARER (the broker's unsecured-JWS validator): a token file, and a command printing
    // an expired token, refused without showing it.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, unsecured_jwt(3600)).unwrap();
    let out = backup_with(
        &kafka,
        &oauth_flags(
            &kafka,
            "--sasl-oauthbearer-token-file",
            &token_file.display().to_string(),
        ),
        root,
        "auth-oauthbearer",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, stored) = read_stored(root, "auth-oauthbearer");
    assert_same_records(&stored, &source);
    let expired = unsecured_jwt(-60);
    let out = backup_with(
        &kafka,
        &oauth_flags(&kafka, "--sasl-oauthbearer-token-command", &format!("echo {expired}")),
        root,
        "auth-oauthbearer-expired",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "an expired token was accepted");
    assert!(
        stderr.contains("OAUTHBEARER") && stderr.contains("refused the token"),
        "{stderr}"
    );
    let payload = expired.split('.').nth(1).unwrap();
    assert!(
        !stderr.contains(payload) && !stdout.contains(payload),
        "the token leaked: {stderr}"
    );

    // OAUTHBEARER from a token endpoint (client-credentials grant), the secret from a file;
    // a wrong secret is refused without being shown.
    let endpoint = kbs_testkit::TokenEndpoint::start("kbs-cli", "the-client-secret").url;
    let secret_file = dir.path().join("client-secret");
    for (secret, id) in [
        ("the-client-secret", "auth-oidc"),
        ("Wr0ng-client-SECRET", "auth-oidc-wrong"),
    ] {
        std::fs::write(&secret_file, secret).unwrap();
        let mut oidc = oauth_flags(&kafka, "--sasl-oauthbearer-token-endpoint-url", &endpoint);
        oidc.extend(
            [
                "--sasl-oauthbearer-client-id",
                "kbs-cli",
                "--sasl-oauthbearer-client-secret-file",
                secret_file.to_str().unwrap(),
            ]
            .map(str::to_owned),
        );
        let out = backup_with(&kafka, &oidc, root, id);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if id == "auth-oidc" {
            assert!(out.status.success(), "{stderr}");
            let (_, stored) = read_stored(root, id);
            assert_same_records(&stored, &source);
        } else {
            assert!(!out.status.success());
            assert!(stderr.contains("401") && stderr.contains("invalid_client"), "{stderr}");
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }

    // Restore through the same listener.
    let mut args: Vec<String> = ["restore", "--storage", root, "--backup-id", "auth-scram-sha-512"]
        .map(str::to_owned)
        .to_vec();
    args.extend(["--topic-map", "auth=auth-restored", "--create-topics", "-q"].map(str::to_owned));
    args.extend(flags(&kafka, "SCRAM-SHA-512", SASL_PASSWORD));
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let restored = consume(&internal, dir.path(), &["auth-restored"]);
    assert_eq!(restored.len(), source.len());
}

#[test]
fn sasl_plaintext_plain_and_scram_through_the_binary() {
    every_mechanism_backs_up_and_a_wrong_password_is_named_without_the_secret(Listener::SaslPlaintext);
}

#[test]
fn sasl_ssl_plain_and_scram_through_the_binary() {
    every_mechanism_backs_up_and_a_wrong_password_is_named_without_the_secret(Listener::SaslSsl);
}

#[test]
fn mutual_tls_through_the_binary() {
    let Some(kafka) =
        KafkaCluster::start_with(KafkaOptions::default().with_listener(Listener::Ssl { client_auth: true }))
    else {
        return;
    };
    let pki = kafka.pki().unwrap();
    let internal = kafka.internal_bootstrap();
    seed_simple(&internal, "auth", 1_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let mut with_cert = flags(&kafka, "", "");
    with_cert.extend([
        "--ssl-certificate-location".to_owned(),
        pki.client_cert_file.to_str().unwrap().to_owned(),
        "--ssl-key-location".to_owned(),
        pki.client_key_file.to_str().unwrap().to_owned(),
    ]);
    let out = backup_with(&kafka, &with_cert, root, "mtls");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, stored) = read_stored(root, "mtls");
    assert_same_records(&stored, &consume(&internal, dir.path(), &["auth"]));
    // Without a client certificate the broker refuses the connection.
    let out = backup_with(&kafka, &flags(&kafka, "", ""), root, "mtls-none");
    assert!(!out.status.success());
}

/// A cluster whose client listener authenticates with SASL and authorizes with ACLs; the test
/// peers use the PLAINTEXT internal listener as a super user.
fn cluster_with_acls() -> Option<KafkaCluster> {
    let options = KafkaOptions::default()
        .with_listener(Listener::SaslPlaintext)
        .with_config(
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        )
        .with_config("super.users", "User:ANONYMOUS");
    let kafka = KafkaCluster::start_with(options)?;
    let internal = kafka.internal_bootstrap();
    for (resource, name) in [
        ("TOPIC", "*"),
        ("GROUP", "*"),
        ("BROKER", "kafka-cluster"),
        ("TRANSACTIONAL_ID", "*"),
    ] {
        kbs_testkit::run_script(
            "kafka_admin.py",
            &["acl", &internal, "allow", SASL_USER, "ALL", resource, name],
        );
    }
    Some(kafka)
}

#[test]
fn a_target_the_user_may_not_read_is_never_taken_for_an_empty_one() {
    let Some(kafka) = cluster_with_acls() else { return };
    let internal = kafka.internal_bootstrap();
    seed_simple(&internal, "src", 500, 1, true);
    seed_simple(&internal, "locked", 100, 1, true);
    kbs_testkit::run_script(
        "kafka_admin.py",
        &["acl", &internal, "deny", SASL_USER, "READ", "TOPIC", "locked"],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let auth = flags(&kafka, "SCRAM-SHA-256", SASL_PASSWORD);
    let with_auth = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(auth.iter().map(String::as_str));
        run(&all)
    };
    let out = with_auth(&["backup", "--storage", root, "--backup-id", "b", "--topics", "src", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The target holds 100 records the restoring user may not read: the restore sees them
    // anyway (ListOffsets needs no READ) and refuses to append, instead of producing as if the
    // topic were empty.
    let out = with_auth(&[
        "restore",
        "--storage",
        root,
        "--backup-id",
        "b",
        "--topic-map",
        "src=locked",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("locked/0 already holds records (offsets 0..99)"),
        "{stderr}"
    );
    assert_eq!(
        consume(&internal, dir.path(), &["locked"]).len(),
        100,
        "nothing was produced"
    );
    // A source the user may not read stops the backup with the broker's error by name.
    let out = with_auth(&[
        "backup",
        "--storage",
        root,
        "--backup-id",
        "denied",
        "--topics",
        "locked",
        "-q",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TOPIC_AUTHORIZATION_FAILED"), "{stderr}");
}

/// OAUTHBEARER sessions that expire during a long run: the broker ends each session after 2 s
/// (`connections.max.reauth.ms`, KIP-368) and the token in the file is replaced every second
/// by one that expires 5 s later, as a sidecar refreshing tokens does. A continuous backup
/// renews each session on its live connections with the file's current token (KIP-368
/// re-authentication), never has a request refused for an ended session, and stores every
/// record once.
#[test]
fn a_continuous_backup_outlives_its_oauthbearer_sessions_and_tokens() {
    let options = KafkaOptions::default()
        .with_listener(Listener::SaslPlaintext)
        .with_config("listener.name.client.oauthbearer.connections.max.reauth.ms", "2000");
    let Some(kafka) = KafkaCluster::start_with(options) else {
        return;
    };
    let internal = kafka.internal_bootstrap();
    seed_simple(&internal, "auth", 1_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, unsecured_jwt(5)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let (stop, token_file) = (stop.clone(), token_file.clone());
        std::thread::spawn(move || {
            let mut rotations = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(1));
                // Replaced atomically, so a reader never sees half a token.
                let next = token_file.with_extension("next");
                std::fs::write(&next, unsecured_jwt(5)).unwrap();
                std::fs::rename(&next, &token_file).unwrap();
                rotations += 1;
            }
            rotations
        })
    };
    let mut args: Vec<String> = [
        "backup",
        "--storage",
        root_str,
        "--backup-id",
        "reauth",
        "--topics",
        "auth",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["--continuous", "--segment-max-interval", "1s", "-q"].map(str::to_owned));
    args.extend(oauth_flags(
        &kafka,
        "--sasl-oauthbearer-token-file",
        &token_file.display().to_string(),
    ));
    let started = std::time::Instant::now();
    let log = dir.path().join("backup.log");
    let child = kbs()
        .env(
            "RUST_LOG",
            "warn,kbs_kafka::connection=debug,kbs_kafka::sasl::reauth=debug,kbs_kafka::client=debug",
        )
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let checkpoint = root.join("reauth/checkpoints/checkpoint.json");
    let checkpointed = || checkpointed_offsets(&checkpoint);
    // New records in four rounds, each after the sessions of the last one have expired.
    for round in 1..=4 {
        eventually(
            "the records so far checkpointed",
            std::time::Duration::from_secs(60),
            || checkpointed() >= 1_000 * round,
        );
        std::thread::sleep(std::time::Duration::from_millis(2_500));
        seed_simple(&internal, "auth", 1_000, 2, false);
    }
    eventually("every record checkpointed", std::time::Duration::from_secs(60), || {
        checkpointed() >= 5_000
    });
    let ran = started.elapsed();
    terminate(&child);
    let out = wait_with_deadline(child, std::time::Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rotations = refresher.join().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    assert!(ran > std::time::Duration::from_secs(10), "{ran:?}");
    // The sessions were renewed on the live connections, each with the token of the moment;
    // none ended under a request (that would have closed the connection and been retried).
    let renewals = stderr.matches("re-authenticated").count();
    assert!(renewals >= 4, "{renewals} sessions renewed in {ran:?}:\n{stderr}");
    assert!(!stderr.contains("re-authentication failed"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    let connections = stderr.matches("kbs_kafka::connection: connected").count();
    assert!(
        connections <= 2,
        "{connections} connections: sessions were not renewed in place:\n{stderr}"
    );
    assert!(rotations >= 8, "{rotations}");
    let (_, stored) = read_stored(root_str, "reauth");
    assert_same_records(&stored, &consume(&internal, dir.path(), &["auth"]));
}

/// Amazon MSK IAM through the binary, against kbs-testkit's verifying endpoint (botocore
/// recomputes every signature) in front of a Kafka node: `AWS_MSK_IAM` with temporary keys from
/// the environment and with a profile's keys, MSK's OAUTHBEARER token, a restore, and a wrong
/// secret refused. No output of any run (stdout, stderr at debug level, the backup's files)
/// holds a secret key or session token.
#[test]
fn msk_iam_backs_up_and_restores_through_the_binary_without_showing_a_secret() {
    use kbs_testkit::{AwsKey, MskAuthentication, MskIamEndpoint, free_port};

    const SECRETS: [&str; 3] = ["msk-temporary-SECRET", "msk-session-TOKEN", "msk-profile-SECRET"];
    let keys = [
        AwsKey {
            access_key_id: "ASIAKBSCLITEMP".into(),
            secret_access_key: SECRETS[0].into(),
            session_token: Some(SECRETS[1].into()),
        },
        AwsKey {
            access_key_id: "AKIAKBSCLIPROFILE".into(),
            secret_access_key: SECRETS[2].into(),
            session_token: None,
        },
    ];
    let kafka_port = free_port();
    let endpoint = MskIamEndpoint::start(kafka_port, "ap-southeast-2", &keys);
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::behind_proxy(kafka_port, endpoint.port())) else {
        return;
    };
    let internal = kafka.internal_bootstrap();
    seed_simple(&internal, "auth", 2_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let source = consume(&internal, dir.path(), &["auth"]);
    let profiles = dir.path().join("credentials");
    std::fs::write(
        &profiles,
        format!(
            "[backup]\naws_access_key_id = AKIAKBSCLIPROFILE\naws_secret_access_key = {}\n",
            SECRETS[2]
        ),
    )
    .unwrap();

    let run_msk = |args: &[&str], secret: &str, extra: &[&str]| {
        let mut command = kbs();
        command
            .args(args)
            .args([
                "--bootstrap-servers",
                &kafka.bootstrap(),
                "--security-protocol",
                "SASL_PLAINTEXT",
            ])
            .args(extra)
            .env("RUST_LOG", "debug")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_SHARED_CREDENTIALS_FILE", &profiles)
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
            .env("AWS_REGION", "ap-southeast-2")
            .env("AWS_ACCESS_KEY_ID", "ASIAKBSCLITEMP")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_SESSION_TOKEN", SECRETS[1])
            .env_remove("AWS_PROFILE");
        let out = command.output().expect("run kbs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in SECRETS.iter().chain([&"Wr0ng-msk-SECRET"]) {
            assert!(!text.contains(secret), "a secret was printed: {text}");
        }
        (out.status.success(), text)
    };
    let backup = |id: &str| {
        [
            "backup",
            "--storage",
            root,
            "--backup-id",
            id,
            "--topics",
            "auth",
            "--output",
            "json",
        ]
        .map(str::to_owned)
    };

    for (id, extra) in [
        ("msk-env", vec!["--sasl-mechanism", "AWS_MSK_IAM"]),
        (
            "msk-profile",
            vec!["--sasl-mechanism", "AWS_MSK_IAM", "--aws-profile", "backup"],
        ),
        (
            "msk-oauthbearer",
            vec!["--sasl-mechanism", "OAUTHBEARER", "--sasl-oauthbearer-aws-msk-iam"],
        ),
    ] {
        let args = backup(id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = run_msk(&args, SECRETS[0], &extra);
        assert!(ok, "{id}: {text}");
        let (_, stored) = read_stored(root, id);
        assert_same_records(&stored, &source);
    }
    let log = endpoint.authentications();
    for (mechanism, key) in [
        ("AWS_MSK_IAM", "ASIAKBSCLITEMP"),
        ("AWS_MSK_IAM", "AKIAKBSCLIPROFILE"),
        ("OAUTHBEARER", "ASIAKBSCLITEMP"),
    ] {
        assert!(
            log.contains(&MskAuthentication::Accepted(mechanism.into(), key.into())),
            "{log:?}"
        );
    }

    // A wrong secret: refused by the endpoint, named, not shown.
    let args = backup("msk-wrong");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = run_msk(&args, "Wr0ng-msk-SECRET", &["--sasl-mechanism", "AWS_MSK_IAM"]);
    assert!(!ok, "a wrong secret was accepted");
    assert!(
        text.contains("AWS_MSK_IAM") && text.contains("signature does not match"),
        "{text}"
    );

    // Restore through the endpoint.
    let (ok, text) = run_msk(
        &[
            "restore",
            "--storage",
            root,
            "--backup-id",
            "msk-env",
            "--topic-map",
            "auth=auth-restored",
            "--create-topics",
        ],
        SECRETS[0],
        &["--sasl-mechanism", "AWS_MSK_IAM"],
    );
    assert!(ok, "{text}");
    let restored = consume(&internal, dir.path(), &["auth-restored"]);
    assert_eq!(restored.len(), source.len());

    // Nothing the backups wrote holds a secret.
    for entry in walk(std::path::Path::new(root)) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                entry.display()
            );
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
