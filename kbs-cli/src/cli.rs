//! The command line: every flag also has a `KBS_*` environment variable and a key in the
//! `--config` TOML file (the flag's long name, with `-` or `_`). Precedence: flag, then
//! environment, then config file, then the built-in default.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// kbs: back up Kafka topics to S3 or a filesystem, verify the backups, restore them.
#[derive(Debug, Parser)]
#[command(name = "kbs", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// TOML file with defaults for any flag (keys are the flags' long names).
    #[arg(long, global = true, env = "KBS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format of reports.
    #[arg(long, global = true, env = "KBS_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// More log output (repeat for more); logs go to stderr, filter with RUST_LOG.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true, env = "KBS_QUIET")]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up Kafka topics: a consistent snapshot up to each partition's end at start (default)
    /// or --continuous until SIGINT/SIGTERM. Rerunning with the same --backup-id continues
    /// from the checkpoint (incremental, no record twice).
    Backup(Box<BackupArgs>),
    /// Restore a backup into a cluster: exactly once, resumable (same --restore-id), by time
    /// window or offset range, into renamed topics and partitions, with consumer-group offsets
    /// translated.
    Restore(Box<RestoreArgs>),
    /// List the backups under a storage root, reading only their manifests (and the leases of unfinished ones: RUNNING or INCOMPLETE).
    List(ListArgs),
    /// Show a backup: topics, partitions, offset ranges, time range, segments, gaps, configs,
    /// consumer groups.
    Describe(DescribeArgs),
    /// Check a backup: quick (manifest, sizes, headers and footers) or --deep (every byte).
    /// Exits 0 only when everything holds; otherwise lists every problem.
    Validate(ValidateArgs),
    /// Print a segment's header, footer and records as JSON lines (bytes in base64), from a
    /// local file or a key in the storage.
    Inspect(InspectArgs),
    /// Remove a backup's lease by hand (after a writer on another host died).
    Unlock(UnlockArgs),
    /// Delete the backups a retention policy does not keep (restic's forget rules): prints what
    /// it keeps and deletes and why. Never deletes a backup that is not complete, one being
    /// written, or the newest complete one (unless --delete-newest).
    Prune(PruneArgs),
    /// Delete one backup, crash-safe: marked as being deleted first (gone for every reader),
    /// then removed; rerun to finish an interrupted deletion.
    Delete(DeleteArgs),
    /// Show the running backups and restores (from their leases, checkpoints and progress):
    /// holders, per-partition progress, last commit, and with --bootstrap-servers each
    /// partition's lag to its log end; --watch refreshes with rates.
    Status(Box<StatusArgs>),
    /// Make an age X25519 key pair for encrypted backups: writes the secret identity to FILE
    /// (created new, mode 0600) and prints the public key to pass to `backup --encrypt-to`.
    Keygen(KeygenArgs),
    /// Export a backup's records (or a time window of them) as envelope objects, JSON Lines,
    /// laid out <to>/<topic>/<partition>/<first offset>.<ext> for query engines; an
    /// interrupted export rerun with the same options writes only what is missing.
    Export(Box<ExportArgs>),
    /// Import envelope objects (kbs exports, or the S3 connectors' JSON envelope) into Kafka:
    /// staged as a kbs backup in --storage, then restored exactly once; an interrupted import
    /// rerun with the same command continues.
    Import(Box<ImportArgs>),
}

