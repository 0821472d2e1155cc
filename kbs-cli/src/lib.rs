//! The library half of the `kbs` command: each subcommand's work, composed from the kbs
//! crates. The binary (`main.rs`) only parses arguments, sets up logging and the runtime,
//! and hands this library a writer for the report; the library never prints on its own.

pub mod backup;
pub mod cli;
pub mod config;
pub mod describe;
mod error;
pub mod inspect;
pub mod lease;
pub mod list;
pub mod metrics;
pub mod options;
pub mod prune;
pub mod restore;
pub mod status;
pub mod storage;
pub mod validate;

use std::io::Write;

use kbs_manifest::BackupId;
use serde_json::json;

pub use error::CliError;

use crate::cli::{Cli, Command, OutputFormat};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything held.
    Success,
    /// The command ran but found problems (e.g. `validate` on a damaged backup).
    ProblemsFound,
}

fn backup_id(value: &str) -> Result<BackupId, CliError> {
    BackupId::new(value).map_err(|e| CliError::InvalidArgument {
        flag: "backup-id",
        message: e.to_string(),
    })
}

fn io(e: std::io::Error) -> CliError {
    CliError::ReadFile {
        path: "<stdout>".into(),
        source: e,
    }
}

/// What the binary hands the library besides the parsed command line.
pub struct Context {
    /// Where long-running commands report progress.
    pub progress: std::sync::Arc<dyn backup::ProgressSink>,
    /// Turns true when the process is asked to stop (SIGINT/SIGTERM).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

fn backup_options(args: &cli::BackupArgs) -> Result<backup::BackupOptions, CliError> {
    let mut options = backup::BackupOptions::new(backup_id(&args.backup_id)?, options::kafka_config(&args.kafka)?);
    options.topics = backup::TopicFilter::new(
        args.topics.iter().filter(|t| !t.is_empty()).cloned().collect(),
        args.exclude.iter().filter(|t| !t.is_empty()).cloned().collect(),
    );
    options.compression = args
        .compression
        .parse()
        .map_err(|e: kbs_format::FormatError| CliError::InvalidArgument {
            flag: "compression",
            message: e.to_string(),
        })?;
    if !(1..=22).contains(&args.compression_level) {
        return Err(CliError::InvalidArgument {
            flag: "compression-level",
            message: "must be 1 to 22".into(),
        });
    }
    options.compression_level = args.compression_level;
    options.segment_max_bytes = options::parse_size("segment-max-bytes", &args.segment_max_bytes)?;
    if let Some(n) = args.segment_max_records {
        if n == 0 {
            return Err(CliError::InvalidArgument {
                flag: "segment-max-records",
                message: "must be at least 1".into(),
            });
        }
        options.segment_max_records = n;
    }
    options.segment_max_interval = options::parse_duration("segment-max-interval", &args.segment_max_interval)?;
    options.continuous = args.continuous;
    options.consumer_groups = args.consumer_groups;
    options.per_record_crc = args.per_record_crc;
    options.memory_budget = options::parse_size("memory-budget", &args.memory_budget)?;
    if options.memory_budget < 16 << 20 {
        return Err(CliError::InvalidArgument {
            flag: "memory-budget",
            message: "must be at least 16M".into(),
        });
    }
    options.unsafe_single_writer = args.unsafe_single_writer;
    options.fetch_max_wait = options::parse_duration("fetch-max-wait", &args.fetch_max_wait)?;
    options.topic_refresh_interval = options::parse_duration("topic-refresh-interval", &args.topic_refresh_interval)?;
    options.consumer_groups_interval =
        options::parse_duration("consumer-groups-interval", &args.consumer_groups_interval)?;
    options.leader_wait = options::parse_duration("leader-wait", &args.leader_wait)?;
    options.metrics_addr = args.metrics_addr.clone();
    options.fetch_max_partition_bytes =
        options::parse_size("fetch-max-partition-bytes", &args.fetch_max_partition_bytes)?.min(i32::MAX as u64) as i32;
    Ok(options)
}

fn restore_options(args: &cli::RestoreArgs) -> Result<restore::RestoreOptions, CliError> {
    let mut topic_map = std::collections::BTreeMap::new();
    for (src, dst) in options::parse_pairs("topic-map", &args.topic_map)? {
        kbs_manifest::TopicName::new(&dst).map_err(|e| CliError::InvalidArgument {
            flag: "topic-map",
            message: e.to_string(),
        })?;
        topic_map.insert(src, dst);
    }
    let mut partition_map = std::collections::BTreeMap::new();
    for (src, dst) in options::parse_pairs("partition-map", &args.partition_map)? {
        let key = options::parse_topic_partition("partition-map", &src)?;
        let dst = dst
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| CliError::InvalidArgument {
                flag: "partition-map",
                message: format!("{dst:?} is not a partition number"),
            })?;
        partition_map.insert(key, dst);
    }
    let repartition = restore::Repartition::parse(&args.repartition).ok_or_else(|| CliError::InvalidArgument {
        flag: "repartition",
        message: format!("{:?} is not keep, key or round-robin", args.repartition),
    })?;
    if repartition.reshapes() && !partition_map.is_empty() {
        return Err(CliError::InvalidArgument {
            flag: "partition-map",
            message: format!(
                "maps partitions one to one; --repartition {} places records by itself (leave one of them out)",
                repartition.name()
            ),
        });
    }
    match args.partitions {
        Some(n) if !(1..=100_000).contains(&n) => {
            return Err(CliError::InvalidArgument {
                flag: "partitions",
                message: format!("{n} is not a partition count (1 to 100000)"),
            });
        }
        Some(_) if !repartition.reshapes() => {
            return Err(CliError::InvalidArgument {
                flag: "partitions",
                message: "sets the partition count of a repartitioned target: it needs --repartition key or \
                          round-robin"
                    .into(),
            });
        }
        _ => {}
    }
    let offsets = |flag: &'static str,
                   items: &[String]|
     -> Result<std::collections::BTreeMap<(String, i32), i64>, CliError> {
        let mut map = std::collections::BTreeMap::new();
        for (tp, offset) in options::parse_pairs(flag, items)? {
            let key = options::parse_topic_partition(flag, &tp)?;
            let offset = offset
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or_else(|| CliError::InvalidArgument {
                    flag,
                    message: format!("{offset:?} is not an offset"),
                })?;
            map.insert(key, offset);
        }
        Ok(map)
    };
    let compression = match args.compression.to_ascii_lowercase().as_str() {
        "none" => kbs_kafka::ProducerCompression::None,
        "gzip" => kbs_kafka::ProducerCompression::Gzip,
        "snappy" => kbs_kafka::ProducerCompression::Snappy,
        "lz4" => kbs_kafka::ProducerCompression::Lz4,
        "zstd" => kbs_kafka::ProducerCompression::Zstd,
        other => {
            return Err(CliError::InvalidArgument {
                flag: "compression",
                message: format!("{other:?} is not none, gzip, snappy, lz4 or zstd"),
            });
        }
    };
    let start_time = args
        .start_time
        .as_deref()
        .map(|t| options::parse_time("start-time", t))
        .transpose()?;
    let end_time = args
        .end_time
        .as_deref()
        .map(|t| options::parse_time("end-time", t))
        .transpose()?;
    if let (Some(s), Some(e)) = (start_time, end_time)
        && s > e
    {
        return Err(CliError::InvalidArgument {
            flag: "end-time",
            message: "is before --start-time".into(),
        });
    }
    let mut options = restore::RestoreOptions {
        backup_id: backup_id(&args.backup_id)?,
        kafka: options::kafka_config(&args.kafka)?,
        topics: backup::TopicFilter::new(
            args.topics.iter().filter(|t| !t.is_empty()).cloned().collect(),
            args.exclude.iter().filter(|t| !t.is_empty()).cloned().collect(),
        ),
        topic_map,
        partition_map,
        repartition,
        target_partitions: args.partitions,
        start_time,
        end_time,
        start_offsets: offsets("start-offset", &args.start_offset)?,
        end_offsets: offsets("end-offset", &args.end_offset)?,
        create_topics: args.create_topics,
        replication_factor: args.replication_factor,
        consumer_groups: restore_groups(args.consumer_groups.as_deref()),
        include_offset_headers: args.include_offset_headers,
        compression,
        max_bytes_per_sec: args
            .max_bytes_per_sec
            .as_deref()
            .map(|v| options::parse_size("max-bytes-per-sec", v))
            .transpose()?,
        restore_id: String::new(),
        dry_run: args.dry_run,
        skip_corrupt: args.skip_corrupt,
        allow_non_empty: args.allow_non_empty,
        allow_incomplete: args.allow_incomplete,
        memory_budget: options::parse_size("memory-budget", &args.memory_budget)?,
        parallelism: args.parallelism.max(1),
        metrics_addr: args.metrics_addr.clone(),
    };
    options.restore_id = match &args.restore_id {
        Some(id) => kbs_manifest::BackupId::new(id)
            .map_err(|e| CliError::InvalidArgument {
                flag: "restore-id",
                message: e.to_string(),
            })?
            .to_string(),
        None => String::new(), // derived from the target cluster's id once connected
    };
    Ok(options)
}

