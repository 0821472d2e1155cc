//! Apache Kafka in KRaft mode on loopback: one combined broker+controller node by default, or
//! several combined nodes forming one controller quorum, with per-node stop, SIGKILL and
//! restart.
//!
//! Every node has three listeners on free loopback ports:
//!
//! | listener | security | used by |
//! | --- | --- | --- |
//! | `CLIENT` | what [`KafkaOptions::listener`] asks for | the code under test ([`KafkaCluster::bootstrap`]) |
//! | `INTERNAL` | PLAINTEXT | replication and the independent test peers ([`KafkaCluster::internal_bootstrap`]) |
//! | `CONTROLLER` | PLAINTEXT | the KRaft quorum |
//!
//! The broker comes from the jars that `scripts/setup.d/kafka.sh` resolves from Maven Central
//! into `$KBS_CACHE/kafka-<KAFKA_VERSION>/libs`; each node runs as
//! `java -cp 'libs/*' kafka.Kafka node-N.properties` after `kafka.tools.StorageTool format`.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::pki::Pki;
use crate::server::{START_DEADLINE, free_port, start_with_retries};
use crate::tools::{cache_dir, note, python, require};

/// The Apache Kafka version the tests run (the one `scripts/kafka/pom.xml` pins).
pub const KAFKA_VERSION: &str = "4.1.2";

/// The user every SASL mechanism of a [`KafkaCluster`] knows (PLAIN from the broker's JAAS
/// configuration, SCRAM-SHA-256/512 created through the admin API, OAUTHBEARER's unsecured
/// tokens name it as subject).
pub const SASL_USER: &str = "kbs";

/// [`SASL_USER`]'s password for PLAIN and both SCRAM mechanisms.
pub const SASL_PASSWORD: &str = "kbs-test-password";

/// The security of the `CLIENT` listener, the one the code under test connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS with a test CA's server certificate for `127.0.0.1` and `localhost`.
    Ssl {
        /// Whether the broker requires a client certificate signed by the same CA (mTLS).
        client_auth: bool,
    },
    /// SASL without TLS; PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (the broker's
    /// unsecured JWS validator, meant for tests) are all enabled.
    SaslPlaintext,
    /// SASL over TLS, with the same mechanisms as [`Listener::SaslPlaintext`].
    SaslSsl,
}

impl Listener {
    fn protocol(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAINTEXT",
            Listener::Ssl { .. } => "SSL",
            Listener::SaslPlaintext => "SASL_PLAINTEXT",
            Listener::SaslSsl => "SASL_SSL",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Listener::Ssl { .. } | Listener::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Listener::SaslPlaintext | Listener::SaslSsl)
    }
}

/// How to start a [`KafkaCluster`]; [`KafkaOptions::default`] is one node with a PLAINTEXT
/// client listener and a small heap.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// How many combined broker+controller nodes (node ids 1..=nodes); all of them vote in the
    /// controller quorum.
    pub nodes: usize,
    /// The `CLIENT` listener's security.
    pub listener: Listener,
    /// Per node (in node order), the port to advertise for the `CLIENT` listener instead of its
    /// own, e.g. a front proxy's that relays to [`KafkaNode::client_port`]. Empty: advertise
    /// the listener's own port. The ports of the listeners are chosen before the proxies
    /// start through [`KafkaOptions::client_ports`].
    pub advertised_client_ports: Vec<u16>,
    /// Per node, the `CLIENT` port to listen on (empty: free ports chosen at start).
    pub client_ports: Vec<u16>,
    /// Maximum heap per node, in MiB.
    pub heap_mib: u32,
    /// Whether the JVM runs with its full JIT and a larger young generation, for benchmarks;
    /// the default (false) starts faster on two cores (C1 only, serial GC).
    pub tuned_for_throughput: bool,
    /// Further broker settings, appended to every node's `server.properties` (a key given here
    /// overrides the kit's own setting of it).
    pub broker_configs: Vec<(String, String)>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            nodes: 1,
            listener: Listener::Plaintext,
            advertised_client_ports: Vec::new(),
            client_ports: Vec::new(),
            heap_mib: 320,
            tuned_for_throughput: false,
            broker_configs: Vec::new(),
        }
    }
}

impl KafkaOptions {
    /// `nodes` combined nodes, otherwise the defaults.
    pub fn nodes(nodes: usize) -> KafkaOptions {
        KafkaOptions {
            nodes,
            ..KafkaOptions::default()
        }
    }

