//! Transient spill: under memory pressure (or in a lazy queue) the messages a queue cannot page
//! to the store (transient ones, and all of a non-durable queue's) go to scratch files under
//! the data directory, come back in order, and are gone after a restart. The brokers here set
//! the paging ratio to 0, so memory is always "short", and keep 16 messages in memory.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use crate::process::{temp_dir, Warren};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

const WINDOW: usize = 16;

struct Broker {
    url: String,
    mgmt: String,
    dir: std::path::PathBuf,
}

fn broker(paging_ratio: f64) -> Broker {
    let dir = temp_dir("spill");
    let (url, mgmt) = spawn_broker(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        data_dir: Some(dir.clone()),
        queue_ram_messages: WINDOW,
        paging_ratio,
        ..Default::default()
    });
    Broker {
        url,
        mgmt: mgmt.expect("management port"),
        dir,
    }
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("m{i:06}:").into_bytes();
    b.resize(1024, b'.');
    b
}

fn label(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(7)]).into_owned()
}

/// Publish `props(i)` messages `from..to` with confirms, in runs of 100.
async fn publish_range(
    ch: &Channel,
    q: &str,
    range: std::ops::Range<usize>,
    props: impl Fn(usize) -> BasicProperties,
) {
    let all: Vec<usize> = range.collect();
    for run in all.chunks(100) {
        let mut pending = Vec::new();
        for &i in run {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    &body(i),
                    props(i),
                )
                .await
                .expect("publish"),
            );
        }
        for p in pending {
            assert!(p.await.expect("confirm").is_ack());
        }
    }
}