/// The groups `kbs restore --consumer-groups` moves: `None` for none, an empty list for all.
/// `true` and `false` are the values a shared setting (`consumer-groups = true` in the config
/// file or `KBS_CONSUMER_GROUPS=true`, which `kbs backup` reads as a switch) gives: all groups,
/// and none; they are never taken for group names.
fn restore_groups(given: Option<&[String]>) -> Option<Vec<String>> {
    let groups: Vec<String> = given?.iter().filter(|g| !g.is_empty()).cloned().collect();
    match groups.as_slice() {
        [only] if only.eq_ignore_ascii_case("true") => Some(Vec::new()),
        [only] if only.eq_ignore_ascii_case("false") => None,
        _ => Some(groups),
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
            let report =
                backup::run_with_metrics(storage, options, metrics, context.progress, context.shutdown).await?;
            match format {
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                )
                .map_err(io)?,
                OutputFormat::Text => out.write_all(backup_summary_text(&report).as_bytes()).map_err(io)?,
            }
            Ok(Outcome::Success)
        }
        Command::Restore(args) => {
            let options = restore_options(args)?;
            let metrics = std::sync::Arc::new(metrics::RestoreMetrics::default());
            let storage = storage::open_observed(&args.storage, metrics.client.clone()).await?;
            let report = restore::run_with_metrics(storage, options, metrics, context.progress.clone()).await?;
            match format {
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                )
                .map_err(io)?,
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
                        let status = if b.status == "in_progress" {
                            "INCOMPLETE"
                        } else {
                            &b.status
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
                    if backups.iter().any(|b| b.status == "in_progress") {
                        writeln!(
                            out,
                            "INCOMPLETE: interrupted, or a continuous backup still running; rerun its backup command to \
                             finish it (restore refuses it unless --allow-incomplete)"
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
                    out.write_all(describe::describe_text(&manifest).as_bytes())
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
            let report = validate::validate(storage, &backup_id(&args.backup_id)?, depth).await?;
            match format {
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                )
                .map_err(io)?,
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
            let lines = inspect::segment_to_json_lines(data).map_err(|source| CliError::Segment {
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
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                ),
                OutputFormat::Text => write!(out, "{}", prune::report_text(&report)),
            }
            .map_err(io)?;
            Ok(Outcome::Success)
        }
        Command::Delete(args) => {
            let storage = storage::open(&args.storage).await?;
            let id = backup_id(&args.backup_id)?;
            let deleted = prune::delete_backup(storage, &id, "kbs delete", args.force).await?;
            match format {
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&deleted).expect("report serialises")
                ),
                OutputFormat::Text => writeln!(
                    out,
                    "deleted backup {id} ({} objects{})",
                    deleted.objects,
                    if deleted.resumed {
                        ", finishing an earlier deletion"
                    } else {
                        ""
                    }
                ),
            }
            .map_err(io)?;
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
                        writeln!(out, "{}", json!({"status": &report, "records_per_sec": rates}))
                    }
                    OutputFormat::Json => writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&report).expect("report serialises")
                    ),
                    OutputFormat::Text => {
                        if args.watch {
                            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.at_ms as u64);
                            writeln!(out, "--- {}", humantime::format_rfc3339_seconds(at)).map_err(io)?;
                        }
                        write!(out, "{}", status::report_text(&report, &rates))
                    }
                }
                .map_err(io)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_group_switches_from_a_shared_setting_are_not_group_names() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(restore_groups(None), None);
        assert_eq!(
            restore_groups(Some(&list(&[]))),
            Some(vec![]),
            "the bare flag: all groups"
        );
        assert_eq!(
            restore_groups(Some(&list(&["true"]))),
            Some(vec![]),
            "a shared `true`: all groups"
        );
        assert_eq!(restore_groups(Some(&list(&["false"]))), None, "a shared `false`: none");
        assert_eq!(restore_groups(Some(&list(&["billing", ""]))), Some(list(&["billing"])));
        assert_eq!(
            restore_groups(Some(&list(&["true", "billing"]))),
            Some(list(&["true", "billing"]))
        );
    }
}
