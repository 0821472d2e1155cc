//! Running a parsed command: each subcommand's engine called with its options, and its report
//! written as text or JSON to the writer the binary hands in (the library never prints on its
//! own).

use std::io::Write;

use serde_json::json;

use crate::args::{backup_id, backup_options, restore_options, worker_options};
use crate::cli::{Cli, Command, OutputFormat};
use crate::error::CliError;
use crate::{
    Context, Outcome, backup, describe, inspect, lease, list, metrics, options, prune, restore, status, storage,
    validate,
};

/// Writes a report as pretty-printed JSON (`--output json`).
fn write_json(out: &mut dyn Write, report: &impl serde::Serialize) -> Result<(), CliError> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(report).expect("report serialises")
    )
    .map_err(io)
}

fn io(e: std::io::Error) -> CliError {
    CliError::ReadFile {
        path: "<stdout>".into(),
        source: e,
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The text summary of a backup run.
pub fn backup_summary_text(r: &backup::BackupReport) -> String {
    let secs = r.duration_secs.max(1e-9);
    let ratio = if r.bytes_out > 0 {
        r.bytes_in as f64 / r.bytes_out as f64
    } else {
        0.0
    };
    let mut text = format!(
        "backup {} {}: {} topics, {} partitions, {} records in {} segments ({} adopted); {} read, {} stored \
         (ratio {ratio:.2}); {secs:.1} s, {:.0} records/s, {}/s; backup now holds {} records\n",
        r.backup_id,
        if r.resumed { "resumed and complete" } else { "complete" },
        r.topics,
        r.partitions,
        r.records,
        r.segments,
        r.adopted_segments,
        human_bytes(r.bytes_in),
        human_bytes(r.bytes_out),
        r.records as f64 / secs,
        human_bytes((r.bytes_in as f64 / secs) as u64),
        r.total_records,
    );
    for g in &r.gaps {
        text.push_str(&format!(
            "GAP {}/{} offsets {}..{} were deleted by retention before they could be read\n",
            g.topic, g.partition, g.from_offset, g.to_offset
        ));
    }
    text
}

/// Runs the parsed command, writing its report to `out`.
pub async fn execute(cli: &Cli, out: &mut dyn Write, context: Context) -> Result<Outcome, CliError> {
    let format = cli.output;
    match &cli.command {
        Command::Backup(args) => {
            let options = backup_options(args)?;
            let metrics = std::sync::Arc::new(metrics::BackupMetrics::default());
            let storage = storage::open_observed(&args.storage, metrics.client.clone()).await?;
            let report = match worker_options(&args.workers)? {
                Some(workers) => {
                    crate::workers::run_backup_worker(
                        storage,
                        options,
                        workers,
                        metrics,
                        context.progress,
                        context.shutdown,
                    )
                    .await?
                }
                None => backup::run_with_metrics(storage, options, metrics, context.progress, context.shutdown).await?,
            };
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => out.write_all(backup_summary_text(&report).as_bytes()).map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Restore(args) => {
            let options = restore_options(args)?;
            let metrics = std::sync::Arc::new(metrics::RestoreMetrics::default());
            let storage = storage::open_observed(&args.storage, metrics.client.clone()).await?;
            let report = match worker_options(&args.workers)? {
                Some(workers) => {
                    crate::workers::run_restore_worker(
                        storage,
                        options,
                        workers,
                        metrics,
                        context.progress.clone(),
                        context.shutdown,
                    )
                    .await?
                }
                None => {
                    restore::run_until(storage, options, metrics, context.progress.clone(), context.shutdown).await?
                }
            };
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => out.write_all(restore::report_text(&report).as_bytes()).map_err(io)?,
            }
            Ok(if report.skipped_segments.is_empty() {
                Outcome::Success
            } else {
                Outcome::ProblemsFound
            })
        }
        Command::List(args) => {
            if let Some(path) = storage::local_root(&args.storage.storage)
                && !path.exists()
            {
                return Err(CliError::StorageRootMissing {
                    root: args.storage.storage.clone(),
                });
            }
            let storage = storage::open(&args.storage).await?;
            let backups = list::list(storage).await?;
            match format {
                OutputFormat::Json => writeln!(out, "{}", json!({ "backups": backups })).map_err(io)?,
                OutputFormat::Text => {
                    writeln!(
                        out,
                        "{:<32} {:<12} {:<25} {:<25} {:>7} {:>12} {:>14}",
                        "BACKUP", "STATUS", "CREATED", "COMPLETED", "TOPICS", "RECORDS", "BYTES"
                    )
                    .map_err(io)?;
                    for b in &backups {
                        let status = match (b.status.as_str(), b.running) {
                            ("in_progress", true) => "RUNNING",
                            ("in_progress", false) => "INCOMPLETE",
                            (status, _) => status,
                        };
                        writeln!(
                            out,
                            "{:<32} {:<12} {:<25} {:<25} {:>7} {:>12} {:>14}",
                            b.backup_id,
                            status,
                            b.created_at.as_deref().unwrap_or("-"),
                            b.completed_at.as_deref().unwrap_or("-"),
                            b.topics,
                            b.records,
                            b.size_bytes
                        )
                        .map_err(io)?;
                    }
                    if backups.iter().any(|b| b.status == "in_progress" && b.running) {
                        writeln!(
                            out,
                            "RUNNING: a kbs backup or its workers hold its lease now (kbs status shows their progress)"
                        )
                        .map_err(io)?;
                    }
                    if backups.iter().any(|b| b.status == "in_progress" && !b.running) {
                        writeln!(
                            out,
                            "INCOMPLETE: interrupted; rerun its backup command to finish it (restore refuses it unless \
                             --allow-incomplete)"
                        )
                        .map_err(io)?;
                    }
                }
            }
            Ok(Outcome::Success)
        }
        Command::Describe(args) => {
            let storage = storage::open(&args.storage).await?;
            let manifest = describe::load_manifest(&storage, &backup_id(&args.backup_id)?).await?;
            match format {
                OutputFormat::Json => out.write_all(&manifest.to_json_pretty()).map_err(io)?,
                OutputFormat::Text => {
                    let activity = if list::status_name(&manifest) == "in_progress" {
                        Some(crate::running::backup_activity(&storage, &manifest.backup_id).await?)
                    } else {
                        None
                    };
                    out.write_all(describe::describe_text(&manifest, activity.as_ref()).as_bytes())
                        .map_err(io)?;
                    let restores = describe::load_restores(&storage, &manifest.backup_id).await?;
                    out.write_all(describe::restores_text(&restores).as_bytes())
                        .map_err(io)?;
                }
            }
            Ok(Outcome::Success)
        }
        Command::Validate(args) => {
            let storage = storage::open(&args.storage).await?;
            let depth = if args.deep {
                validate::Depth::Deep
            } else {
                validate::Depth::Quick
            };
            let identities = crate::encryption::read_identity_option(args.identity.as_deref())?;
            let report = validate::validate(storage, &backup_id(&args.backup_id)?, depth, identities.as_ref()).await?;
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => {
                    for p in &report.problems {
                        match p.position {
                            Some(pos) => writeln!(out, "PROBLEM {} (byte {pos}): {}", p.key, p.what),
                            None => writeln!(out, "PROBLEM {}: {}", p.key, p.what),
                        }
                        .map_err(io)?;
                    }
                    writeln!(
                        out,
                        "{} {}: {} segments, {} records, {} bytes read, {} problems ({})",
                        if report.is_valid() { "VALID" } else { "INVALID" },
                        report.backup_id,
                        report.segments_checked,
                        report.records_checked,
                        report.bytes_read,
                        report.problems.len(),
                        if report.deep { "deep" } else { "quick" }
                    )
                    .map_err(io)?;
                }
            }
            Ok(if report.is_valid() {
                Outcome::Success
            } else {
                Outcome::ProblemsFound
            })
        }
        Command::Export(args) => {
            let options = crate::args::export_options(args)?;
            let source = storage::open(&args.storage).await?;
            let target = kbs_storage::open(&args.to, &storage::storage_options(&args.storage)?).await?;
            let report = crate::export::run(source, target, options, context.progress.clone()).await?;
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => writeln!(
                    out,
                    "exported {}: {} records, {} bytes in {} objects ({} written now, {} already there)",
                    report.backup_id,
                    report.records,
                    report.bytes,
                    report.objects_written + report.objects_present,
                    report.objects_written,
                    report.objects_present
                )
                .map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Import(args) => {
            let options = crate::args::import_options(args)?;
            let staging = storage::open(&args.storage).await?;
            let from = kbs_storage::open(&args.from, &storage::storage_options(&args.storage)?).await?;
            let report = crate::import::run(from, staging, options, context.progress.clone()).await?;
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => {
                    writeln!(
                        out,
                        "staged {} records of {} envelope objects as backup {}{}{}",
                        report.staged.records,
                        report.staged.objects,
                        report.staged.backup_id,
                        if report.staged.duplicates > 0 {
                            format!(" ({} duplicates kept once)", report.staged.duplicates)
                        } else {
                            String::new()
                        },
                        if report.staged.already_staged {
                            " (staged by an earlier run)"
                        } else {
                            ""
                        }
                    )
                    .map_err(io)?;
                    out.write_all(restore::report_text(&report.restore).as_bytes())
                        .map_err(io)?;
                }
            }
            Ok(Outcome::Success)
        }
        Command::Keygen(args) => {
            let public = crate::encryption::write_new_identity(&args.file)?;
            match format {
                OutputFormat::Json => writeln!(out, "{}", json!({ "recipient": public })).map_err(io)?,
                OutputFormat::Text => writeln!(out, "{public}").map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Inspect(args) => {
            let data = match args.storage_args() {
                Some(storage_args) => {
                    let storage = storage::open(&storage_args).await?;
                    storage.get(&args.segment).await?.bytes
                }
                None => bytes::Bytes::from(std::fs::read(&args.segment).map_err(|source| CliError::ReadFile {
                    path: args.segment.clone().into(),
                    source,
                })?),
            };
            let identities = crate::encryption::read_identity_option(args.identity.as_deref())?;
            let lines =
                inspect::segment_to_json_lines(data, identities.as_ref()).map_err(|source| CliError::Segment {
                    key: args.segment.clone(),
                    source,
                })?;
            for line in lines {
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(Outcome::Success)
        }
        Command::Prune(args) => {
            let storage = storage::open(&args.storage).await?;
            let options = prune::PruneOptions {
                policy: prune::RetentionPolicy {
                    keep_last: args.keep_last,
                    keep_within: args
                        .keep_within
                        .as_deref()
                        .map(|d| {
                            humantime::parse_duration(d).map_err(|e| CliError::InvalidArgument {
                                flag: "keep-within",
                                message: format!("{d:?} is not a duration like 36h, 7d, 2w or 1y: {e}"),
                            })
                        })
                        .transpose()?,
                    keep_daily: args.keep_daily,
                    keep_weekly: args.keep_weekly,
                    keep_monthly: args.keep_monthly,
                    allow_deleting_newest: args.delete_newest,
                },
                backup_ids: args.backup_ids.clone(),
                dry_run: args.dry_run,
            };
            let report = prune::prune(storage, &options).await?;
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => write!(out, "{}", prune::report_text(&report)).map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Delete(args) => {
            let storage = storage::open(&args.storage).await?;
            let id = backup_id(&args.backup_id)?;
            let deleted = prune::delete_backup(storage, &id, "kbs delete", args.force).await?;
            match format {
                OutputFormat::Json => write_json(out, &deleted)?,
                OutputFormat::Text => writeln!(
                    out,
                    "deleted backup {id} ({} objects{})",
                    deleted.objects,
                    if deleted.resumed {
                        ", finishing an earlier deletion"
                    } else {
                        ""
                    }
                )
                .map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Status(args) => {
            let storage = storage::open(&args.storage).await?;
            let id = args.backup_id.as_deref().map(backup_id).transpose()?;
            let client = if args.kafka.bootstrap_servers.iter().all(|s| s.trim().is_empty()) {
                None
            } else {
                Some(kbs_kafka::KafkaClient::connect(options::kafka_config(&args.kafka)?).await?)
            };
            let interval = options::parse_duration("interval", &args.interval)?;
            let mut previous: Option<status::StatusReport> = None;
            loop {
                let report = status::status(storage.clone(), id.as_ref(), client.as_ref()).await?;
                let rates = previous.as_ref().map(|p| status::rates(p, &report)).unwrap_or_default();
                match format {
                    OutputFormat::Json if args.watch => {
                        writeln!(out, "{}", json!({"status": &report, "records_per_sec": rates})).map_err(io)?
                    }
                    OutputFormat::Json => write_json(out, &report)?,
                    OutputFormat::Text => {
                        if args.watch {
                            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.at_ms as u64);
                            writeln!(out, "--- {}", humantime::format_rfc3339_seconds(at)).map_err(io)?;
                        }
                        write!(out, "{}", status::report_text(&report, &rates)).map_err(io)?
                    }
                }
                out.flush().map_err(io)?;
                if !args.watch {
                    break;
                }
                previous = Some(report);
                // The refresh interval of a display, not a synchronisation.
                tokio::time::sleep(interval).await;
            }
            Ok(Outcome::Success)
        }
        Command::Unlock(args) => {
            let storage = storage::open(&args.storage).await?;
            let id = backup_id(&args.backup_id)?;
            let held = lease::unlock(storage, &id, args.restore_id.as_deref()).await?;
            let what = match &args.restore_id {
                Some(restore) => format!("restore {restore} of backup {id}"),
                None => format!("backup {id}"),
            };
            let message = match &held {
                Some(record) => format!("removed the lease of {what} held by {}", record.holder()),
                None => format!("{what} had no lease"),
            };
            match format {
                OutputFormat::Json => writeln!(out, "{}", json!({"backup_id": id.as_str(), "removed": held})),
                OutputFormat::Text => writeln!(out, "{message}"),
            }
            .map_err(io)?;
            Ok(Outcome::Success)
        }
    }
}
