//! Broker configuration: command-line flags and WARREN_* environment variables.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    /// Where sled keeps definitions and persistent messages; None keeps them in memory.
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory even with a data directory (nothing survives a restart).
    pub in_memory: bool,
    /// fdatasync after each group commit. Without it confirms survive kill -9, not power loss.
    pub sync: bool,
    /// Largest message body accepted (RabbitMQ 3.x: 128 MiB).
    pub max_message_size: u64,
    /// What Tune proposes (RabbitMQ's defaults).
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    /// RabbitMQ's handshake_timeout.
    pub handshake_timeout_ms: u64,
    /// Port of the management HTTP API (RabbitMQ's is 15672); None runs without it.
    pub mgmt_port: Option<u16>,
    /// Port of RabbitMQ's Prometheus endpoint (`/metrics`, `/metrics/per-object`; RabbitMQ's
    /// is 15692; 0 picks a free one). Taken, it is a warning when `mgmt_port_optional`.
    pub prometheus_port: Option<u16>,
    /// Record bytes that may wait for the committer before publishers with writes in flight
    /// stop being read (about a second of this machine's disk throughput).
    pub store_backlog_bytes: u64,
    /// Deadline for a management request's head, and again for its body (slowloris).
    pub mgmt_timeout_ms: u64,
    /// Serve /metrics without credentials (Prometheus scrapers without a password).
    pub metrics_public: bool,
    /// Memory alarm threshold (RabbitMQ's vm_memory_high_watermark).
    pub vm_memory_high_watermark: crate::alarm::Watermark,
    /// Past this fraction of the memory limit, queues spill the messages they cannot page to
    /// the store (RabbitMQ's vm_memory_high_watermark_paging_ratio, 0.5; above 1, only once
    /// memory is past the alarm).
    pub paging_ratio: f64,
    /// Disk alarm threshold: free bytes on the data directory's filesystem (RabbitMQ: 50 MB).
    pub disk_free_limit: u64,
    /// RabbitMQ's consumer_timeout (ms): a delivery unacknowledged for longer closes its
    /// channel with 406. None disables it. Queues override it with x-consumer-timeout.
    pub consumer_timeout_ms: Option<u64>,
    /// The RabbitMQ version Warren says it is (server properties' `version`, the management
    /// API's `rabbitmq_version`/`product_version`): clients and tools pick features by it.
    pub rabbitmq_version: String,
    /// Open connections at most (RabbitMQ's connection_max); beyond, connection.open gets 530.
    pub max_connections: Option<usize>,
    /// Consumers on one channel at most (RabbitMQ's consumer_max_per_channel; None: unlimited,
    /// its default); beyond, basic.consume closes the connection with 530.
    pub max_consumers_per_channel: Option<usize>,
    /// Bytes one connection may hold of partial bodies (at their announced size) and
    /// uncommitted transactions; beyond, it is closed with 506 (see `channel::Budget`).
    pub max_pending_bytes: u64,
    /// Ready messages of one durable queue (per priority level) kept in memory; past it, the
    /// persistent messages in the middle of the queue page out to the store (`queue::paged`).
    pub queue_ram_messages: usize,
    /// The same window in body bytes.
    pub queue_ram_bytes: u64,
    /// Sockets still in the handshake at once; more are closed on accept (unauthenticated peers
    /// cost little).
    pub max_handshakes: usize,
    /// Definitions to apply at boot, before listening (RabbitMQ's load_definitions).
    pub definitions: Option<PathBuf>,
    /// A taken management port is a warning, not a failure (the binary's default port may be
    /// RabbitMQ's own on a developer machine); embedded brokers asked for a port on purpose.
    pub mgmt_port_optional: bool,
    /// The user and vhost a fresh data directory starts with (RabbitMQ's default_user,
    /// default_pass, default_vhost; RABBITMQ_DEFAULT_USER and friends in its container).
    /// The default user gets the administrator tag and full permissions on the default vhost.
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    /// Users that may log in only from a loopback address (RabbitMQ's loopback_users).
    pub loopback_users: Vec<String>,
    /// AMQPS port (RabbitMQ's 5671; 0 picks one); needs `tls`.
    pub tls_port: Option<u16>,
    /// HTTPS port of the management API; needs `tls`.
    pub mgmt_tls_port: Option<u16>,
    /// Certificate, key and client verification for both TLS listeners.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Timers (TTL, x-expires, x-delay) on a clock that moves only when told
    /// (`Broker::advance_clock`, `POST /api/warren/clock`, `warrenctl clock`).
    pub test_clock: bool,
    /// Use this store instead of opening one (embedding, and tests that inject faults).
    pub store: Option<std::sync::Arc<dyn crate::store::Store>>,
}

/// This node's name, as RabbitMQ's `rabbit@host`.
pub const NODE_NAME: &str = "warren@localhost";

/// RabbitMQ 3.x's max_message_size (128 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;

/// The RabbitMQ release whose behaviour Warren follows (and is checked against).
pub const DEFAULT_RABBITMQ_VERSION: &str = "3.10.8";

/// RabbitMQ's default vm_memory_high_watermark_paging_ratio.
pub const DEFAULT_PAGING_RATIO: f64 = 0.5;

/// Default of `Config::store_backlog_bytes`.
pub const DEFAULT_STORE_BACKLOG_BYTES: u64 = 64 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 5672,
            data_dir: None,
            in_memory: false,
            sync: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
            handshake_timeout_ms: 10_000,
            mgmt_port: None,
            prometheus_port: None,
            store_backlog_bytes: DEFAULT_STORE_BACKLOG_BYTES,
            mgmt_timeout_ms: 10_000,
            definitions: None,
            mgmt_port_optional: false,
            max_connections: None,
            max_handshakes: 1024,
            max_consumers_per_channel: None,
            max_pending_bytes: 2 * DEFAULT_MAX_MESSAGE_SIZE,
            queue_ram_messages: crate::queue::Paging::default().ram_messages,
            queue_ram_bytes: crate::queue::Paging::default().ram_bytes,
            rabbitmq_version: DEFAULT_RABBITMQ_VERSION.to_string(),
            consumer_timeout_ms: Some(1_800_000),
            vm_memory_high_watermark: Default::default(),
            paging_ratio: DEFAULT_PAGING_RATIO,
            disk_free_limit: 50_000_000,
            metrics_public: false,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            loopback_users: vec!["guest".into()],
            test_clock: false,
            tls_port: None,
            mgmt_tls_port: None,
            tls: None,
            store: None,
        }
    }
}

impl Config {
    /// Where stream queues keep their logs: beside the store in the data directory (None
    /// when nothing is kept on disk).
    pub fn streams_dir(&self) -> Option<PathBuf> {
        let on_disk = !self.in_memory && self.store.is_none();
        self.data_dir
            .as_ref()
            .filter(|_| on_disk)
            .map(|d| d.join("streams"))
    }

    /// Where queues spill messages under memory pressure (emptied at boot).
    pub fn spill_dir(&self) -> Option<PathBuf> {
        let on_disk = !self.in_memory && self.store.is_none();
        self.data_dir
            .as_ref()
            .filter(|_| on_disk)
            .map(|d| d.join("spill"))
    }

    /// The paging window of durable queues.
    pub fn paging(&self) -> crate::queue::Paging {
        crate::queue::Paging {
            ram_messages: self.queue_ram_messages.max(1),
            ram_bytes: self.queue_ram_bytes.max(1),
            explicit: false,
        }
    }
}
