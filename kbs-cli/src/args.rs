//! The command line's arguments turned into the engines' option structs (validated: a bad
//! value is an [`CliError::InvalidArgument`] naming its flag).

use kbs_manifest::BackupId;

use crate::error::CliError;
use crate::{backup, cli, options, restore};

/// A `--backup-id` value.
pub(crate) fn backup_id(value: &str) -> Result<BackupId, CliError> {
    BackupId::new(value).map_err(|e| CliError::InvalidArgument {
        flag: "backup-id",
        message: e.to_string(),
    })
}

/// `--max-bytes-per-sec` of backup and restore: a size, or no limit when not given.
fn max_bytes_per_sec(arg: Option<&str>) -> Result<Option<u64>, CliError> {
    arg.map(|v| options::parse_size("max-bytes-per-sec", v)).transpose()
}

pub(crate) fn backup_options(args: &cli::BackupArgs) -> Result<backup::BackupOptions, CliError> {
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
    options.encrypt_to = crate::encryption::recipients(&args.encrypt_to)?;
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
    options.max_bytes_per_sec = max_bytes_per_sec(args.max_bytes_per_sec.as_deref())?;
    Ok(options)
}

/// The worker options of `--workers GROUP` (backup or restore), if given.
pub(crate) fn worker_options(args: &cli::WorkerArgs) -> Result<Option<crate::workers::WorkerOptions>, CliError> {
    let Some(group) = args.workers.as_deref() else {
        return Ok(None);
    };
    if group.is_empty() {
        return Err(CliError::InvalidArgument {
            flag: "workers",
            message: "the group name is empty".into(),
        });
    }
    let mut workers = crate::workers::WorkerOptions::new(group);
    workers.session_timeout = options::parse_duration("worker-session-timeout", &args.worker_session_timeout)?;
    if workers.session_timeout < std::time::Duration::from_secs(1) {
        return Err(CliError::InvalidArgument {
            flag: "worker-session-timeout",
            message: "must be at least 1s".into(),
        });
    }
    Ok(Some(workers))
}

pub(crate) fn restore_options(args: &cli::RestoreArgs) -> Result<restore::RestoreOptions, CliError> {
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
    let (start_time, end_time) = time_window(args.start_time.as_deref(), args.end_time.as_deref())?;
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
        max_bytes_per_sec: max_bytes_per_sec(args.max_bytes_per_sec.as_deref())?,
        restore_id: String::new(),
        dry_run: args.dry_run,
        skip_corrupt: args.skip_corrupt,
        allow_non_empty: args.allow_non_empty,
        allow_incomplete: args.allow_incomplete,
        memory_budget: options::parse_size("memory-budget", &args.memory_budget)?,
        parallelism: args.parallelism.max(1),
        metrics_addr: args.metrics_addr.clone(),
        identities: crate::encryption::read_identity_option(args.identity.as_deref())?,
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

/// `--start-time` and `--end-time`, parsed, the end not before the start.
fn time_window(start: Option<&str>, end: Option<&str>) -> Result<(Option<i64>, Option<i64>), CliError> {
    let start = start.map(|t| options::parse_time("start-time", t)).transpose()?;
    let end = end.map(|t| options::parse_time("end-time", t)).transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(CliError::InvalidArgument {
            flag: "end-time",
            message: "is before --start-time".into(),
        });
    }
    Ok((start, end))
}

/// `kbs export`'s command line as engine options.
pub(crate) fn import_options(args: &cli::ImportArgs) -> Result<crate::import::ImportOptions, CliError> {
    use crate::import::{ImportFormat, default_staged_backup_id};
    let invalid = |flag: &'static str| move |message: String| CliError::InvalidArgument { flag, message };
    let format: ImportFormat = args.format.parse().map_err(invalid("format"))?;
    let (from, staging) = (
        args.from.trim_end_matches('/'),
        args.storage.storage.trim_end_matches('/'),
    );
    if staging == from || staging.starts_with(&format!("{from}/")) {
        return Err(CliError::InvalidArgument {
            flag: "storage",
            message: "is --from or inside it: the staged backup would be read as envelope objects; stage it \
                      elsewhere"
                .into(),
        });
    }
    let bytes_as = |flag: &'static str, text: Option<&String>| {
        text.map(|t| t.parse::<crate::export::BytesAs>().map_err(invalid(flag)))
            .transpose()
    };
    let staged_backup_id = match &args.backup_id {
        Some(id) => backup_id(id)?,
        None => default_staged_backup_id(&args.from, format),
    };
    // The restore of the staged backup, checked as `kbs restore` checks its options.
    let restore = restore_options(&cli::RestoreArgs {
        kafka: args.kafka.clone(),
        storage: args.storage.clone(),
        backup_id: staged_backup_id.to_string(),
        identity: None,
        topics: args.topics.clone(),
        exclude: args.exclude.clone(),
        topic_map: args.topic_map.clone(),
        partition_map: Vec::new(),
        repartition: "keep".into(),
        partitions: None,
        start_time: None,
        end_time: None,
        start_offset: Vec::new(),
        end_offset: Vec::new(),
        create_topics: args.create_topics,
        replication_factor: args.replication_factor,
        consumer_groups: None,
        include_offset_headers: false,
        compression: args.compression.clone(),
        max_bytes_per_sec: args.max_bytes_per_sec.clone(),
        restore_id: args.restore_id.clone(),
        dry_run: false,
        skip_corrupt: false,
        allow_non_empty: args.allow_non_empty,
        allow_incomplete: false,
        memory_budget: args.memory_budget.clone(),
        parallelism: args.parallelism,
        metrics_addr: None,
        workers: cli::WorkerArgs {
            workers: None,
            worker_session_timeout: "10s".into(),
        },
    })?;
    Ok(crate::import::ImportOptions {
        format,
        key_as: bytes_as("key-as", args.key_as.as_ref())?,
        value_as: bytes_as("value-as", args.value_as.as_ref())?,
        staged_backup_id,
        memory_budget: restore.memory_budget,
        restore,
    })
}