/// `kbs import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    /// Kafka (the target cluster).
    pub kafka: KafkaArgs,
    #[command(flatten)]
    /// Storage where the import is staged as a backup (--from uses the same S3 settings).
    pub storage: StorageArgs,
    /// Where the envelope objects are: a directory or `s3://bucket/prefix`.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The objects' format: jsonl (also .json and .gz), parquet or avro.
    #[arg(long)]
    pub format: String,
    /// The staged backup's id (default: import- and a hash of --from and --format).
    #[arg(long)]
    pub backup_id: Option<String>,
    /// How JSON keys are read: bytes (base64), string or json (default: as the export's
    /// _kbs_export.json says, else string).
    #[arg(long)]
    pub key_as: Option<String>,
    /// How JSON values are read (see --key-as).
    #[arg(long)]
    pub value_as: Option<String>,
    /// Source topics to import, as comma-separated globs; default all.
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Source topics to leave out, as comma-separated globs.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Import topics under other names: SRC=DST,...
    #[arg(long, value_delimiter = ',')]
    pub topic_map: Vec<String>,
    /// Create missing target topics (with the partition count the objects need).
    #[arg(long)]
    pub create_topics: bool,
    /// Replication factor of created topics (default: the broker's).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Allow importing into a partition that already holds records.
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Producer batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    pub compression: String,
    /// Limit produced key and value bytes per second (e.g. 50M).
    #[arg(long)]
    pub max_bytes_per_sec: Option<String>,
    /// The restore id (default: derived from the staged backup and the target cluster).
    #[arg(long)]
    pub restore_id: Option<String>,
    /// Bytes held in memory at once (segments being produced; overlapping objects merged).
    #[arg(long, default_value = "256M")]
    pub memory_budget: String,
    /// Partitions produced at once.
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
}

/// `kbs export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    /// Storage (of the backup; --to uses the same S3 settings).
    pub storage: StorageArgs,
    /// The backup to export.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// Where the export goes: a directory or `s3://bucket/prefix` (like --storage).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Object format: parquet, avro, jsonl (JSON Lines) or csv.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Compression: none or gzip (jsonl, csv); none, snappy, zstd or lz4 (parquet); none,
    /// snappy, zstd or deflate (avro). Default: snappy for parquet and avro, none otherwise.
    #[arg(long)]
    pub compression: Option<String>,
    /// Envelope fields to write, comma-separated: key,value,headers,metadata (default all).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// Folders named after record fields, comma-separated: _topic, _partition, _key,
    /// _key.FIELD, _value.FIELD, _header.NAME, date, hour (default <topic>/<partition>/).
    #[arg(long, value_delimiter = ',')]
    pub partition_by: Vec<String>,
    /// With --partition-by: name=value folders (Hive style, read as columns by Athena,
    /// Spark and DuckDB).
    #[arg(long)]
    pub hive: bool,
    /// Backed-up topics to export, as comma-separated globs; default all.
    #[arg(long, env = "KBS_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Backed-up topics to leave out, as comma-separated globs.
    #[arg(long, env = "KBS_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Only records at or after this time (RFC 3339 or ms since the epoch).
    #[arg(long)]
    pub start_time: Option<String>,
    /// Only records at or before this time (RFC 3339 or ms since the epoch).
    #[arg(long)]
    pub end_time: Option<String>,
    /// First offsets to export: TOPIC:PARTITION=OFFSET,...
    #[arg(long, value_delimiter = ',')]
    pub start_offset: Vec<String>,
    /// Last offsets to export (inclusive): TOPIC:PARTITION=OFFSET,...
    #[arg(long, value_delimiter = ',')]
    pub end_offset: Vec<String>,
    /// Keys as bytes (base64), string (UTF-8, else {"base64": …}) or json ({"json": …}, else as string).
    #[arg(long, default_value = "bytes")]
    pub key_as: String,
    /// Values as bytes, string or json (see --key-as).
    #[arg(long, default_value = "bytes")]
    pub value_as: String,
    /// Cut an object after this many records.
    #[arg(long, default_value_t = 100_000)]
    pub flush_records: u64,
    /// Cut an object once its records' keys, values and headers reach this many bytes (e.g. 64M).
    #[arg(long, default_value = "64M")]
    pub flush_bytes: String,
    /// Partitions exported at the same time, at most (fewer when --memory-budget needs).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Bytes the export may hold in memory (segments, open objects, objects being written).
    #[arg(long, default_value = "512M")]
    pub memory_budget: String,
    /// An age identity file (AGE-SECRET-KEY-1…) that opens an encrypted backup's segments.
    #[arg(long, env = "KBS_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

