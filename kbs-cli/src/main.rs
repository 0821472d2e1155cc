//! The `kbs` command: argument parsing, logging, runtime and exit codes; the work is in the
//! `kbs_cli` library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use kbs_cli::backup::{Progress, ProgressSink};
use kbs_cli::cli::OutputFormat;
use kbs_cli::{CliError, Outcome};

/// Renders progress on stderr: a self-rewriting line on a terminal, a log line every 10 s
/// otherwise.
struct ProgressPrinter {
    tty: bool,
}

impl ProgressSink for ProgressPrinter {
    #[allow(clippy::print_stderr)]
    fn note(&self, message: &str) {
        eprintln!("kbs: {message}");
    }

    #[allow(clippy::print_stderr)]
    fn report(&self, p: &Progress) {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let rate = p.records as f64 / secs;
        let mb = p.bytes_in as f64 / (1 << 20) as f64;
        let eta = match p.remaining_offsets {
            Some(left) if rate > 0.0 => format!(", ~{:.0} s left", left as f64 / rate),
            _ => String::new(),
        };
        let line = format!(
            "{} records, {mb:.1} MiB read ({:.1} MiB/s), {:.1} MiB stored, {}/{} partitions done{eta}",
            p.records,
            mb / secs,
            p.bytes_out as f64 / (1 << 20) as f64,
            p.partitions_done,
            p.partitions_total
        );
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if p.elapsed.as_secs().is_multiple_of(10) {
            eprintln!("kbs: progress: {line}");
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = match kbs_cli::config::parse_command_line(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(CliError::Usage(e)) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
        Err(e) => {
            eprintln!("kbs: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kbs: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    runtime.spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    let progress: Arc<dyn ProgressSink> = if cli.quiet {
        Arc::new(kbs_cli::backup::NoProgress)
    } else {
        Arc::new(ProgressPrinter {
            tty: std::io::stderr().is_terminal(),
        })
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(kbs_cli::execute(
        &cli,
        &mut stdout,
        kbs_cli::Context { progress, shutdown },
    )) {
        Ok(Outcome::Success) => {
            if std::io::stderr().is_terminal() && !cli.quiet {
                eprintln!();
            }
            ExitCode::SUCCESS
        }
        Ok(Outcome::ProblemsFound) => ExitCode::from(3),
        Err(e) => {
            eprintln!("kbs: {e}");
            if cli.output == OutputFormat::Json {
                // Machines get the failure on stdout too, with a stable kind.
                let error = serde_json::json!({
                    "error": { "kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code() }
                });
                let _ = writeln!(stdout, "{error}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
