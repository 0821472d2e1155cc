//! The `kbs` command.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kbs: Kafka backup and restore.
#[derive(Parser)]
#[command(name = "kbs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a .kbs segment's header, footer and records as JSON lines (bytes in base64),
    /// after checking every checksum.
    Inspect {
        /// Path of the segment file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { file } => inspect(&file),
    }
}

#[allow(clippy::print_stderr)]
fn inspect(file: &std::path::Path) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("kbs inspect: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match kbs_cli::inspect::segment_to_json_lines(data.into()) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for line in lines {
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kbs inspect: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