/// `kbs keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the identity (the secret key); an existing file is never overwritten.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// `kbs status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// Only this backup and its restores, running or not.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: Option<String>,
    #[command(flatten)]
    /// The cluster backed up, for each partition's lag (optional: without
    /// --bootstrap-servers, no lag is shown).
    pub kafka: KafkaArgs,
    /// Refresh every --interval until interrupted, with records per second.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch refreshes (e.g. 500ms, 2s).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub interval: String,
}

/// `kbs prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// Keep the N newest complete backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the backups that started within DURATION before the newest one (e.g. 7d, 2w, 1y).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest backup of each of the N newest days (UTC) with backups.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the N newest ISO weeks with backups.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the N newest months with backups.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Only backups whose ids match this glob (`*` any run of characters, `?` one).
    #[arg(long, value_name = "GLOB")]
    pub backup_ids: Option<String>,
    /// Allow deleting the newest complete backup when no rule keeps it.
    #[arg(long)]
    pub delete_newest: bool,
    /// Only print what would be kept and deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kbs delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup to delete.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// Also delete a backup that is not complete (an interrupted snapshot its backup command
    /// would resume).
    #[arg(long)]
    pub force: bool,
}

/// Where backups are stored.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Storage root: a directory (`/data`, `./backups`, `file:///data`), `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` or `memory://`.
    #[arg(long, visible_alias = "path", env = "KBS_STORAGE", value_name = "URL")]
    pub storage: String,

    /// S3 endpoint for S3-compatible servers (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "KBS_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region (default: from the AWS environment, else us-east-1).
    #[arg(long, env = "KBS_S3_REGION")]
    pub s3_region: Option<String>,

    /// Use path-style S3 URLs (bucket in the path) instead of virtual-host style.
    #[arg(long, env = "KBS_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// Allow plain HTTP to the S3 endpoint (local test servers).
    #[arg(long, env = "KBS_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,

    /// Storage class of segment objects: STANDARD, STANDARD_IA, GLACIER_IR or GLACIER.
    #[arg(long, env = "KBS_S3_STORAGE_CLASS")]
    pub s3_storage_class: Option<String>,
}

