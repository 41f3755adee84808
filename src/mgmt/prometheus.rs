//! RabbitMQ's Prometheus endpoint (the rabbitmq_prometheus plugin, port 15692): `/metrics`
//! with totals across the node and `/metrics/per-object` with one series per queue, under
//! RabbitMQ's metric names and labels, so that dashboards built for RabbitMQ (Grafana's
//! RabbitMQ-Overview, which joins everything on `rabbitmq_identity_info`) show Warren. As in
//! RabbitMQ, the endpoint needs no credentials; it says nothing a message could be read from.

use crate::broker::Broker;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Scrapers served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;

/// Serve scrapes until the task is aborted.
pub async fn run(listener: TcpListener, broker: Arc<Broker>) {
    if let Ok(a) = listener.local_addr() {
        broker.listening("http/prometheus", a.port());
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "prometheus accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let deadline = Duration::from_millis(broker.config.mgmt_timeout_ms.max(1));
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let broker = broker.clone();
                async move { Ok::<_, Infallible>(answer(&broker, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(deadline)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(deadline * 12, conn).await;
            drop(permit);
        });
    }
}

fn answer(broker: &Broker, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (status, kind, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", render(broker, false)),
        ("GET", "/metrics/per-object") => (200, "text/plain; version=0.0.4", render(broker, true)),
        ("GET", _) => (404, "text/plain", "Not Found\n".to_string()),
        _ => (405, "text/plain", "Method Not Allowed\n".to_string()),
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Writes series in the exposition format, each name's TYPE and HELP once.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}\n# HELP {name} {help}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }
}

/// Open file descriptors of this process, and their limit (0 where /proc cannot tell).
fn fds() -> (u64, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0);
    (open, max)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One queue's gauges: (name, help, value).
type QueueGauge = (&'static str, &'static str, fn(&QueueFigures) -> u64);

#[derive(Default, Clone, Copy)]
struct QueueFigures {
    ready: u64,
    unacked: u64,
    ram: u64,
    ready_ram: u64,
    paged: u64,
    paged_bytes: u64,
    ready_bytes: u64,
    ram_bytes: u64,
    consumers: u64,
}

impl QueueFigures {
    fn add(&mut self, f: &QueueFigures) {
        self.ready += f.ready;
        self.unacked += f.unacked;
        self.ram += f.ram;
        self.ready_ram += f.ready_ram;
        self.paged += f.paged;
        self.paged_bytes += f.paged_bytes;
        self.ready_bytes += f.ready_bytes;
        self.ram_bytes += f.ram_bytes;
        self.consumers += f.consumers;
    }
}

const QUEUE_GAUGES: [QueueGauge; 10] = [
    (
        "rabbitmq_queue_messages_ready",
        "Messages ready to be delivered to consumers",
        |f| f.ready,
    ),
    (
        "rabbitmq_queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
        |f| f.unacked,
    ),
    (
        "rabbitmq_queue_messages",
        "Sum of ready and unacknowledged messages - total queue depth",
        |f| f.ready + f.unacked,
    ),
    (
        "rabbitmq_queue_messages_ready_ram",
        "Ready messages stored in memory",
        |f| f.ready_ram,
    ),
    (
        "rabbitmq_queue_messages_ram",
        "Ready and unacknowledged messages stored in memory",
        |f| f.ram,
    ),
    (
        "rabbitmq_queue_messages_paged_out",
        "Messages paged out to disk",
        |f| f.paged,
    ),
    (
        "rabbitmq_queue_messages_paged_out_bytes",
        "Size in bytes of messages paged out to disk",
        |f| f.paged_bytes,
    ),
    (
        "rabbitmq_queue_messages_ready_bytes",
        "Size in bytes of ready messages",
        |f| f.ready_bytes,
    ),
    (
        "rabbitmq_queue_messages_ram_bytes",
        "Size of ready and unacknowledged messages stored in memory",
        |f| f.ram_bytes,
    ),
    ("rabbitmq_queue_consumers", "Consumers on a queue", |f| {
        f.consumers
    }),
];

/// The exposition text: node totals, and with `per_object` one series per queue.
pub fn render(broker: &Broker, per_object: bool) -> String {
    let mut o = Out(String::new());
    let id = broker
        .global_parameter("internal_cluster_id")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    o.family(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    let _ = writeln!(
        o.0,
        "rabbitmq_identity_info{{rabbitmq_node=\"{}\",rabbitmq_cluster=\"{}\",rabbitmq_cluster_permanent_id=\"{}\"}} 1",
        label(crate::broker::NODE_NAME),
        label(&broker.cluster_name()),
        label(&id)
    );
    o.family(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    let _ = writeln!(
        o.0,
        "rabbitmq_build_info{{rabbitmq_version=\"{}\",prometheus_plugin_version=\"{}\",prometheus_client_version=\"\",erlang_version=\"\",warren_version=\"{}\"}} 1",
        label(&broker.config.rabbitmq_version),
        label(&broker.config.rabbitmq_version),
        env!("CARGO_PKG_VERSION")
    );

    let conns = broker.connections();
    let (mut queues, mut consumers) = (0u64, 0u64);
    let mut queue_counts = [0u64; 3];
    let mut per_queue: Vec<(String, String, QueueFigures)> = Vec::new();
    let mut total = QueueFigures::default();
    for vh in broker.vhosts() {
        for (total, n) in queue_counts.iter_mut().zip(&vh.queue_counts) {
            *total += n.load(Relaxed);
        }
        let mut qs = vh.queues();
        qs.sort_by(|a, b| a.name().cmp(b.name()));
        for q in qs {
            queues += 1;
            let ((ram, ram_bytes), (paged, paged_bytes)) = q.residence();
            let unacked = q.unacked_count();
            let f = QueueFigures {
                ready: u64::from(q.message_count()),
                unacked,
                ram: ram as u64 + unacked,
                ready_ram: ram as u64,
                paged: paged as u64,
                paged_bytes,
                ready_bytes: ram_bytes + paged_bytes,
                ram_bytes,
                consumers: u64::from(q.consumer_count()),
            };
            consumers += f.consumers;
            total.add(&f);
            if per_object {
                per_queue.push((vh.name.clone(), q.name().to_string(), f));
            }
        }
    }

    let channels = super::reply::channel_count(&conns);
    o.one(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        conns.len() as u64,
    );
    o.one(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        channels,
    );
    o.one(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        consumers,
    );
    o.one("rabbitmq_queues", "gauge", "Queues available", queues);

    let (conns_opened, channels_opened) = broker.opened_totals();
    let lifecycle: [(&str, &str, u64); 7] = [
        (
            "rabbitmq_connections_opened_total",
            "Total number of connections opened",
            conns_opened,
        ),
        (
            "rabbitmq_connections_closed_total",
            "Total number of connections closed or terminated",
            conns_opened.saturating_sub(conns.len() as u64),
        ),
        (
            "rabbitmq_channels_opened_total",
            "Total number of channels opened",
            channels_opened,
        ),
        (
            "rabbitmq_channels_closed_total",
            "Total number of channels closed",
            channels_opened.saturating_sub(channels),
        ),
        (
            "rabbitmq_queues_declared_total",
            "Total number of queues declared",
            queue_counts[0],
        ),
        (
            "rabbitmq_queues_created_total",
            "Total number of queues created",
            queue_counts[1],
        ),
        (
            "rabbitmq_queues_deleted_total",
            "Total number of queues deleted",
            queue_counts[2],
        ),
    ];
    for (name, help, v) in lifecycle {
        o.one(name, "counter", help, v);
    }
    let (open_fds, max_fds) = fds();
    o.one(
        "rabbitmq_process_open_fds",
        "gauge",
        "Open file descriptors",
        open_fds,
    );
    o.one(
        "rabbitmq_process_max_fds",
        "gauge",
        "Open file descriptors limit",
        max_fds,
    );
    o.one(
        "rabbitmq_process_open_tcp_sockets",
        "gauge",
        "Open TCP sockets",
        conns.len() as u64,
    );
    o.one(
        "rabbitmq_process_max_tcp_sockets",
        "gauge",
        "Open TCP sockets limit",
        max_fds,
    );

    let (recv, send, m) = broker.totals();
    use crate::stats::Stat;
    let counters: [(&str, &str, u64); 13] = [
        ("rabbitmq_connection_incoming_bytes_total", "Total number of bytes received on a connection", recv),
        ("rabbitmq_connection_outgoing_bytes_total", "Total number of bytes sent on a connection", send),
        ("rabbitmq_channel_messages_published_total", "Total number of messages published into an exchange on a channel", m.count(Stat::Publish)),
        ("rabbitmq_channel_messages_confirmed_total", "Total number of messages published into an exchange and confirmed on the channel", m.count(Stat::Confirm)),
        ("rabbitmq_channel_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", m.count(Stat::ReturnUnroutable)),
        ("rabbitmq_channel_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", m.count(Stat::DropUnroutable)),
        ("rabbitmq_channel_messages_delivered_ack_total", "Total number of messages delivered to consumers in manual acknowledgement mode", m.count(Stat::Deliver)),
        ("rabbitmq_channel_messages_delivered_total", "Total number of messages delivered to consumers in automatic acknowledgement mode", m.count(Stat::DeliverNoAck)),
        ("rabbitmq_channel_get_ack_total", "Total number of messages fetched with basic.get in manual acknowledgement mode", m.count(Stat::Get)),
        ("rabbitmq_channel_get_total", "Total number of messages fetched with basic.get in automatic acknowledgement mode", m.count(Stat::GetNoAck)),
        ("rabbitmq_channel_get_empty_total", "Total number of times basic.get operations fetched no message", m.count(Stat::GetEmpty)),
        ("rabbitmq_channel_messages_redelivered_total", "Total number of messages redelivered to consumers", m.count(Stat::Redeliver)),
        ("rabbitmq_channel_messages_acked_total", "Total number of messages acknowledged by consumers", m.count(Stat::Ack)),
    ];
    for (name, help, v) in counters {
        o.one(name, "counter", help, v);
    }

    let a = &broker.alarms;
    let active = a.active();
    o.one(
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        crate::alarm::resident_memory(),
    );
    o.one(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        a.memory_limit(),
    );
    o.one(
        "rabbitmq_disk_space_available_bytes",
        "gauge",
        "Disk space available in bytes",
        a.disk_free.load(Relaxed),
    );
    o.one(
        "rabbitmq_disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        a.disk_free_limit,
    );
    o.one(
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "is 1 if VM memory watermark alarm is in effect",
        u64::from(active & crate::alarm::MEMORY != 0),
    );
    o.one(
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "is 1 if free disk space watermark alarm is in effect",
        u64::from(active & crate::alarm::DISK != 0),
    );
    o.one(
        "rabbitmq_alarms_file_descriptor_limit",
        "gauge",
        "is 1 if file descriptor limit alarm is in effect",
        0,
    );

    for (name, help, get) in QUEUE_GAUGES {
        o.family(name, "gauge", help);
        if per_object {
            for (vhost, queue, f) in &per_queue {
                let _ = writeln!(
                    o.0,
                    "{name}{{vhost=\"{}\",queue=\"{}\"}} {}",
                    label(vhost),
                    label(queue),
                    get(f)
                );
            }
        } else {
            let _ = writeln!(o.0, "{name} {}", get(&total));
        }
    }
    o.0
}
