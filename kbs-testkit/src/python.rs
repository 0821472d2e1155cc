//! Running Python scripts (the independent clients) with the venv's interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::tools::python;

/// Path of a script shipped in `kbs-testkit/py` (the scripts more than one suite uses).
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

/// A command running `script` with the venv's Python, for callers that need its pipes; panics
/// if the venv is missing (the servers' `start` checks it first, with the skip rule).
pub fn python_command(script: &Path) -> Command {
    let mut command = Command::new(python().expect("the venv python: run scripts/setup.sh"));
    command.arg(script);
    command
}

/// Runs `script` with the venv's Python and returns its output; panics with its stdout and
/// stderr if it fails.
pub fn run_python(script: &Path, args: &[&str]) -> Output {
    let output = python_command(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}): {}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a script from `kbs-testkit/py` (see [`script`]) with [`run_python`].
pub fn run_script(name: &str, args: &[&str]) -> Output {
    run_python(&script(name), args)
}