/// How to reach and authenticate to Kafka.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers (host:port,...); required by every command that
    /// talks to Kafka.
    #[arg(long, env = "KBS_BOOTSTRAP_SERVERS", value_delimiter = ',')]
    pub bootstrap_servers: Vec<String>,

    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long, env = "KBS_SECURITY_PROTOCOL", default_value = "PLAINTEXT")]
    pub security_protocol: String,

    /// PEM file of CA certificates to trust (default: the system's roots).
    #[arg(long, env = "KBS_SSL_CA_LOCATION", value_name = "FILE")]
    pub ssl_ca_location: Option<PathBuf>,

    /// PEM client certificate for mutual TLS.
    #[arg(long, env = "KBS_SSL_CERTIFICATE_LOCATION", value_name = "FILE")]
    pub ssl_certificate_location: Option<PathBuf>,

    /// PEM client private key for mutual TLS.
    #[arg(long, env = "KBS_SSL_KEY_LOCATION", value_name = "FILE")]
    pub ssl_key_location: Option<PathBuf>,

    /// Name to verify broker certificates against (when brokers are reached by IP).
    #[arg(long, env = "KBS_SSL_SERVER_NAME")]
    pub ssl_server_name: Option<String>,

    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM (Amazon MSK's IAM access
    /// control, with AWS credentials found as the AWS SDKs find them).
    #[arg(long, env = "KBS_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,

    /// SASL user name (PLAIN, SCRAM).
    #[arg(long, env = "KBS_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// SASL password (PLAIN, SCRAM; prefer --sasl-password-file or the KBS_SASL_PASSWORD
    /// environment variable, which `ps` does not show).
    #[arg(long, env = "KBS_SASL_PASSWORD", hide_env_values = true, hide_default_value = true)]
    pub sasl_password: Option<Secret>,

    /// A file holding the SASL password (surrounding whitespace ignored).
    #[arg(long, env = "KBS_SASL_PASSWORD_FILE", conflicts_with = "sasl_password")]
    pub sasl_password_file: Option<PathBuf>,

    /// OAUTHBEARER: the bearer token (prefer a token file or command).
    #[arg(
        long,
        env = "KBS_SASL_OAUTHBEARER_TOKEN",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub sasl_oauthbearer_token: Option<Secret>,

    /// OAUTHBEARER: a file holding the token, read again at every authentication (keep it
    /// refreshed and long runs stay authenticated).
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_TOKEN_FILE")]
    pub sasl_oauthbearer_token_file: Option<PathBuf>,

    /// OAUTHBEARER: a command printing the token, run (with `sh -c`) at every authentication.
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_TOKEN_COMMAND")]
    pub sasl_oauthbearer_token_command: Option<String>,

    /// OAUTHBEARER: an OAuth 2.0 / OIDC token endpoint to get tokens from with the
    /// client-credentials grant (https; http only on loopback).
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", value_name = "URL")]
    pub sasl_oauthbearer_token_endpoint_url: Option<String>,

    /// OAUTHBEARER with a token endpoint: the client id.
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_CLIENT_ID")]
    pub sasl_oauthbearer_client_id: Option<String>,

    /// OAUTHBEARER with a token endpoint: the client secret (prefer the file or the
    /// environment variable).
    #[arg(
        long,
        env = "KBS_SASL_OAUTHBEARER_CLIENT_SECRET",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub sasl_oauthbearer_client_secret: Option<Secret>,

    /// OAUTHBEARER with a token endpoint: a file holding the client secret.
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_CLIENT_SECRET_FILE")]
    pub sasl_oauthbearer_client_secret_file: Option<PathBuf>,

    /// OAUTHBEARER with a token endpoint: the scope to ask for.
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_SCOPE")]
    pub sasl_oauthbearer_scope: Option<String>,

    /// OAUTHBEARER: Amazon MSK's IAM token, signed at every authentication with AWS credentials
    /// (as `aws-msk-iam-sasl-signer` makes it).
    #[arg(long, env = "KBS_SASL_OAUTHBEARER_AWS_MSK_IAM")]
    pub sasl_oauthbearer_aws_msk_iam: bool,

    /// MSK IAM: the region to sign for (default: from the broker host names, else AWS_REGION).
    #[arg(long, env = "KBS_AWS_REGION")]
    pub aws_region: Option<String>,

    /// MSK IAM: take credentials from this profile of ~/.aws/credentials and ~/.aws/config
    /// only (default: the AWS SDKs' chain: environment, web identity, profile, container, EC2
    /// instance role).
    #[arg(long, env = "KBS_AWS_PROFILE")]
    pub aws_profile: Option<String>,
}

