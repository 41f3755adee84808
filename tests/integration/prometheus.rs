//! RabbitMQ's Prometheus endpoint: `/metrics` (node totals) and `/metrics/per-object` (one
//! series per queue) with rabbitmq_prometheus's names and labels. Against RabbitMQ, set
//! WARREN_TEST_PROMETHEUS_ADDR to its port 15692 (rabbitmq_prometheus enabled).

use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (AMQP URL, Prometheus address) of the broker under test; None: skip.
fn target() -> Option<(String, String)> {
    if external() {
        let addr = std::env::var("WARREN_TEST_PROMETHEUS_ADDR").ok()?;
        return Some((url(), addr));
    }
    static B: OnceLock<(String, String)> = OnceLock::new();
    Some(
        B.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let b = warren::start(warren::Config {
                        port: 0,
                        prometheus_port: Some(0),
                        ..Default::default()
                    })
                    .await
                    .expect("start");
                    let addr = b.prometheus_addr().expect("prometheus listens").to_string();
                    tx.send((b.url(), addr)).expect("send");
                    std::future::pending::<()>().await;
                });
            });
            rx.recv().expect("broker")
        })
        .clone(),
    )
}

/// GET `path` over plain HTTP/1.0: (status, content type, body).
async fn scrape(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let kind = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, kind, body.to_string())
}

/// The value of the series whose name and labels are exactly `series`.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn has_family(body: &str, name: &str) -> bool {
    body.lines().any(|l| {
        !l.starts_with('#')
            && l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

/// What Grafana's RabbitMQ-Overview dashboard queries, besides the per-queue gauges.
const DASHBOARD: [&str; 27] = [
    "rabbitmq_connections_opened_total",
    "rabbitmq_connections_closed_total",
    "rabbitmq_channels_opened_total",
    "rabbitmq_channels_closed_total",
    "rabbitmq_queues_declared_total",
    "rabbitmq_queues_created_total",
    "rabbitmq_queues_deleted_total",
    "rabbitmq_process_open_fds",
    "rabbitmq_process_max_fds",
    "rabbitmq_identity_info",
    "rabbitmq_build_info",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_consumers",
    "rabbitmq_queues",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_channel_messages_published_total",
    "rabbitmq_channel_messages_confirmed_total",
    "rabbitmq_channel_messages_unroutable_dropped_total",
    "rabbitmq_channel_messages_unroutable_returned_total",
    "rabbitmq_channel_messages_delivered_total",
    "rabbitmq_channel_messages_delivered_ack_total",
    "rabbitmq_channel_messages_redelivered_total",
    "rabbitmq_channel_messages_acked_total",
    "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_disk_space_available_bytes",
];

#[tokio::test]
async fn metrics_have_rabbitmqs_names_and_count_what_happened() {
    let Some((url, addr)) = target() else {
        return;
    };
    let (_c, ch) = channel_at(&url).await;
    let q = uniq("prom-q");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (_, _, before) = scrape(&addr, "/metrics").await;
    let published_before =
        value(&before, "rabbitmq_channel_messages_published_total").unwrap_or(0.0);
    let created_before = value(&before, "rabbitmq_queues_created_total").unwrap_or(0.0);
    let channels_before = value(&before, "rabbitmq_channels_opened_total").unwrap_or(0.0);
    let extra = uniq("prom-extra");
    let (_c2, ch2) = channel_at(&url).await;
    ch2.queue_declare(
        extra.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch2.queue_delete(extra.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    ch2.close(200, "bye".into()).await.expect("close");
    for i in 0..3 {
        ops::publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let per_queue = format!("rabbitmq_queue_messages_ready{{vhost=\"/\",queue=\"{q}\"}}");
    let mut body = String::new();
    for _ in 0..100 {
        let (status, kind, b) = scrape(&addr, "/metrics/per-object").await;
        assert_eq!(status, 200);
        assert!(kind.starts_with("text/plain"), "{kind}");
        body = b;
        if value(&body, &per_queue) == Some(3.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(value(&body, &per_queue), Some(3.0), "{body}");
    let (status, _, totals) = scrape(&addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in DASHBOARD {
        assert!(has_family(&totals, name), "/metrics lacks {name}");
    }
    // Node totals carry no per-queue labels.
    assert!(value(&totals, "rabbitmq_queue_messages_ready").is_some_and(|v| v >= 3.0));
    assert!(
        value(&totals, "rabbitmq_channel_messages_published_total")
            .is_some_and(|v| v >= published_before + 3.0),
        "{totals}"
    );
    let at_least = |name: &str, v: f64| {
        assert!(
            value(&totals, name).is_some_and(|x| x >= v),
            "{name} below {v}: {totals}"
        )
    };
    at_least("rabbitmq_queues_created_total", created_before + 1.0);
    at_least("rabbitmq_queues_deleted_total", 1.0);
    at_least("rabbitmq_channels_opened_total", channels_before + 1.0);
    at_least("rabbitmq_channels_closed_total", 1.0);
    at_least("rabbitmq_connections_opened_total", 2.0);
    at_least("rabbitmq_process_open_fds", 1.0);
    let identity = totals
        .lines()
        .find(|l| l.starts_with("rabbitmq_identity_info{"))
        .expect("identity");
    for label in [
        "rabbitmq_node=",
        "rabbitmq_cluster=",
        "rabbitmq_cluster_permanent_id=",
    ] {
        assert!(identity.contains(label), "{identity}");
    }
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let Some((_, addr)) = target() else {
        return;
    };
    let (status, _, _) = scrape(&addr, "/api/overview").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_oversized_or_trickled_request_does_not_stop_scrapes() {
    let Some((_, addr)) = target() else {
        return;
    };
    // A head far larger than any scrape needs: refused or cut, never buffered without bound.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = s.write_all(huge.as_bytes()).await;
    let mut reply = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    let head = String::from_utf8_lossy(&reply);
    assert!(
        !head.starts_with("HTTP/1.1 200"),
        "a 1 MiB header was served: {}",
        head.lines().next().unwrap_or("")
    );
    // Half a request left hanging holds one slot, not the endpoint.
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /metr").await.expect("write");
    let (status, _, body) = scrape(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(has_family(&body, "rabbitmq_queues"));
}
