//! Where `scripts/setup.sh` puts the tools, and the skip rule for missing ones.

use std::io::Write;
use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

/// The cache folder outside the clone where set-up installs things (`$KBS_CACHE`, default
/// `~/.cache/kbs`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KBS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/kbs"))
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A program from PATH or `~/.cargo/bin`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| Some(home().join(".cargo/bin").join(name)).filter(|p| p.is_file()))
}

/// A program of the venv (`$KBS_CACHE/venv/bin/<name>`), if it is there.
pub(crate) fn venv_program(name: &str) -> Option<PathBuf> {
    Some(cache_dir().join("venv/bin").join(name)).filter(|p| p.is_file())
}

/// The venv's Python interpreter.
pub fn python() -> Option<PathBuf> {
    venv_program("python")
}

/// Writes `note: <message>` straight to the process's stderr (not the test harness's captured
/// output), so `cargo test` shows it even for a passing test.
pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "note: {message}");
}

/// Returns `Some(())` when nothing is `missing`; `None` when something is missing and
/// `skip_var=1` is set (with a [`note`] of what is skipped); panics otherwise, naming what is
/// missing, `scripts/setup.sh` and `skip_var`.
pub fn require(skip_var: &str, missing: &[String]) -> Option<()> {
    if missing.is_empty() {
        return Some(());
    }
    let what = missing.join(", ");
    if std::env::var(skip_var).as_deref() == Ok("1") {
        note(&format!("{skip_var}=1: skipping a test that needs {what}"));
        return None;
    }
    panic!("missing {what}: run scripts/setup.sh (or set {skip_var}=1 to skip these tests)");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skip variable nobody sets.
    const UNSET: &str = "KBS_SKIP_TESTKIT_SELF_TEST_NEVER_SET";

    #[test]
    fn nothing_missing_runs_the_test() {
        assert_eq!(require(UNSET, &[]), Some(()));
    }

    #[test]
    #[should_panic(
        expected = "missing frobnicator: run scripts/setup.sh (or set KBS_SKIP_TESTKIT_SELF_TEST_NEVER_SET=1"
    )]
    fn a_missing_tool_without_the_skip_variable_fails() {
        let _ = require(UNSET, &["frobnicator".to_owned()]);
    }

    #[test]
    fn programs_are_found_on_path_and_absent_ones_are_none() {
        assert_eq!(find_program("kbs-testkit-no-such-program"), None);
        let sh = find_program("sh").expect("sh on PATH");
        assert!(sh.is_file() && sh.ends_with("sh"), "{}", sh.display());
    }
}