/// A secret flag's value (a password): never shown by `Debug`, `--help` or an error. Secret
/// flags are declared with `hide_env_values = true`, which is also how the config file's
/// defaults know to stay hidden (see `config`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// `kbs backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    /// Kafka.
    pub kafka: KafkaArgs,
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup id: its folder under the storage root ([a-zA-Z0-9._-], up to 249 characters).
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// Topics to back up, as comma-separated globs (`*`, `?`); default all but internal topics.
    #[arg(long, env = "KBS_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Topics to leave out, as comma-separated globs.
    #[arg(long, env = "KBS_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Segment compression: zstd, lz4 or none.
    #[arg(long, env = "KBS_COMPRESSION", default_value = "zstd")]
    pub compression: String,
    /// zstd level, 1 to 22.
    #[arg(long, env = "KBS_COMPRESSION_LEVEL", default_value_t = 3)]
    pub compression_level: i32,
    /// Encrypt every segment to this age public key (age1…); repeat or separate with commas
    /// for several recipients. Restoring then needs one of their identities (--identity).
    #[arg(long, env = "KBS_ENCRYPT_TO", value_delimiter = ',', value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Roll a segment at this many bytes (suffixes k, M, G accepted); at most an eighth of
    /// --memory-budget, since segments are built in memory.
    #[arg(long, env = "KBS_SEGMENT_MAX_BYTES", default_value = "128M")]
    pub segment_max_bytes: String,
    /// Roll a segment at this many records.
    #[arg(long, env = "KBS_SEGMENT_MAX_RECORDS")]
    pub segment_max_records: Option<u64>,
    /// Roll a segment after it has been open this long, e.g. 30s, 5m, 1h (continuous mode).
    #[arg(long, env = "KBS_SEGMENT_MAX_INTERVAL", default_value = "5m")]
    pub segment_max_interval: String,
    /// Keep following new data and newly created matching topics until SIGINT/SIGTERM.
    #[arg(long, env = "KBS_CONTINUOUS")]
    pub continuous: bool,
    /// Snapshot the committed offsets of all consumer groups on the selected topics.
    #[arg(long, env = "KBS_CONSUMER_GROUPS")]
    pub consumer_groups: bool,
    /// Follow every record with its own CRC-32 in the segments.
    #[arg(long, env = "KBS_PER_RECORD_CRC")]
    pub per_record_crc: bool,
    /// Memory budget of the backup (suffixes k, M, G): an eighth of it, at most 32 MiB, is kept
    /// for kbs itself, the rest bounds fetched and not yet uploaded data.
    #[arg(long, env = "KBS_MEMORY_BUDGET", default_value = "256M")]
    pub memory_budget: String,
    /// Run on a store that ignores conditional writes. Only safe when nothing else can write
    /// this backup id at the same time.
    #[arg(long, env = "KBS_UNSAFE_SINGLE_WRITER")]
    pub unsafe_single_writer: bool,
    /// Longest a fetch waits for data while catching up, e.g. 10ms.
    #[arg(long, env = "KBS_FETCH_MAX_WAIT", default_value = "10ms")]
    pub fetch_max_wait: String,
    /// Most bytes one fetch returns per partition (a batch larger than this still comes whole).
    /// Larger fetches cost the broker less per byte (measured on one Kafka 4.1 node: 2 MiB took
    /// about half the broker CPU of 1 MiB); the memory budget bounds the whole fetch either way.
    #[arg(long, env = "KBS_FETCH_MAX_PARTITION_BYTES", default_value = "2M")]
    pub fetch_max_partition_bytes: String,
    /// Limit the key and value bytes read per second (suffixes k, M, G), to spare the brokers'
    /// egress during a backup window. Each worker of a shared backup limits itself.
    #[arg(long, env = "KBS_MAX_BYTES_PER_SEC")]
    pub max_bytes_per_sec: Option<String>,
    /// How often continuous mode looks for new topics and partitions.
    #[arg(long, env = "KBS_TOPIC_REFRESH_INTERVAL", default_value = "30s")]
    pub topic_refresh_interval: String,
    /// How often continuous mode captures the consumer groups' offsets again (with
    /// --consumer-groups); they are also captured when the backup stops.
    #[arg(long, env = "KBS_CONSUMER_GROUPS_INTERVAL", default_value = "60s")]
    pub consumer_groups_interval: String,
    /// How long a snapshot waits for partitions without a leader (all their replicas down)
    /// before it backs up the others and ends incomplete (exit 4; a rerun completes it).
    #[arg(long, env = "KBS_LEADER_WAIT", default_value = "60s")]
    pub leader_wait: String,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics while the backup runs.
    #[arg(long, env = "KBS_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    /// Scale-out workers.
    pub workers: WorkerArgs,
}