/// (messages in memory, messages on disk) once something is on disk and at most `most` in
/// memory (the paging tick runs once a second), or as last seen.
async fn ram_and_paged(b: &Broker, q: &str, most: u64) -> (u64, u64) {
    let mut last = (0, 0);
    for _ in 0..50 {
        let (status, body) = http_at(
            &b.mgmt,
            Some("guest:guest"),
            "GET",
            &format!("/api/queues/%2f/{q}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let ram = body["messages_ready_ram"].as_u64().unwrap_or(0);
        let paged = body["messages_paged_out"].as_u64().unwrap_or(0);
        last = (ram, paged);
        if paged > 0 && ram <= most {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// Bytes in the spill directory.
fn spilled_bytes(dir: &std::path::Path) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(p) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    }
    walk(&dir.join("spill"))
}

async fn open(url: &str) -> (lapin::Connection, Channel) {
    let (c, ch) = channel_at(url).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    (c, ch)
}

/// Consume `n` messages with manual acks; their labels in delivery order.
async fn consume_all(ch: &Channel, q: &str, n: usize) -> Vec<(String, bool)> {
    ch.basic_qos(200, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut c = consume(ch, q, "", false).await;
    let mut out = Vec::new();
    while out.len() < n {
        let d = next(&mut c).await;
        out.push((label(&d.data), d.redelivered));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    out
}

fn labels(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| label(&body(i))).collect()
}

#[tokio::test]
async fn transient_messages_spill_under_memory_pressure_and_come_back_in_order() {
    if external() {
        return;
    }
    let b = broker(0.0);
    let (_c, ch) = open(&b.url).await;
    declare(&ch, "spill-fifo").await;
    publish_range(&ch, "spill-fifo", 0..3000, |_| BasicProperties::default()).await;
    let (ram, paged) = ram_and_paged(&b, "spill-fifo", WINDOW as u64).await;
    assert!(
        ram <= WINDOW as u64 && paged >= 2900,
        "ram {ram}, paged {paged}"
    );
    assert!(
        spilled_bytes(&b.dir) >= 2900 * 1024,
        "the bodies are on disk"
    );
    assert_eq!(message_count(&ch, "spill-fifo").await, 3000);

    let got = consume_all(&ch, "spill-fifo", 3000).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels(0..3000), "FIFO order through the spill files");
    assert!(
        got.iter().all(|(_, r)| !r),
        "never delivered before: not redelivered"
    );
    ch.queue_delete("spill-fifo".into(), Default::default())
        .await
        .expect("delete");
    assert!(
        eventually(|| spilled_bytes(&b.dir) == 0).await,
        "read and deleted: the files are gone"
    );
}

#[tokio::test]
async fn a_durable_queue_pages_persistent_messages_and_spills_transient_ones_between_them() {
    if external() {
        return;
    }
    let b = broker(0.0);
    let (_c, ch) = open(&b.url).await;
    ch.queue_declare(
        "spill-mixed".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // Runs of 7 persistent then 7 transient: the middle alternates between store and spill.
    publish_range(&ch, "spill-mixed", 0..1400, |i| {
        BasicProperties::default().with_delivery_mode(if (i / 7) % 2 == 0 { 2 } else { 1 })
    })
    .await;
    let (ram, paged) = ram_and_paged(&b, "spill-mixed", WINDOW as u64).await;
    assert!(
        ram <= WINDOW as u64 && paged >= 1300,
        "ram {ram}, paged {paged}"
    );
    assert!(
        spilled_bytes(&b.dir) >= 600 * 1024,
        "the transient half is spilled"
    );
    let got = consume_all(&ch, "spill-mixed", 1400).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels(0..1400));
}

#[tokio::test]
async fn spilled_messages_keep_their_priority_and_expiry() {
    if external() {
        return;
    }
    let b = broker(0.0);
    let (_c, ch) = open(&b.url).await;
    declare_args(&ch, "spill-prio", table(&[("x-max-priority", int(2))])).await;
    publish_range(&ch, "spill-prio", 0..900, |i| {
        BasicProperties::default().with_priority((i % 3) as u8)
    })
    .await;
    let (_, paged) = ram_and_paged(&b, "spill-prio", 3 * WINDOW as u64).await;
    assert!(paged > 800, "paged {paged}");
    let got = consume_all(&ch, "spill-prio", 900).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    let want: Vec<String> = [2, 1, 0]
        .iter()
        .flat_map(|&p| labels((0..900).filter(move |i| i % 3 == p)))
        .collect();
    assert_eq!(names, want, "highest priority first, FIFO within each");

    // Messages that expire while spilled go when they reach the head.
    declare(&ch, "spill-ttl").await;
    publish_range(&ch, "spill-ttl", 0..600, |i| {
        let p = BasicProperties::default();
        if i % 2 == 0 {
            p.with_expiration("300".into())
        } else {
            p
        }
    })
    .await;
    let (_, paged) = ram_and_paged(&b, "spill-ttl", WINDOW as u64).await;
    assert!(paged > 500, "paged {paged}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let got = consume_all(&ch, "spill-ttl", 300).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels((0..600).filter(|i| i % 2 == 1)));
    assert_eq!(message_count(&ch, "spill-ttl").await, 0);
}

#[tokio::test]
async fn purge_counts_spilled_messages_and_the_queue_goes_on() {
    if external() {
        return;
    }
    let b = broker(0.0);
    let (_c, ch) = open(&b.url).await;
    declare(&ch, "spill-purge").await;
    publish_range(&ch, "spill-purge", 0..1000, |_| BasicProperties::default()).await;
    let (_, paged) = ram_and_paged(&b, "spill-purge", WINDOW as u64).await;
    assert!(paged > 900, "paged {paged}");
    let purged = ch
        .queue_purge("spill-purge".into(), Default::default())
        .await
        .expect("purge");
    assert_eq!(purged, 1000);
    assert_eq!(spilled_bytes(&b.dir), 0, "a purge drops the files");
    publish_range(&ch, "spill-purge", 1000..1500, |_| {
        BasicProperties::default()
    })
    .await;
    let got = consume_all(&ch, "spill-purge", 500).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels(1000..1500));
}

#[tokio::test]
async fn without_memory_pressure_only_lazy_queues_spill() {
    if external() {
        return;
    }
    // The default paging ratio: this machine's memory is far from half the watermark.
    let b = broker(warren::config::DEFAULT_PAGING_RATIO);
    let (_c, ch) = open(&b.url).await;
    declare(&ch, "spill-plain").await;
    let lazy = table(&[("x-queue-mode", AMQPValue::LongString("lazy".into()))]);
    declare_args(&ch, "spill-lazy", lazy).await;
    for q in ["spill-plain", "spill-lazy"] {
        publish_range(&ch, q, 0..500, |_| BasicProperties::default()).await;
    }
    let (_, paged) = ram_and_paged(&b, "spill-lazy", WINDOW as u64).await;
    assert!(paged > 0, "a lazy queue spills");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (ram, paged) = ram_and_paged(&b, "spill-plain", 0).await;
    assert_eq!(
        (ram, paged),
        (500, 0),
        "a plain queue keeps its messages in memory"
    );
    let got = consume_all(&ch, "spill-lazy", 500).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels(0..500));
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |k| k * 1024)
}

#[tokio::test]
async fn a_spilled_backlog_keeps_memory_flat_and_is_gone_after_a_restart() {
    if external() {
        return;
    }
    let dir = temp_dir("spill-restart");
    let flags = [
        "--vm-memory-high-watermark-paging-ratio",
        "0",
        "--queue-ram-messages",
        "64",
    ];
    let w = Warren::start(&dir, &flags).await;
    let (c, ch) = open(&w.url()).await;
    ch.queue_declare(
        "spill-restart".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let persistent = |_| BasicProperties::default().with_delivery_mode(2);
    let big = vec![b'x'; 4096];
    publish_range(&ch, "spill-restart", 0..100, persistent).await;
    // 160 MB of transient messages: far more than the broker's memory stays at.
    for run in 0..400 {
        let mut pending = Vec::new();
        for _ in 0..100 {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    "spill-restart".into(),
                    BasicPublishOptions::default(),
                    &big,
                    BasicProperties::default(),
                )
                .await
                .expect("publish"),
            );
        }
        for p in pending {
            assert!(p.await.expect("confirm").is_ack(), "run {run}");
        }
    }
    publish_range(&ch, "spill-restart", 100..200, persistent).await;
    assert_eq!(message_count(&ch, "spill-restart").await, 40_200);
    let rss = rss_of(w.child.id());
    assert!(rss < 100 << 20, "RSS {} MiB with 160 MB queued", rss >> 20);
    assert!(
        spilled_bytes(&dir) >= 150_000_000,
        "the transient bodies are on disk"
    );
    c.close(200, "bye".into()).await.expect("close");

    w.stop().await;
    let w = Warren::start(&dir, &flags).await;
    assert_eq!(spilled_bytes(&dir), 0, "boot drops what was spilled");
    let (_c, ch) = open(&w.url()).await;
    assert_eq!(message_count(&ch, "spill-restart").await, 200);
    let got = consume_all(&ch, "spill-restart", 200).await;
    let names: Vec<String> = got.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(names, labels(0..200), "the persistent messages, in order");
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
