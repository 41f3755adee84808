//! The `warren` broker binary: flags/env → Config → server::run, until SIGTERM or Ctrl-C.

use clap::Parser;

use std::path::PathBuf;
use warren::Config;

#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = "An AMQP 0-9-1 message broker compatible with RabbitMQ clients"
)]
struct Args {
    /// AMQP port.
    #[arg(long, env = "WARREN_PORT", default_value_t = 5672)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "WARREN_BIND", default_value = "0.0.0.0")]
    bind: String,
    /// Data directory (created if missing).
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./warren-data")]
    data_dir: PathBuf,
    /// Largest accepted message body in bytes (RabbitMQ 3.x default: 128 MiB).
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 134_217_728)]
    max_message_size: u64,
    /// Keep everything in memory: nothing is written to the data directory, nothing survives a
    /// restart.
    #[arg(long, env = "WARREN_IN_MEMORY")]
    in_memory: bool,
    /// Skip the fdatasync after each group commit: faster, and confirmed messages still survive
    /// a crash of the process (kill -9), but not a power loss or kernel crash.
    #[arg(long, env = "WARREN_NO_SYNC")]
    no_sync: bool,
    /// Worker threads (0 = one per CPU; 1 runs everything on one thread).
    #[arg(long, env = "WARREN_THREADS", default_value_t = 0)]
    threads: usize,
    /// Management HTTP API port (RabbitMQ's is 15672; 0 picks a free one, printed on the ports
    /// line). If the default port is taken the broker logs a warning and runs without it.
    #[arg(long, env = "WARREN_MGMT_PORT", default_value_t = 15672)]
    mgmt_port: u16,
    /// Run without the management API.
    #[arg(long, env = "WARREN_NO_MGMT")]
    no_mgmt: bool,
    /// Port of the Prometheus endpoint with RabbitMQ's metric names (`/metrics`,
    /// `/metrics/per-object`; RabbitMQ's rabbitmq_prometheus uses 15692; 0 picks a free one).
    /// If the default port is taken the broker logs a warning and runs without it.
    #[arg(long, env = "WARREN_PROMETHEUS_PORT", default_value_t = 15692)]
    prometheus_port: u16,
    /// Run without the Prometheus endpoint.
    #[arg(long, env = "WARREN_NO_PROMETHEUS")]
    no_prometheus: bool,
    /// Definitions to apply at boot, in RabbitMQ's export format (exchanges, queues, bindings),
    /// like RabbitMQ's load_definitions. A file that cannot be applied stops the broker.
    #[arg(long, env = "WARREN_DEFINITIONS")]
    definitions: Option<PathBuf>,
    /// Heartbeat interval proposed in connection.tune, in seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    heartbeat: u16,
    /// Bytes of persistent messages that may wait to be written before publishers with
    /// writes in flight are no longer read (TCP back-pressure, RabbitMQ's credit flow).
    #[arg(long, env = "WARREN_STORE_BACKLOG_BYTES", default_value_t = warren::config::DEFAULT_STORE_BACKLOG_BYTES)]
    store_backlog_bytes: u64,
    /// Serve the management port's /metrics without credentials (by default it asks for them,
    /// like every other management path).
    #[arg(long, env = "WARREN_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Memory alarm: a fraction of the machine's (or container's) memory, or an absolute size
    /// such as 256MiB. Past it, publishing connections are blocked (RabbitMQ's default: 0.4).
    #[arg(long, env = "WARREN_VM_MEMORY_HIGH_WATERMARK", default_value = "0.4")]
    vm_memory_high_watermark: warren::alarm::Watermark,
    /// Past this fraction of the memory watermark, queues write the messages they hold in
    /// memory and cannot page to the store (transient ones) to scratch files under the data
    /// directory, dropped at restart (RabbitMQ's vm_memory_high_watermark_paging_ratio; above
    /// 1, only once memory is past the alarm).
    #[arg(long, env = "WARREN_VM_MEMORY_HIGH_WATERMARK_PAGING_RATIO", default_value_t = warren::config::DEFAULT_PAGING_RATIO, value_parser = paging_ratio)]
    vm_memory_high_watermark_paging_ratio: f64,
    /// Disk alarm: free space on the data directory's filesystem below which publishing
    /// connections are blocked (50MB, 1GiB, bytes; RabbitMQ's default: 50MB).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value = "50MB", value_parser = warren::alarm::parse_size)]
    disk_free_limit: u64,
    /// RabbitMQ's consumer_timeout in ms: a delivery left unacknowledged longer closes its
    /// channel with 406 and is requeued (0 disables; queues override with x-consumer-timeout).
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT", default_value_t = 1_800_000)]
    consumer_timeout: u64,
    /// The RabbitMQ version to report to clients and tools (server properties' `version`,
    /// the management API's `rabbitmq_version`); Warren's own is reported beside it.
    #[arg(long, env = "WARREN_RABBITMQ_VERSION", default_value = warren::config::DEFAULT_RABBITMQ_VERSION)]
    rabbitmq_version: String,
    /// Open AMQP connections at most (RabbitMQ's connection_max); beyond it connection.open
    /// is refused with 530. Unlimited by default.
    #[arg(long, env = "WARREN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Consumers on one channel at most (RabbitMQ's consumer_max_per_channel); beyond it
    /// basic.consume closes the connection with 530. Unlimited by default.
    #[arg(long, env = "WARREN_MAX_CONSUMERS_PER_CHANNEL")]
    max_consumers_per_channel: Option<usize>,
    /// Bytes one connection may hold of unfinished message bodies (at the size their header
    /// announces) and uncommitted transactions (256MiB, 1GiB, bytes); beyond it the connection
    /// is closed with 506 RESOURCE_ERROR.
    #[arg(long, env = "WARREN_MAX_PENDING_BYTES", default_value = "256MiB", value_parser = warren::alarm::parse_size)]
    max_pending_bytes: u64,
    /// Ready messages of one durable queue kept in memory (per priority level); past it, the
    /// persistent messages in the middle of the queue live only on disk until the consumers
    /// come near them.
    #[arg(long, env = "WARREN_QUEUE_RAM_MESSAGES", default_value_t = 8192)]
    queue_ram_messages: usize,
    /// The same window in message body bytes (16MiB, bytes).
    #[arg(long, env = "WARREN_QUEUE_RAM_BYTES", default_value = "16MiB", value_parser = warren::alarm::parse_size)]
    queue_ram_bytes: u64,
    /// The user a fresh data directory starts with (administrator, full permissions on the
    /// default vhost). RabbitMQ's container variables RABBITMQ_DEFAULT_USER/PASS/VHOST work too.
    #[arg(long, env = "WARREN_DEFAULT_USER")]
    default_user: Option<String>,
    #[arg(long, env = "WARREN_DEFAULT_PASS")]
    default_pass: Option<String>,
    #[arg(long, env = "WARREN_DEFAULT_VHOST")]
    default_vhost: Option<String>,
    /// Users who may log in only from a loopback address, comma-separated ("none": nobody
    /// restricted). RabbitMQ's loopback_users; its default is guest.
    #[arg(long, env = "WARREN_LOOPBACK_USERS", default_value = "guest")]
    loopback_users: String,
    /// AMQPS port (RabbitMQ's is 5671); needs --tls-cert and --tls-key.
    #[arg(long, env = "WARREN_TLS_PORT")]
    tls_port: Option<u16>,
    /// HTTPS port for the management API; needs --tls-cert and --tls-key.
    #[arg(long, env = "WARREN_MGMT_TLS_PORT")]
    mgmt_tls_port: Option<u16>,
    /// Server certificate chain (PEM) for AMQPS and HTTPS.
    #[arg(long, env = "WARREN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the server certificate.
    #[arg(long, env = "WARREN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against --tls-ca (RabbitMQ's verify_peer);
    /// a verified certificate's common name can log in with SASL EXTERNAL.
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER")]
    tls_verify_peer: bool,
    /// With --tls-verify-peer, refuse clients that present no certificate.
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    tls_fail_if_no_peer_cert: bool,
    /// Run timers (message and queue TTL, x-expires, x-delay) on a test clock that starts at the
    /// real time and moves only when told: `warrenctl clock advance 90m`, `POST /api/warren/clock`.
    #[arg(long, env = "WARREN_TEST_CLOCK")]
    test_clock: bool,
    /// Log lines as text (default) or one JSON object per line (`json`).
    #[arg(long, env = "WARREN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Write the ports Warren listens on to this file, as one JSON line (with --port 0 the
    /// system picks a free one; parallel test runs read it here).
    #[arg(long, env = "WARREN_PORTS_FILE")]
    ports_file: Option<PathBuf>,
}