/// `--workers`: many processes share one backup or restore.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Share this job with every kbs started with the same --workers GROUP and the same job
    /// (--backup-id; for a restore also the restore id): they join the Kafka group GROUP,
    /// which splits the partitions among them and hands a stopped worker's partitions to the
    /// others. Needs a store with conditional writes. With --continuous, topics created later
    /// are shared out too, and the last worker stopped seals the backup; with --repartition,
    /// whole source topics are shared out.
    #[arg(long, env = "KBS_WORKERS", value_name = "GROUP")]
    pub workers: Option<String>,
    /// With --workers: how long the group waits for a silent worker before its partitions go
    /// to the others, e.g. 10s (within the brokers' group.min/max.session.timeout.ms).
    #[arg(long, env = "KBS_WORKER_SESSION_TIMEOUT", default_value = "10s")]
    pub worker_session_timeout: String,
}

/// `kbs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
}

/// `kbs describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup to describe.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
}

/// `kbs validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup to validate.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// Read every segment and check every checksum and invariant.
    #[arg(long, env = "KBS_DEEP")]
    pub deep: bool,
    /// An age identity file (AGE-SECRET-KEY-1…) that opens an encrypted backup's segments.
    #[arg(long, env = "KBS_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

/// `kbs inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A local segment file, or (with --storage) a segment's key under the storage root.
    pub segment: String,
    /// Storage root, when SEGMENT is a key.
    #[arg(long, visible_alias = "path", env = "KBS_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// S3 endpoint for S3-compatible servers.
    #[arg(long, env = "KBS_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "KBS_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style S3 URLs.
    #[arg(long, env = "KBS_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Allow plain HTTP to the S3 endpoint.
    #[arg(long, env = "KBS_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// An age identity file (AGE-SECRET-KEY-1…) that opens an encrypted backup's segments.
    #[arg(long, env = "KBS_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

impl InspectArgs {
    /// The storage arguments, when a storage root was given.
    pub fn storage_args(&self) -> Option<StorageArgs> {
        self.storage.as_ref().map(|storage| StorageArgs {
            storage: storage.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_path_style: self.s3_path_style,
            s3_allow_http: self.s3_allow_http,
            s3_storage_class: None,
        })
    }
}

/// `kbs unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup whose lease to remove.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// Remove the lease of this restore of the backup instead.
    #[arg(long)]
    pub restore_id: Option<String>,
}

