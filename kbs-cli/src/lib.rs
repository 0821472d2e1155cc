//! The library half of the `kbs` command: each subcommand's work, composed from the kbs
//! crates. The binary (`main.rs`) only parses arguments, sets up logging and the runtime,
//! and hands this library a writer for the report; the library never prints on its own.

mod args;
pub mod backup;
pub mod cli;
mod commands;
pub mod config;
pub mod describe;
pub mod encryption;
mod error;
pub mod export;
pub mod import;
pub mod inspect;
pub mod lease;
pub mod list;
pub mod metrics;
pub mod options;
pub mod prune;
pub mod restore;
pub mod running;
mod stable_hash;
pub mod status;
pub mod storage;
pub mod validate;
pub mod workers;

pub use commands::{backup_summary_text, execute};
pub use error::CliError;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything held.
    Success,
    /// The command ran but found problems (e.g. `validate` on a damaged backup).
    ProblemsFound,
}

/// What the binary hands the library besides the parsed command line.
pub struct Context {
    /// Where long-running commands report progress.
    pub progress: std::sync::Arc<dyn backup::ProgressSink>,
    /// Turns true when the process is asked to stop (SIGINT/SIGTERM).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