/// A flag or WARREN_* variable, else RabbitMQ's variable of the same meaning, else the default.
fn setting(flag: Option<String>, rabbitmq_env: &str, default: &str) -> String {
    flag.or_else(|| std::env::var(rabbitmq_env).ok())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in CI logs or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let ports_file = args.ports_file.clone();
    let tls = match (args.tls_cert.clone(), args.tls_key.clone()) {
        (Some(cert), Some(key)) => Some(warren::tls::TlsFiles {
            cert,
            key,
            ca: args.tls_ca.clone(),
            verify_peer: args.tls_verify_peer,
            fail_if_no_peer_cert: args.tls_fail_if_no_peer_cert,
        }),
        _ => None,
    };
    let config = Config {
        bind: args.bind,
        port: args.port,
        data_dir: Some(args.data_dir),
        in_memory: args.in_memory,
        sync: !args.no_sync,
        max_message_size: args.max_message_size,
        heartbeat: args.heartbeat,
        mgmt_port: (!args.no_mgmt).then_some(args.mgmt_port),
        prometheus_port: (!args.no_prometheus).then_some(args.prometheus_port),
        store_backlog_bytes: args.store_backlog_bytes,
        metrics_public: args.metrics_public,
        vm_memory_high_watermark: args.vm_memory_high_watermark,
        paging_ratio: args.vm_memory_high_watermark_paging_ratio,
        disk_free_limit: args.disk_free_limit,
        consumer_timeout_ms: (args.consumer_timeout != 0).then_some(args.consumer_timeout),
        rabbitmq_version: args.rabbitmq_version,
        max_connections: args.max_connections,
        max_consumers_per_channel: args.max_consumers_per_channel,
        max_pending_bytes: args.max_pending_bytes,
        queue_ram_messages: args.queue_ram_messages.max(1),
        queue_ram_bytes: args.queue_ram_bytes.max(1),
        definitions: args.definitions,
        mgmt_port_optional: true,
        default_user: setting(args.default_user, "RABBITMQ_DEFAULT_USER", "guest"),
        default_pass: setting(args.default_pass, "RABBITMQ_DEFAULT_PASS", "guest"),
        default_vhost: setting(args.default_vhost, "RABBITMQ_DEFAULT_VHOST", "/"),
        loopback_users: args
            .loopback_users
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty() && *u != "none")
            .map(String::from)
            .collect(),
        test_clock: args.test_clock,
        tls_port: args.tls_port,
        mgmt_tls_port: args.mgmt_tls_port,
        tls,
        ..Config::default()
    };
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let broker = match warren::start(config).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("warren: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        // One machine-readable line with the ports (chosen by the system for port 0).
        let ports = serde_json::json!({
            "amqp": broker.local_addr().port(),
            "management": broker.mgmt_addr().map(|a| a.port()),
            "amqps": broker.tls_addr().map(|a| a.port()),
            "management_tls": broker.mgmt_tls_addr().map(|a| a.port()),
            "prometheus": broker.prometheus_addr().map(|a| a.port()),
        });
        println!("{ports}");
        if let Some(path) = &ports_file {
            if let Err(e) = std::fs::write(path, format!("{ports}\n")) {
                eprintln!("warren: cannot write {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        // RabbitMQ's line, which readiness probes (testcontainers among them) wait for.
        tracing::info!("Server startup complete; both listeners are up");
        shutdown_signal().await;
        match broker.stop().await {
            Ok(()) => {
                tracing::info!("stopped");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("warren: stopped with writes not durable: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// A paging ratio: a number, 0 or more.
fn paging_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => Err(format!("not a ratio of 0 or more: {s}")),
    }
}