/// `TOPIC:PARTITION=OFFSET,...` as a map (`--start-offset`, `--end-offset`).
fn offsets(flag: &'static str, items: &[String]) -> Result<std::collections::BTreeMap<(String, i32), i64>, CliError> {
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
}

pub(crate) fn export_options(args: &cli::ExportArgs) -> Result<crate::export::ExportOptions, CliError> {
    use crate::export::{BytesAs, Compression, EncodeSettings, Fields, Format, PartitionBy};
    let invalid = |flag: &'static str| move |message: String| CliError::InvalidArgument { flag, message };
    let format: Format = args.format.parse().map_err(invalid("format"))?;
    let bytes_as = |flag: &'static str, text: &str| text.parse::<BytesAs>().map_err(invalid(flag));
    let (start_time, end_time) = time_window(args.start_time.as_deref(), args.end_time.as_deref())?;
    if args.flush_records == 0 {
        return Err(CliError::InvalidArgument {
            flag: "flush-records",
            message: "must be at least 1".into(),
        });
    }
    let flush_bytes = options::parse_size("flush-bytes", &args.flush_bytes)?.max(1);
    if flush_bytes > 1 << 30 {
        return Err(CliError::InvalidArgument {
            flag: "flush-bytes",
            message: "at most 1G (objects are built in memory)".into(),
        });
    }
    if !args.partition_by.iter().any(|f| !f.is_empty()) && args.hive {
        return Err(CliError::InvalidArgument {
            flag: "hive",
            message: "needs --partition-by (the default layout has no name=value folders)".into(),
        });
    }
    Ok(crate::export::ExportOptions {
        backup_id: backup_id(&args.backup_id)?,
        topics: backup::TopicFilter::new(
            args.topics.iter().filter(|t| !t.is_empty()).cloned().collect(),
            args.exclude.iter().filter(|t| !t.is_empty()).cloned().collect(),
        ),
        start_time,
        end_time,
        start_offsets: offsets("start-offset", &args.start_offset)?,
        end_offsets: offsets("end-offset", &args.end_offset)?,
        encode: EncodeSettings {
            format,
            compression: Compression::for_format(format, args.compression.as_deref())
                .map_err(invalid("compression"))?,
            fields: Fields::parse(&args.fields).map_err(invalid("fields"))?,
            key_as: bytes_as("key-as", &args.key_as)?,
            value_as: bytes_as("value-as", &args.value_as)?,
        },
        partition_by: PartitionBy::parse(&args.partition_by, args.hive).map_err(invalid("partition-by"))?,
        flush_records: args.flush_records,
        flush_bytes,
        concurrency: args.concurrency.max(1),
        memory_budget: options::parse_size("memory-budget", &args.memory_budget)?,
        identities: crate::encryption::read_identity_option(args.identity.as_deref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// `kbs COMMAND` parsed with only the flags it requires.
    fn parsed(command: &str) -> cli::Command {
        let argv = [
            "kbs",
            command,
            "--bootstrap-servers",
            "k:9092",
            "--storage",
            "/s",
            "--backup-id",
            "b",
        ];
        cli::Cli::try_parse_from(argv).unwrap().command
    }

    #[test]
    fn the_libraries_default_options_are_the_commands_defaults() {
        let kafka = kbs_kafka::ClientConfig::new(["k:9092"]);
        let id = kbs_manifest::BackupId::new("b").unwrap();
        let cli::Command::Restore(args) = parsed("restore") else {
            panic!("not a restore")
        };
        assert_eq!(
            format!("{:?}", restore_options(&args).unwrap()),
            format!("{:?}", restore::RestoreOptions::new(id.clone(), kafka.clone()))
        );
        let cli::Command::Backup(args) = parsed("backup") else {
            panic!("not a backup")
        };
        assert_eq!(
            format!("{:?}", backup_options(&args).unwrap()),
            format!("{:?}", backup::BackupOptions::new(id, kafka))
        );
    }

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