    /// One node whose `CLIENT` listener listens on `port` and advertises `advertised_port`,
    /// where a front proxy relaying to `port` listens.
    pub fn behind_proxy(port: u16, advertised_port: u16) -> KafkaOptions {
        KafkaOptions {
            client_ports: vec![port],
            advertised_client_ports: vec![advertised_port],
            ..KafkaOptions::default()
        }
    }

    /// The same options with the `CLIENT` listener's security set.
    pub fn with_listener(mut self, listener: Listener) -> KafkaOptions {
        self.listener = listener;
        self
    }

    /// The same options with one more broker setting.
    pub fn with_config(mut self, key: &str, value: &str) -> KafkaOptions {
        self.broker_configs.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One node of a [`KafkaCluster`].
#[derive(Debug)]
pub struct KafkaNode {
    /// The node id (1-based, as in `node.id`).
    pub id: i32,
    /// The port of the `CLIENT` listener.
    pub client_port: u16,
    /// The port the `CLIENT` listener advertises (a proxy's, or [`KafkaNode::client_port`]).
    pub advertised_client_port: u16,
    /// The port of the PLAINTEXT `INTERNAL` listener.
    pub internal_port: u16,
    /// The port of the `CONTROLLER` listener.
    pub controller_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl KafkaNode {
    /// Whether the node's process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The process id of the running node.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A KRaft cluster of Apache Kafka nodes on loopback, in a temporary folder, killed on drop.
/// When the test panics, the tail of every node's log is printed to stderr.
#[derive(Debug)]
pub struct KafkaCluster {
    nodes: Vec<KafkaNode>,
    options: KafkaOptions,
    cluster_id: String,
    libs: PathBuf,
    pki: Option<Pki>,
    dir: tempfile::TempDir,
}

/// The folder holding Kafka's jars, or `None` (with the skip rule applied) when they or the
/// venv's Python are missing.
fn kafka_libs() -> Option<PathBuf> {
    let libs = std::env::var_os("KBS_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("kafka-{KAFKA_VERSION}/libs")));
    let mut missing = Vec::new();
    if !libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar")).is_file() {
        missing.push(format!("Apache Kafka {KAFKA_VERSION} ({})", libs.display()));
    }
    if crate::tools::find_on_path("java").is_none() {
        missing.push("java (Java 17)".to_owned());
    }
    if python().is_none() {
        missing.push(format!(
            "the venv python ({})",
            cache_dir().join("venv/bin/python").display()
        ));
    }
    require("KBS_SKIP_KAFKA", &missing)?;
    Some(libs)
}

/// A fresh KRaft cluster id: 16 random bytes, base64url without padding.
fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

impl KafkaCluster {
    /// Starts one node with a PLAINTEXT client listener and waits until it is ready; `None`
    /// when Kafka, Java or the venv is missing and `KBS_SKIP_KAFKA=1`.
    pub fn start() -> Option<KafkaCluster> {
        KafkaCluster::start_with(KafkaOptions::default())
    }

    /// Starts a cluster as `options` say and waits until every node is in the metadata (and,
    /// with SASL, until [`SASL_USER`] can authenticate with every mechanism on every node).
    pub fn start_with(options: KafkaOptions) -> Option<KafkaCluster> {
        let libs = kafka_libs()?;
        let started = Instant::now();
        let cluster = start_with_retries("Apache Kafka", || KafkaCluster::try_start(&libs, options.clone()));
        if std::env::var_os("KBS_KAFKA_TIMINGS").is_some() {
            note(&format!(
                "Kafka cluster of {} node(s), {:?} listener, ready in {:?}",
                options.nodes,
                options.listener,
                started.elapsed()
            ));
        }
        Some(cluster)
    }

    fn try_start(libs: &Path, options: KafkaOptions) -> Result<KafkaCluster, String> {
        assert!(options.nodes >= 1, "a cluster needs at least one node");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pki = options.listener.tls().then(|| Pki::new(&dir.path().join("pki")));
        let count = options.nodes;
        let pick = |given: &[u16], i: usize| given.get(i).copied().unwrap_or_else(free_port);
        let mut nodes: Vec<KafkaNode> = (0..count)
            .map(|i| {
                let client_port = pick(&options.client_ports, i);
                KafkaNode {
                    id: i as i32 + 1,
                    client_port,
                    advertised_client_port: options.advertised_client_ports.get(i).copied().unwrap_or(client_port),
                    internal_port: free_port(),
                    controller_port: free_port(),
                    config: dir.path().join(format!("node-{}.properties", i + 1)),
                    log: dir.path().join(format!("node-{}.log", i + 1)),
                    child: None,
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        for node in &nodes {
            let properties = server_properties(&options, node, &voters, dir.path(), pki.as_ref());
            std::fs::write(&node.config, properties).map_err(|e| e.to_string())?;
        }
        std::fs::write(dir.path().join("log4j2.properties"), LOG4J2).map_err(|e| e.to_string())?;
        let mut cluster = KafkaCluster {
            nodes: Vec::new(),
            options,
            cluster_id: new_cluster_id(),
            libs: libs.to_owned(),
            pki,
            dir,
        };
        for node in &mut nodes {
            cluster.spawn(node, true)?;
        }
        cluster.nodes = nodes;
        cluster.wait_ready(START_DEADLINE)?;
        if cluster.options.listener.sasl() {
            cluster.create_scram_users()?;
        }
        Ok(cluster)
    }

    /// Starts `node`'s JVM (formatting its log folder first when `format`).
    fn spawn(&self, node: &mut KafkaNode, format: bool) -> Result<(), String> {
        let java = |main: &str| {
            let mut args = vec![
                "java".to_owned(),
                format!("-Xmx{}m", self.options.heap_mib),
                "-XX:-UsePerfData".to_owned(),
                "-Djava.awt.headless=true".to_owned(),
                format!(
                    "-Dlog4j2.configurationFile={}",
                    self.dir.path().join("log4j2.properties").display()
                ),
            ];
            if self.options.tuned_for_throughput {
                args.push(format!("-Xms{}m", self.options.heap_mib));
            } else {
                args.extend(["-XX:TieredStopAtLevel=1".to_owned(), "-XX:+UseSerialGC".to_owned()]);
            }
            args.extend(["-cp".to_owned(), format!("{}/*", self.libs.display()), main.to_owned()]);
            args
        };
        let quote = |args: Vec<String>| args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
        let config = node.config.display().to_string();
        let mut script = String::new();
        if format {
            let mut args = java("kafka.tools.StorageTool");
            args.extend(["format", "-t", &self.cluster_id, "-c", &config].map(str::to_owned));
            let _ = write!(script, "{} && ", quote(args));
        }
        let mut args = java("kafka.Kafka");
        args.push(config);
        let _ = write!(script, "exec {}", quote(args));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| e.to_string())?;
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start java: {e}"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until every running node lists every running node as a broker.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut running = Vec::new();
            for node in &mut self.nodes {
                if node.child.is_some() && !node.is_running() {
                    let status = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    return Err(format!(
                        "Kafka node {} exited ({status:?}) before it was ready; log:\n{}",
                        node.id,
                        tail(&node.log, 80)
                    ));
                }
                if node.child.is_some() {
                    running.push((node.id, node.internal_port));
                }
            }
            let want: Vec<i32> = running.iter().map(|(id, _)| *id).collect();
            let ready = running.iter().all(|(_, port)| {
                metadata_brokers(*port).is_some_and(|mut brokers| {
                    brokers.sort_unstable();
                    brokers == want
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Kafka nodes {want:?} not ready within {timeout:?}; logs:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates [`SASL_USER`]'s SCRAM credentials through the admin API (on the PLAINTEXT
    /// `INTERNAL` listener) and waits until every mechanism authenticates on every node.
    fn create_scram_users(&self) -> Result<(), String> {
        let mut command = crate::python_command(&crate::script("kafka_admin.py"));
        command
            .args(["scram-users", &self.internal_bootstrap(), SASL_USER, SASL_PASSWORD])
            .arg(self.options.listener.protocol())
            .arg(
                self.nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.client_port))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        if let Some(pki) = &self.pki {
            command.arg(&pki.ca_file);
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run kafka_admin.py: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "creating SCRAM users failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `127.0.0.1:PORT,…` of every node's `CLIENT` listener (the advertised ports).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.advertised_client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `127.0.0.1:PORT,…` of every node's PLAINTEXT `INTERNAL` listener, for the independent
    /// test peers whatever the `CLIENT` listener's security.
    pub fn internal_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.internal_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The KRaft cluster id (what Metadata reports as `cluster_id`).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The nodes, in node-id order.
    pub fn nodes(&self) -> &[KafkaNode] {
        &self.nodes
    }

    /// The test CA and certificates when the `CLIENT` listener uses TLS.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    fn node_mut(&mut self, id: i32) -> &mut KafkaNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no Kafka node {id}"))
    }

    /// Stops node `id` cleanly (SIGTERM: controlled shutdown, leadership moves away first) and
    /// waits until its process has exited.
    pub fn stop_node(&mut self, id: i32) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Kills node `id` with SIGKILL (no controlled shutdown) and reaps it.
    pub fn kill_node(&mut self, id: i32) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes node `id` (SIGSTOP): its process stays, its connections stay open, and it
    /// answers nothing — a follower that stops fetching, a broker in a long GC pause. Until
    /// [`resume_node`](Self::resume_node), acks=all writes to partitions it follows wait (as
    /// long as it stays in their ISR: `replica.lag.time.max.ms`, `broker.session.timeout.ms`).
    pub fn pause_node(&mut self, id: i32) {
        let pid = self
            .node_mut(id)
            .pid()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let status = Command::new("kill").args(["-STOP", &pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "could not SIGSTOP node {id}");
    }

    /// Lets node `id` run again after [`pause_node`](Self::pause_node) (SIGCONT).
    pub fn resume_node(&mut self, id: i32) {
        let pid = self
            .node_mut(id)
            .pid()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let status = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "could not SIGCONT node {id}");
    }

    /// Starts node `id` again with its log folder and ports, and waits until every running
    /// node lists it.
    pub fn restart_node(&mut self, id: i32) {
        let index = self.nodes.iter().position(|n| n.id == id).expect("node id");
        let mut node = self.nodes.remove(index);
        assert!(
            node.child.is_none(),
            "node {id} is still running: stop or kill it first"
        );
        let spawned = self.spawn(&mut node, false);
        self.nodes.insert(index, node);
        spawned.unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready(START_DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts node `id` again with its log folder but its `CLIENT` listener on a new free port,
    /// which it advertises from then on (a broker moved to another address); waits until every
    /// running node lists it, and returns the new port. [`bootstrap`](Self::bootstrap) names
    /// the new port afterwards.
    pub fn restart_node_on_a_new_port(&mut self, id: i32) -> u16 {
        let voters = self
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let index = self.nodes.iter().position(|n| n.id == id).expect("node id");
        let node = &mut self.nodes[index];
        assert!(
            node.child.is_none(),
            "node {id} is still running: stop or kill it first"
        );
        let port = free_port();
        node.client_port = port;
        node.advertised_client_port = port;
        let properties = server_properties(&self.options, node, &voters, self.dir.path(), self.pki.as_ref());
        std::fs::write(&node.config, properties).unwrap_or_else(|e| panic!("rewrite node {id}'s config: {e}"));
        self.restart_node(id);
        port
    }

    /// Every node's log so far, each under a heading.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let _ = writeln!(
                text,
                "----- Kafka node {} ({}) -----\n{}",
                node.id,
                node.log.display(),
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
        }
        text
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                note(&format!(
                    "the test failed; Kafka node {}'s warnings and errors, then its last lines (whole log: \
                     KafkaCluster::log_text):\n{}",
                    node.id,
                    log_summary(&node.log)
                ));
            }
        }
    }
}

/// A node's WARN and ERROR lines (the last 30) and its last 10 lines.
fn log_summary(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("] WARN ") || l.contains("] ERROR "))
        .collect();
    format!(
        "{}\n...\n{}",
        warnings[warnings.len().saturating_sub(30)..].join("\n"),
        tail(path, 10)
    )
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
";

/// One node's `server.properties`.
fn server_properties(options: &KafkaOptions, node: &KafkaNode, voters: &str, dir: &Path, pki: Option<&Pki>) -> String {
    let replicas = options.nodes.min(3);
    let listener = options.listener;
    let mut p = String::new();
    let mut set = |key: &str, value: &str| {
        let _ = writeln!(p, "{key}={value}");
    };
    set("process.roles", "broker,controller");
    set("node.id", &node.id.to_string());
    set("controller.quorum.voters", voters);
    set(
        "listeners",
        &format!(
            "CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
            node.client_port, node.internal_port, node.controller_port
        ),
    );
    set(
        "advertised.listeners",
        &format!(
            "CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{}",
            node.advertised_client_port, node.internal_port
        ),
    );
    set(
        "listener.security.protocol.map",
        &format!("CLIENT:{},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT", listener.protocol()),
    );
    set("controller.listener.names", "CONTROLLER");
    set("inter.broker.listener.name", "INTERNAL");
    set("log.dirs", &dir.join(format!("data-{}", node.id)).display().to_string());
    set("num.partitions", "1");
    set("default.replication.factor", &replicas.to_string());
    set("offsets.topic.replication.factor", &replicas.to_string());
    set("offsets.topic.num.partitions", "4");
    set("transaction.state.log.replication.factor", &replicas.to_string());
    set("transaction.state.log.min.isr", &replicas.min(2).to_string());
    set("transaction.state.log.num.partitions", "4");
    set(
        "share.coordinator.state.topic.replication.factor",
        &replicas.to_string(),
    );
    set("share.coordinator.state.topic.min.isr", &replicas.min(2).to_string());
    set("group.initial.rebalance.delay.ms", "0");
    // The datasets carry fixed CreateTime timestamps (reproducible, and often older than
    // Kafka's 7-day default retention), so time-based retention is off: a broker would
    // otherwise delete restored records 30 s after it started. Tests of retention set it per
    // topic.
    set("log.retention.ms", "-1");
    set("num.network.threads", "2");
    set("num.io.threads", "4");
    set("num.recovery.threads.per.data.dir", "1");
    set("log.cleaner.threads", "1");
    set("log.cleaner.dedupe.buffer.size", "8388608");
    if let Some(pki) = pki {
        set("listener.name.client.ssl.keystore.type", "PEM");
        set(
            "listener.name.client.ssl.keystore.location",
            &pki.server_keystore_file.display().to_string(),
        );
        set("listener.name.client.ssl.truststore.type", "PEM");
        set(
            "listener.name.client.ssl.truststore.location",
            &pki.ca_file.display().to_string(),
        );
        let required = matches!(listener, Listener::Ssl { client_auth: true });
        set(
            "listener.name.client.ssl.client.auth",
            if required { "required" } else { "none" },
        );
    }
    if listener.sasl() {
        set(
            "listener.name.client.sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
        );
        set(
            "listener.name.client.plain.sasl.jaas.config",
            &format!(
                "org.apache.kafka.common.security.plain.PlainLoginModule required \
                 user_{SASL_USER}=\"{SASL_PASSWORD}\";"
            ),
        );
        for scram in ["scram-sha-256", "scram-sha-512"] {
            set(
                &format!("listener.name.client.{scram}.sasl.jaas.config"),
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            );
        }
        set(
            "listener.name.client.oauthbearer.sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        );
    }
    for (key, value) in &options.broker_configs {
        set(key, value);
    }
    p
}

/// The node ids a broker lists in a Metadata v4 response on `port` (PLAINTEXT), or `None`
/// when it does not answer (yet).
fn metadata_brokers(port: u16) -> Option<Vec<i32>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // Request header v1: api_key 3 (Metadata), version 4, correlation id 9, client id "probe";
    // body: an empty topics array (brokers only), allow_auto_topic_creation false.
    let mut body = vec![0, 3, 0, 4, 0, 0, 0, 9, 0, 5];
    body.extend_from_slice(b"probe");
    body.extend_from_slice(&[0, 0, 0, 0, 0]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).ok()?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut response = vec![0u8; u32::from_be_bytes(size).min(1 << 20) as usize];
    stream.read_exact(&mut response).ok()?;
    let mut r = Reader(&response);
    (r.i32()? == 9).then_some(())?;
    let _throttle = r.i32()?;
    let count = r.i32()?;
    let mut brokers = Vec::new();
    for _ in 0..count.clamp(0, 64) {
        brokers.push(r.i32()?);
        r.string()?;
        r.i32()?;
        r.string()?;
    }
    Some(brokers)
}

/// A cursor over a Kafka response.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        (self.0.len() >= n).then(|| {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        })
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A (nullable) string with an int16 length.
    fn string(&mut self) -> Option<()> {
        let len = i16::from_be_bytes(self.take(2)?.try_into().ok()?);
        if len > 0 {
            self.take(len as usize)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_not_a_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(metadata_brokers(port), None);
    }

    #[test]
    fn the_pinned_version_is_the_one_setup_installs() {
        let pom = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka/pom.xml"))
            .expect("scripts/kafka/pom.xml");
        assert!(
            pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")),
            "scripts/kafka/pom.xml pins another Kafka than kbs-testkit's KAFKA_VERSION {KAFKA_VERSION}"
        );
    }

    #[test]
    fn cluster_ids_are_22_base64url_characters_and_differ() {
        let (a, b) = (new_cluster_id(), new_cluster_id());
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
