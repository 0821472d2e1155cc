//! `--config FILE`: a TOML file whose keys give defaults to flags.
//!
//! ```toml
//! storage = "s3://backups/kafka"        # any subcommand's --storage
//! s3-region = "eu-central-1"
//! bootstrap_servers = ["kafka-1:9092", "kafka-2:9092"]   # arrays join with commas
//!
//! [backup]                              # only for `kbs backup`
//! compression = "zstd"
//! ```
//!
//! Keys are flag long names with `-` or `_`. A key that no subcommand knows is an error, so a
//! typo does not silently fall back to a default. Flags and `KBS_*` environment variables win
//! over the file. A secret flag's value from the file (a flag declared with hidden environment
//! values, e.g. `sasl-password`) is never shown by `--help`, as its environment value is not.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::error::CliError;

/// Parses the command line, applying defaults from the `--config` file (or `KBS_CONFIG`).
///
/// `--help` and `--version` come back as a [`clap::Error`] inside [`CliError::Usage`], which
/// the binary prints with its own exit code.
pub fn parse_command_line(args: Vec<OsString>) -> Result<Cli, CliError> {
    let mut command = Cli::command();
    if let Some(path) = config_path(&args) {
        let table = load(&path)?;
        command = apply(command, &table, &path)?;
    }
    let matches = command.try_get_matches_from(args).map_err(CliError::Usage)?;
    Cli::from_arg_matches(&matches).map_err(CliError::Usage)
}

/// The config file named by `--config` or `KBS_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
        if arg == "--" {
            break;
        }
    }
    std::env::var_os("KBS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn load(path: &Path) -> Result<toml::Table, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.parse::<toml::Table>().map_err(|e| CliError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn value_string(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(value_string)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Table(_) => None,
    }
}

fn arg_id(key: &str) -> String {
    key.replace('-', "_")
}

/// Makes `text` the default of `arg`; a secret arg (hidden environment values) never shows it.
fn set_default(arg: clap::Arg, text: &str) -> clap::Arg {
    let secret = arg.is_hide_env_values_set();
    arg.default_value(text.to_owned()).hide_default_value(secret)
}

/// Sets config values as defaults of the matching args of the root command and of every
/// subcommand (a `[name]` table applies to subcommand `name` only).
fn apply(mut command: clap::Command, table: &toml::Table, path: &Path) -> Result<clap::Command, CliError> {
    let subcommands: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_string()).collect();
    let mut used = BTreeSet::new();
    let mut flat = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => {
                if !subcommands.contains(key) {
                    return Err(CliError::Config {
                        path: path.to_path_buf(),
                        message: format!("[{key}] is not a subcommand (known: {})", subcommands.join(", ")),
                    });
                }
                for (inner, value) in section {
                    let text = value_string(value).ok_or_else(|| CliError::Config {
                        path: path.to_path_buf(),
                        message: format!("[{key}] {inner}: nested tables are not allowed"),
                    })?;
                    let id = arg_id(inner);
                    let sub = command.find_subcommand(key).expect("listed above");
                    if !sub.get_arguments().any(|a| a.get_id() == id.as_str()) {
                        return Err(CliError::Config {
                            path: path.to_path_buf(),
                            message: format!("[{key}] {inner}: `kbs {key}` has no such flag"),
                        });
                    }
                    command = command.mut_subcommand(key, |s| s.mut_arg(id.clone(), |a| set_default(a, &text)));
                }
            }
            other => flat.push((key.clone(), value_string(other).expect("not a table"))),
        }
    }
    for (key, text) in flat {
        let id = arg_id(&key);
        if command.get_arguments().any(|a| a.get_id() == id.as_str()) {
            command = command.mut_arg(id.clone(), |a| set_default(a, &text));
            used.insert(key.clone());
        }
        for name in &subcommands {
            let has = command
                .find_subcommand(name)
                .is_some_and(|s| s.get_arguments().any(|a| a.get_id() == id.as_str()));
            if has {
                command = command.mut_subcommand(name, |s| s.mut_arg(id.clone(), |a| set_default(a, &text)));
                used.insert(key.clone());
            }
        }
        if !used.contains(&key) {
            return Err(CliError::Config {
                path: path.to_path_buf(),
                message: format!("{key}: no subcommand has such a flag"),
            });
        }
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of every subcommand whose name says it holds a secret is declared secret
    /// (hidden environment values), which hides its config-file default from `--help` too.
    #[test]
    fn flags_named_like_secrets_are_declared_secret() {
        let command = Cli::command();
        let mut secret = BTreeSet::new();
        for sub in std::iter::once(&command).chain(command.get_subcommands()) {
            for arg in sub.get_arguments() {
                let name = arg.get_id().as_str().to_lowercase();
                // `--sasl-password-file` and the like name where a secret is (or where a token
                // comes from), not the secret.
                let names_a_place = ["_file", "_command", "_url"].iter().any(|end| name.ends_with(end));
                let looks_secret = !names_a_place
                    && ["password", "secret", "token", "credential", "passphrase"]
                        .iter()
                        .any(|w| name.contains(w));
                assert_eq!(
                    looks_secret,
                    arg.is_hide_env_values_set(),
                    "--{name} of `kbs {}`: a secret flag must hide its values, and only a secret flag does",
                    sub.get_name()
                );
                if looks_secret {
                    secret.insert(name.replace('_', "-"));
                }
            }
        }
        // kbs-cli/tests/cli/secrets.rs checks each of these through the binary.
        assert_eq!(
            secret.into_iter().collect::<Vec<_>>(),
            [
                "sasl-oauthbearer-client-secret",
                "sasl-oauthbearer-token",
                "sasl-password"
            ]
        );
    }

    #[test]
    fn a_secret_default_from_the_config_file_is_not_shown_by_help() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kbs.toml");
        std::fs::write(&path, "sasl-password = \"TOPSECRET\"\nstorage = \"/data/backups\"\n").unwrap();
        let table = load(&path).unwrap();
        let mut command = apply(Cli::command(), &table, &path).unwrap();
        let help = command
            .find_subcommand_mut("backup")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("TOPSECRET"), "{help}");
        assert!(help.contains("/data/backups"), "a plain default is still shown: {help}");
    }
}