/// `kbs restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    /// Kafka (the target cluster).
    pub kafka: KafkaArgs,
    #[command(flatten)]
    /// Storage.
    pub storage: StorageArgs,
    /// The backup to restore.
    #[arg(long, env = "KBS_BACKUP_ID")]
    pub backup_id: String,
    /// An age identity file (AGE-SECRET-KEY-1…) that opens an encrypted backup's segments.
    #[arg(long, env = "KBS_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
    /// Backed-up topics to restore, as comma-separated globs; default all.
    #[arg(long, env = "KBS_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Backed-up topics to leave out, as comma-separated globs.
    #[arg(long, env = "KBS_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Restore topics under other names: SRC=DST,...
    #[arg(long, env = "KBS_TOPIC_MAP", value_delimiter = ',')]
    pub topic_map: Vec<String>,
    /// Restore partitions into other partitions: TOPIC:SRC=DST,... (source topic names).
    #[arg(long, env = "KBS_PARTITION_MAP", value_delimiter = ',')]
    pub partition_map: Vec<String>,
    /// How records are placed in the target partitions: keep (each source partition into one
    /// target partition), key (by key, where Kafka's default partitioner puts it; records
    /// without a key round robin) or round-robin (every record). With key or round-robin the
    /// target may have any number of partitions, and a resumed restore still writes every
    /// record exactly once.
    #[arg(long, env = "KBS_REPARTITION", value_name = "MODE", default_value = "keep")]
    pub repartition: String,
    /// With --repartition key or round-robin and --create-topics: the partition count of the
    /// created target topics (an existing target keeps its own).
    #[arg(long, env = "KBS_PARTITIONS", value_name = "N")]
    pub partitions: Option<i32>,
    /// Only records with timestamps at or after T (RFC 3339, e.g. 2026-11-21T06:00:00Z, or Unix ms).
    #[arg(long, env = "KBS_START_TIME", value_name = "T")]
    pub start_time: Option<String>,
    /// Only records with timestamps at or before T (RFC 3339 or Unix ms).
    #[arg(long, env = "KBS_END_TIME", value_name = "T")]
    pub end_time: Option<String>,
    /// First offsets to restore: TOPIC:PARTITION=OFFSET,...
    #[arg(long, env = "KBS_START_OFFSET", value_delimiter = ',')]
    pub start_offset: Vec<String>,
    /// Last offsets to restore (inclusive): TOPIC:PARTITION=OFFSET,...
    #[arg(long, env = "KBS_END_OFFSET", value_delimiter = ',')]
    pub end_offset: Vec<String>,
    /// Create missing target topics with the backed-up partition count and configs.
    #[arg(long, env = "KBS_CREATE_TOPICS")]
    pub create_topics: bool,
    /// Replication factor of created topics (default: the broker's).
    #[arg(long, env = "KBS_REPLICATION_FACTOR")]
    pub replication_factor: Option<i16>,
    /// Move the backed-up consumer-group offsets to the restored records: all groups, or
    /// the comma-separated ones given (`true` and `false`, as a shared config setting gives
    /// them, mean all groups and none).
    #[arg(long, env = "KBS_CONSUMER_GROUPS", num_args = 0.., value_delimiter = ',')]
    pub consumer_groups: Option<Vec<String>>,
    /// Add x-kafka-backup-offset, x-kafka-backup-timestamp and x-kafka-backup-partition headers.
    #[arg(long, env = "KBS_INCLUDE_OFFSET_HEADERS")]
    pub include_offset_headers: bool,
    /// Producer compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, env = "KBS_PRODUCER_COMPRESSION", default_value = "lz4")]
    pub compression: String,
    /// Limit produced bytes per second (suffixes k, M, G).
    #[arg(long, env = "KBS_MAX_BYTES_PER_SEC")]
    pub max_bytes_per_sec: Option<String>,
    /// The restore id; rerunning with it continues without duplicating records. Default: derived
    /// from the backup, target and filters, so the same command resumes.
    #[arg(long, env = "KBS_RESTORE_ID")]
    pub restore_id: Option<String>,
    /// Print the plan (segments, estimated records and bytes, target topics, group
    /// translations) and exit without touching the cluster's data.
    #[arg(long, env = "KBS_DRY_RUN")]
    pub dry_run: bool,
    /// Skip segments that fail verification (listed in the report) instead of stopping.
    #[arg(long, env = "KBS_SKIP_CORRUPT")]
    pub skip_corrupt: bool,
    /// Allow target partitions that already hold records.
    #[arg(long, env = "KBS_ALLOW_NON_EMPTY")]
    pub allow_non_empty: bool,
    /// Restore a backup that is not complete (an interrupted snapshot, or a continuous backup
    /// still running): only what it holds so far.
    #[arg(long, env = "KBS_ALLOW_INCOMPLETE")]
    pub allow_incomplete: bool,
    /// Memory budget for segments being restored (suffixes k, M, G).
    #[arg(long, env = "KBS_MEMORY_BUDGET", default_value = "256M")]
    pub memory_budget: String,
    /// Partitions restored at once.
    #[arg(long, env = "KBS_PARALLELISM", default_value_t = 8)]
    pub parallelism: usize,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics while the restore runs.
    #[arg(long, env = "KBS_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    /// Scale-out workers.
    pub workers: WorkerArgs,
}
