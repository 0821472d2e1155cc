//! No secret in any output: a SASL password given by the config file (`--config` or
//! `KBS_CONFIG`, top level or a subcommand's table), by `KBS_SASL_PASSWORD` or by the flag is
//! never printed by `--help` of any subcommand, nor by an error. `SECRET_FLAGS` must list every
//! secret flag; kbs-cli's unit tests check that every flag whose name says it is secret is
//! declared secret (hidden environment values), and so is listed here.

use crate::harness::*;

/// Every flag that takes a secret.
const SECRET_FLAGS: &[&str] = &[
    "sasl-password",
    "sasl-oauthbearer-token",
    "sasl-oauthbearer-client-secret",
];

const SUBCOMMANDS: &[&str] = &["backup", "restore", "list", "describe", "validate", "inspect", "unlock"];

fn assert_hidden(marker: &str, out: &std::process::Output, what: &str) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains(marker) && !stderr.contains(marker),
        "{what} printed the secret:\n{stdout}{stderr}"
    );
}

#[test]
fn secrets_from_the_config_file_or_the_environment_never_appear_in_help_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    for flag in SECRET_FLAGS {
        let marker = format!("TOPSECRET-{}", flag.replace('-', ""));
        let top = dir.path().join(format!("{flag}-top.toml"));
        std::fs::write(&top, format!("{flag} = \"{marker}\"\n")).unwrap();
        let table = dir.path().join(format!("{flag}-table.toml"));
        std::fs::write(
            &table,
            format!("[backup]\n{flag} = \"{marker}-b\"\n[restore]\n{flag} = \"{marker}-r\"\n"),
        )
        .unwrap();
        for sub in SUBCOMMANDS.iter().map(|s| vec![*s]).chain([vec![]]) {
            for config in [&top, &table] {
                let mut args = vec!["--config", config.to_str().unwrap()];
                args.extend(&sub);
                args.push("--help");
                let out = run(&args);
                assert!(out.status.success(), "{args:?}");
                assert_hidden(&marker, &out, &format!("kbs {args:?}"));
                let out = kbs()
                    .env("KBS_CONFIG", config)
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert_hidden(
                    &marker,
                    &out,
                    &format!("KBS_CONFIG={} kbs {sub:?} --help", config.display()),
                );
            }
            let env = format!("KBS_{}", flag.replace('-', "_").to_uppercase());
            let out = kbs().env(&env, &marker).args(&sub).arg("--help").output().unwrap();
            assert_hidden(&marker, &out, &format!("{env}=… kbs {sub:?} --help"));
        }
        // An error about the same command line does not echo it either.
        let out = run(&[
            "--config",
            top.to_str().unwrap(),
            "backup",
            "--storage",
            "/nonexistent",
            "--backup-id",
            "x",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "NOPE",
            "--sasl-username",
            "u",
            "--output",
            "json",
        ]);
        assert!(!out.status.success());
        assert_hidden(&marker, &out, "an invalid --sasl-mechanism");
    }
}
