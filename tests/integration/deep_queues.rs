//! Queues deeper than their in-memory window: the persistent messages in the middle of a durable
//! queue page out to the store and come back in order. Against Warren these tests run on a
//! broker whose queues keep 8 messages in memory, so a few hundred messages page; against
//! RabbitMQ (`WARREN_TEST_AMQP_URL`) the same behaviour is checked on its classic queues.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use crate::process::{temp_dir, Warren};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::sync::OnceLock;

const WINDOW: usize = 8;

/// (AMQP URL, management address) of the broker for these tests.
fn deep() -> (String, Option<String>) {
    if external() {
        return (url(), mgmt_addr());
    }
    static B: OnceLock<(String, Option<String>)> = OnceLock::new();
    B.get_or_init(|| {
        spawn_broker(warren::Config {
            port: 0,
            mgmt_port: Some(0),
            queue_ram_messages: WINDOW,
            ..Default::default()
        })
    })
    .clone()
}

async fn open() -> (lapin::Connection, Channel) {
    let (c, ch) = channel_at(&deep().0).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    (c, ch)
}

async fn durable(ch: &Channel, name: &str, args: FieldTable) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare");
    name.to_string()
}

/// Publish persistent messages in confirmed runs of 25; how many were acked (the rest nacked).
async fn publish_all(ch: &Channel, q: &str, msgs: &[(String, BasicProperties)]) -> usize {
    let mut acked = 0;
    for run in msgs.chunks(25) {
        let mut pending = Vec::new();
        for (body, props) in run {
            let p = ch
                .basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props.clone().with_delivery_mode(2),
                )
                .await
                .expect("publish");
            pending.push(p);
        }
        for p in pending {
            if p.await.expect("confirm").is_ack() {
                acked += 1;
            }
        }
    }
    acked
}

fn numbered(n: usize) -> Vec<(String, BasicProperties)> {
    (0..n)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// A durable queue (with `args`) that dead-letters to a fresh durable queue: (queue, dead
/// letter queue).
async fn with_dlq(ch: &Channel, prefix: &str, args: &[(&str, AMQPValue)]) -> (String, String) {
    let dlq = durable(ch, &uniq(&format!("{prefix}-dlq")), FieldTable::default()).await;
    let mut all = vec![
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(&dlq)),
    ];
    all.extend(args.iter().cloned());
    (durable(ch, &uniq(prefix), table(&all)).await, dlq)
}

/// Dead letters in `dlq` as (body, x-death reason), until `n` arrived or `patience` quiet
/// seconds passed (dead letters travel between queues asynchronously).
async fn dead_letters(ch: &Channel, dlq: &str, n: usize, patience: usize) -> Vec<(String, String)> {
    let mut dead = Vec::new();
    for _ in 0..patience {
        while let Some(m) = get_within(ch, dlq, true).await {
            let reason = str_of(&death(&m.delivery, 0), "reason");
            dead.push((
                String::from_utf8_lossy(&m.delivery.data).into_owned(),
                reason,
            ));
            if dead.len() == n {
                return dead;
            }
        }
    }
    dead
}

fn bodies(dead: &[(String, String)]) -> Vec<String> {
    dead.iter().map(|(b, _)| b.clone()).collect()
}

/// The queue as the management API shows it (Warren's own broker only).
async fn shown(q: &str) -> Option<serde_json::Value> {
    if external() {
        return None;
    }
    let mgmt = deep().1?;
    let (status, body) = http_at(
        &mgmt,
        Some("guest:guest"),
        "GET",
        &format!("/api/queues/%2f/{q}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Some(body)
}

/// On Warren: the queue has paged out most of its `depth` ready messages, and keeps few in
/// memory (the window holds per priority level).
async fn assert_paged(q: &str, depth: usize) {
    assert_paged_levels(q, depth, 1).await
}

async fn assert_paged_levels(q: &str, depth: usize, levels: usize) {
    if external() {
        return;
    }
    let mut last = serde_json::Value::Null;
    for _ in 0..40 {
        last = shown(q).await.expect("shown");
        let paged = last["messages_paged_out"].as_u64().unwrap_or(0) as usize;
        let ram = last["messages_ready_ram"].as_u64().unwrap_or(u64::MAX) as usize;
        if paged + ram == depth && ram <= 2 * WINDOW * levels {
            assert_eq!(last["messages_ready"].as_u64(), Some(depth as u64));
            assert!(last["message_bytes_paged_out"].as_u64() > Some(0));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{q} did not page out: {last}");
}

#[tokio::test]
async fn a_deep_queue_keeps_fifo_order_through_its_paged_middle() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-fifo"), FieldTable::default()).await;
    assert_eq!(publish_all(&ch, &q, &numbered(400)).await, 400);
    assert_paged(&q, 400).await;
    assert_eq!(message_count(&ch, &q).await, 400);
    // Take some, publish more behind the paged middle, then take the rest.
    let mut got = Vec::new();
    for _ in 0..150 {
        got.push(get(&ch, &q).await.expect("message"));
    }
    let more: Vec<_> = (400..600)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect();
    assert_eq!(publish_all(&ch, &q, &more).await, 200);
    got.extend(drain(&ch, &q).await);
    assert_eq!(got, names(0..600));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn a_consumer_drains_a_deep_queue_in_order() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-consume"), FieldTable::default()).await;
    assert_eq!(publish_all(&ch, &q, &numbered(500)).await, 500);
    assert_paged(&q, 500).await;
    ch.basic_qos(50, Default::default()).await.expect("qos");
    let mut consumer = consume(&ch, &q, "deep", false).await;
    let mut got = Vec::new();
    while got.len() < 500 {
        let d = next(&mut consumer).await;
        got.push(String::from_utf8_lossy(&d.data).into_owned());
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    assert_eq!(got, names(0..500));
    assert!(quiet(&mut consumer, 100).await);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn priorities_hold_across_paged_messages() {
    let (_c, ch) = open().await;
    let q = durable(
        &ch,
        &uniq("deep-prio"),
        table(&[("x-max-priority", int(3))]),
    )
    .await;
    let msgs: Vec<_> = (0..300)
        .map(|i| {
            let p = (i % 4) as u8;
            (
                format!("p{p}-{i}"),
                BasicProperties::default().with_priority(p),
            )
        })
        .collect();
    assert_eq!(publish_all(&ch, &q, &msgs).await, 300);
    assert_paged_levels(&q, 300, 4).await;
    let mut expected: Vec<(u8, usize, String)> = (0..300)
        .map(|i| ((i % 4) as u8, i, format!("p{}-{i}", i % 4)))
        .collect();
    expected.sort_by_key(|(p, i, _)| (std::cmp::Reverse(*p), *i));
    let expected: Vec<String> = expected.into_iter().map(|(_, _, b)| b).collect();
    assert_eq!(drain(&ch, &q).await, expected);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn requeued_messages_return_to_their_place_before_the_paged_middle() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-requeue"), FieldTable::default()).await;
    assert_eq!(publish_all(&ch, &q, &numbered(300)).await, 300);
    assert_paged(&q, 300).await;
    let mut last = 0;
    for i in 0..20 {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get")
            .expect("message");
        assert_eq!(m.delivery.data, i.to_string().as_bytes());
        last = m.delivery.delivery_tag;
    }
    ch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    let mut got = Vec::new();
    while let Some(m) = get_within(&ch, &q, true).await {
        let body = String::from_utf8_lossy(&m.delivery.data).into_owned();
        let n: usize = body.parse().expect("number");
        assert_eq!(m.delivery.redelivered, n < 20, "message {n}");
        got.push(body);
        if got.len() == 300 {
            break;
        }
    }
    assert_eq!(got, names(0..300));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn rejected_paged_messages_are_dead_lettered_in_order() {
    let (_c, ch) = open().await;
    let (q, dlq) = with_dlq(&ch, "deep-dlx", &[]).await;
    assert_eq!(publish_all(&ch, &q, &numbered(200)).await, 200);
    assert_paged(&q, 200).await;
    for _ in 0..200 {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get")
            .expect("message");
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }
    let dead = dead_letters(&ch, &dlq, 200, 1).await;
    assert!(dead.iter().all(|(_, r)| r == "rejected"), "{dead:?}");
    assert_eq!(bodies(&dead), names(0..200));
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn max_length_drop_head_drops_from_the_front_of_a_deep_queue() {
    let (_c, ch) = open().await;
    let (q, dlq) = with_dlq(&ch, "deep-maxlen", &[("x-max-length", int(150))]).await;
    assert_eq!(publish_all(&ch, &q, &numbered(400)).await, 400);
    assert_paged(&q, 150).await;
    assert_eq!(drain(&ch, &q).await, names(250..400));
    assert_eq!(
        bodies(&dead_letters(&ch, &dlq, 250, 1).await),
        names(0..250)
    );
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn max_length_bytes_counts_paged_bodies() {
    let (_c, ch) = open().await;
    let q = durable(
        &ch,
        &uniq("deep-maxbytes"),
        table(&[("x-max-length-bytes", int(1000))]),
    )
    .await;
    // Bodies of 10 bytes: 100 fit.
    let msgs: Vec<_> = (0..300)
        .map(|i| (format!("{i:010}"), BasicProperties::default()))
        .collect();
    assert_eq!(publish_all(&ch, &q, &msgs).await, 300);
    assert_paged(&q, 100).await;
    let expected: Vec<String> = (200..300).map(|i| format!("{i:010}")).collect();
    assert_eq!(drain(&ch, &q).await, expected);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn reject_publish_and_reject_publish_dlx_count_the_paged_middle() {
    let (_c, ch) = open().await;
    for mode in ["reject-publish", "reject-publish-dlx"] {
        let (q, dlq) = with_dlq(
            &ch,
            "deep-rp",
            &[("x-max-length", int(120)), ("x-overflow", s(mode))],
        )
        .await;
        assert_eq!(publish_all(&ch, &q, &numbered(300)).await, 120, "{mode}");
        assert_paged(&q, 120).await;
        assert_eq!(drain(&ch, &q).await, names(0..120), "{mode}");
        let dead = bodies(&dead_letters(&ch, &dlq, 180, 1).await);
        if mode == "reject-publish" {
            assert!(dead.is_empty(), "{mode}: {dead:?}");
        } else {
            assert_eq!(dead, names(120..300), "{mode}");
        }
        cleanup(&ch, &[&q, &dlq]).await;
    }
}

#[tokio::test]
async fn ttl_expires_at_the_head_of_a_deep_queue() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-ttl"), FieldTable::default()).await;
    let mut msgs = numbered(200);
    msgs.extend((0..5).map(|i| {
        (
            format!("short-{i}"),
            BasicProperties::default().with_expiration("50".into()),
        )
    }));
    msgs.extend((200..300).map(|i| (i.to_string(), BasicProperties::default())));
    assert_eq!(publish_all(&ch, &q, &msgs).await, 305);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(drain(&ch, &q).await, names(0..300));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn purge_and_delete_take_the_paged_messages_with_them() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-purge"), FieldTable::default()).await;
    assert_eq!(publish_all(&ch, &q, &numbered(300)).await, 300);
    assert_paged(&q, 300).await;
    let purged = ch
        .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, 300);
    assert_eq!(message_count(&ch, &q).await, 0);
    assert_eq!(publish_all(&ch, &q, &numbered(300)).await, 300);
    assert_paged(&q, 300).await;
    assert_eq!(drain(&ch, &q).await, names(0..300));
    assert_eq!(publish_all(&ch, &q, &numbered(250)).await, 250);
    let deleted = ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted, 250);
}

/// An embedded broker on `dir` whose queues keep `WINDOW` messages in memory.
async fn start_on(dir: &std::path::Path) -> warren::BrokerHandle {
    warren::start(warren::Config {
        port: 0,
        data_dir: Some(dir.to_path_buf()),
        queue_ram_messages: WINDOW,
        ..Default::default()
    })
    .await
    .expect("start")
}

/// Segment files (`store::files`) of queue `q` in the data directory `dir`.
fn segment_files(dir: &std::path::Path, q: &str) -> usize {
    let key = format!("/\0{q}");
    let queues = dir.join("queues");
    let Ok(list) = std::fs::read_dir(&queues) else {
        return 0;
    };
    list.filter_map(|d| d.ok())
        .find(|d| std::fs::read(d.path().join("name")).is_ok_and(|n| n == key.as_bytes()))
        .and_then(|d| std::fs::read_dir(d.path()).ok())
        .map_or(0, |files| {
            files
                .filter_map(|f| f.ok())
                .filter(|f| f.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
}

#[tokio::test]
async fn a_queue_over_several_segment_files_frees_them_as_it_drains_and_keeps_the_rest() {
    if external() {
        return;
    }
    // 9,000 messages: three segment files of 4,096 positions.
    let dir = temp_dir("deep-segments");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        durable(&ch, "long", FieldTable::default()).await;
        assert_eq!(publish_all(&ch, "long", &numbered(9000)).await, 9000);
        assert_eq!(segment_files(&dir, "long"), 3);
        for i in 0..5000 {
            let m = get_within(&ch, "long", true).await.expect("message");
            assert_eq!(String::from_utf8_lossy(&m.delivery.data), i.to_string());
        }
    }
    b.stop().await.expect("stopped");
    // The first file's positions were all acked: it is gone.
    assert_eq!(segment_files(&dir, "long"), 2);
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        assert_eq!(message_count(&ch, "long").await, 4000);
        assert_eq!(drain(&ch, "long").await, names(5000..9000));
    }
    b.stop().await.expect("stopped");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        assert_eq!(message_count(&ch, "long").await, 0);
    }
    b.stop().await.expect("stopped");
    assert_eq!(segment_files(&dir, "long"), 1, "only the newest stays");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_message_routed_to_several_durable_queues_pages_out_of_each() {
    if external() {
        return;
    }
    let dir = temp_dir("deep-fanout");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        ch.exchange_declare(
            "fan".into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        for q in ["fan-a", "fan-b"] {
            durable(&ch, q, FieldTable::default()).await;
            ch.queue_bind(
                q.into(),
                "fan".into(),
                "".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        }
        for (body, props) in numbered(300) {
            ch.basic_publish(
                "fan".into(),
                "".into(),
                Default::default(),
                body.as_bytes(),
                props.with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        }
        for q in ["fan-a", "fan-b"] {
            let q = b.broker().vhost("/").and_then(|vh| vh.queue(q)).expect("q");
            q.catch_up_paging();
            let ((ram, _), (paged, _)) = q.residence();
            assert!(
                paged >= 250 && ram + paged == 300,
                "ram {ram}, paged {paged}"
            );
        }
        // One queue drains; the other keeps its own copies.
        assert_eq!(drain(&ch, "fan-a").await, names(0..300));
    }
    b.stop().await.expect("stopped");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        assert_eq!(message_count(&ch, "fan-a").await, 0);
        assert_eq!(drain(&ch, "fan-b").await, names(0..300));
    }
    b.stop().await.expect("stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn paged_messages_survive_a_restart_and_purged_ones_stay_gone() {
    if external() {
        return;
    }
    let dir = temp_dir("deep-restart");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        durable(&ch, "kept", FieldTable::default()).await;
        durable(&ch, "purged", FieldTable::default()).await;
        durable(&ch, "deleted", FieldTable::default()).await;
        assert_eq!(publish_all(&ch, "kept", &numbered(500)).await, 500);
        assert_eq!(publish_all(&ch, "purged", &numbered(300)).await, 300);
        assert_eq!(publish_all(&ch, "deleted", &numbered(300)).await, 300);
        let q = b.broker().vhost("/").and_then(|vh| vh.queue("kept"));
        let q = q.expect("kept");
        q.catch_up_paging();
        let ((ram, _), (paged, _)) = q.residence();
        assert!(
            paged >= 400 && ram + paged == 500,
            "ram {ram}, paged {paged}"
        );
        assert_eq!(
            ch.queue_purge("purged".into(), Default::default())
                .await
                .expect("purge"),
            300
        );
        assert_eq!(
            ch.queue_delete("deleted".into(), Default::default())
                .await
                .expect("delete"),
            300
        );
    }
    b.stop().await.expect("stopped");
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        let q = b.broker().vhost("/").and_then(|vh| vh.queue("kept"));
        let ((ram, _), (paged, _)) = q.expect("kept").residence();
        assert!(
            paged >= 400 && ram + paged == 500,
            "after boot: ram {ram}, paged {paged}"
        );
        let mut got = Vec::new();
        while let Some(m) = get_within(&ch, "kept", true).await {
            assert!(m.delivery.redelivered, "restored messages are redelivered");
            got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
            if got.len() == 500 {
                break;
            }
        }
        assert_eq!(got, names(0..500));
        assert_eq!(message_count(&ch, "purged").await, 0);
        durable(&ch, "deleted", FieldTable::default()).await;
        assert_eq!(message_count(&ch, "deleted").await, 0);
    }
    b.stop().await.expect("stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_kill_while_paging_loses_no_confirmed_message() {
    if external() {
        return;
    }
    let dir = temp_dir("deep-kill");
    let w = Warren::start(&dir, &["--queue-ram-messages", "8"]).await;
    let mut confirmed = Vec::new();
    {
        let (_c, ch) = channel_at(&w.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        durable(&ch, "dq", FieldTable::default()).await;
        let mut inflight = std::collections::VecDeque::new();
        for id in 0..3000usize {
            let p = ch
                .basic_publish(
                    "".into(),
                    "dq".into(),
                    BasicPublishOptions::default(),
                    id.to_string().as_bytes(),
                    persistent(),
                )
                .await
                .expect("publish");
            inflight.push_back((id, p));
            while inflight.len() > 64 {
                if let Some((id, p)) = inflight.pop_front() {
                    if p.await.is_ok_and(|c| c.is_ack()) {
                        confirmed.push(id);
                    }
                }
            }
        }
        w.kill9().await;
    }
    let w = Warren::start(&dir, &["--queue-ram-messages", "8"]).await;
    let (_c, ch) = channel_at(&w.url()).await;
    let got: Vec<usize> = drain(&ch, "dq")
        .await
        .iter()
        .map(|b| b.parse().expect("number"))
        .collect();
    assert!(confirmed.len() > 2000, "confirmed {}", confirmed.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    let have: std::collections::HashSet<_> = got.iter().copied().collect();
    let lost: Vec<_> = confirmed.iter().filter(|id| !have.contains(id)).collect();
    assert!(lost.is_empty(), "confirmed and lost: {lost:?}");
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A memory store that counts the records boot reads (returned by `recover` or read one by one).
#[derive(Debug, Default)]
struct CountingStore {
    inner: warren::store::memory::MemoryStore,
    reads: std::sync::atomic::AtomicUsize,
}

impl warren::store::Store for CountingStore {
    fn commit(&self, batch: &warren::store::Batch) -> warren::store::StoreResult<()> {
        self.inner.commit(batch)
    }

    fn recover(&self) -> warren::store::StoreResult<warren::store::Recovered> {
        let r = self.inner.recover()?;
        self.reads
            .fetch_add(r.messages.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(r)
    }

    fn index_range(
        &self,
        q: &warren::store::QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> warren::store::StoreResult<Vec<warren::store::Entry>> {
        self.inner.index_range(q, from, to, limit)
    }

    fn read_record(&self, id: u64) -> warren::store::StoreResult<Option<Vec<u8>>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_record(id)
    }
}

#[tokio::test]
async fn boot_reads_only_the_heads_of_deep_queues() {
    if external() {
        return;
    }
    let store = std::sync::Arc::new(CountingStore::default());
    let start = || {
        warren::start(warren::Config {
            port: 0,
            store: Some(store.clone()),
            queue_ram_messages: WINDOW,
            ..Default::default()
        })
    };
    let b = start().await.expect("start");
    {
        let (_c, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        durable(&ch, "deep", FieldTable::default()).await;
        durable(&ch, "deep-prio", table(&[("x-max-priority", int(2))])).await;
        assert_eq!(publish_all(&ch, "deep", &numbered(1000)).await, 1000);
        let prio: Vec<_> = (0..600)
            .map(|i| {
                let p = (i % 3) as u8;
                (
                    format!("p{p}-{i}"),
                    BasicProperties::default().with_priority(p),
                )
            })
            .collect();
        assert_eq!(publish_all(&ch, "deep-prio", &prio).await, 600);
    }
    b.stop().await.expect("stopped");
    store.reads.store(0, std::sync::atomic::Ordering::Relaxed);
    let b = start().await.expect("restart");
    let reads = store.reads.load(std::sync::atomic::Ordering::Relaxed);
    // The heads: half a window per priority level of each queue (4 levels in all).
    assert!(reads <= 4 * WINDOW, "boot read {reads} records of 1,600");
    {
        let (_c, ch) = channel_at(&b.url()).await;
        let got = drain(&ch, "deep").await;
        assert_eq!(got, names(0..1000));
        let mut expected: Vec<(u8, usize)> = (0..600).map(|i| ((i % 3) as u8, i)).collect();
        expected.sort_by_key(|(p, i)| (std::cmp::Reverse(*p), *i));
        let expected: Vec<String> = expected
            .into_iter()
            .map(|(p, i)| format!("p{p}-{i}"))
            .collect();
        assert_eq!(drain(&ch, "deep-prio").await, expected);
    }
    b.stop().await.expect("stopped");
}

#[tokio::test]
async fn messages_with_a_ttl_page_and_expire_at_the_head_in_order() {
    let (_c, ch) = open().await;
    let (q, dlq) = with_dlq(&ch, "deep-ttl-q", &[("x-message-ttl", int(2500))]).await;
    assert_eq!(publish_all(&ch, &q, &numbered(300)).await, 300);
    assert_paged(&q, 300).await;
    let dead = dead_letters(&ch, &dlq, 300, 10).await;
    assert!(dead.iter().all(|(_, r)| r == "expired"), "{dead:?}");
    assert_eq!(bodies(&dead), names(0..300));
    assert_eq!(message_count(&ch, &q).await, 0);
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn per_message_expiration_holds_for_paged_messages() {
    let (_c, ch) = open().await;
    let q = durable(&ch, &uniq("deep-exp"), FieldTable::default()).await;
    let mut msgs: Vec<_> = (0..200)
        .map(|i| {
            (
                format!("gone-{i}"),
                BasicProperties::default().with_expiration("1500".into()),
            )
        })
        .collect();
    msgs.extend(numbered(100));
    assert_eq!(publish_all(&ch, &q, &msgs).await, 300);
    assert_paged(&q, 300).await;
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(drain(&ch, &q).await, names(0..100));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn a_restart_keeps_when_paged_messages_expire() {
    if external() {
        return;
    }
    let dir = temp_dir("deep-ttl-restart");
    let b = start_on(&dir).await;
    let published = std::time::Instant::now();
    {
        let (_c, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        durable(&ch, "ttl", table(&[("x-message-ttl", int(3000))])).await;
        assert_eq!(publish_all(&ch, "ttl", &numbered(300)).await, 300);
    }
    b.stop().await.expect("stopped");
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let b = start_on(&dir).await;
    {
        let (_c, ch) = channel_at(&b.url()).await;
        assert!(ops::message_count(&ch, "ttl").await > 0, "expired too soon");
        // Due 3 s after publishing, not 3 s after the restart.
        tokio::time::sleep(
            std::time::Duration::from_millis(4200).saturating_sub(published.elapsed()),
        )
        .await;
        assert_eq!(get(&ch, "ttl").await, None);
        assert_eq!(ops::message_count(&ch, "ttl").await, 0);
    }
    b.stop().await.expect("stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On Warren's shared test broker (window 8192): the queue's own window from its arguments.
/// The queue's (messages in memory, paged out), once some are paged out and at most `most`
/// are in memory (the last publishes page out on the once-a-second tick), or as they are
/// after 4 s.
async fn ram_and_paged(q: &str, most: u64) -> Option<(u64, u64)> {
    if external() {
        return None;
    }
    let mgmt = mgmt_addr()?;
    let mut last = (0, 0);
    for _ in 0..40 {
        let (status, body) = http_at(
            &mgmt,
            Some("guest:guest"),
            "GET",
            &format!("/api/queues/%2f/{q}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let ram = body["messages_ready_ram"].as_u64().unwrap_or(0);
        let paged = body["messages_paged_out"].as_u64().unwrap_or(0);
        if paged > 0 && ram <= most {
            return Some((ram, paged));
        }
        last = (ram, paged);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some(last)
}

#[tokio::test]
async fn in_memory_limits_and_lazy_mode_set_a_queues_window() {
    let (_c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    let cases = [
        (
            "quorum, x-max-in-memory-length 10",
            table(&[
                ("x-queue-type", s("quorum")),
                ("x-max-in-memory-length", int(10)),
            ]),
            300,
            20,
        ),
        (
            "classic, x-queue-mode lazy",
            table(&[("x-queue-mode", s("lazy"))]),
            1000,
            2 * warren::queue::args::LAZY_RAM_MESSAGES,
        ),
    ];
    for (what, args, n, most_in_ram) in cases {
        let q = durable(&ch, &uniq("deep-window"), args).await;
        assert_eq!(publish_all(&ch, &q, &numbered(n)).await, n, "{what}");
        if let Some((ram, paged)) = ram_and_paged(&q, most_in_ram).await {
            assert!(
                ram <= most_in_ram && ram + paged == n as u64,
                "{what}: {ram} in memory, {paged} paged out"
            );
        }
        assert_eq!(drain(&ch, &q).await, names(0..n), "{what}");
        cleanup(&ch, &[&q]).await;
    }
}

#[tokio::test]
async fn queue_mode_and_in_memory_policies_set_the_window_at_once() {
    let Some(mgmt) = mgmt_addr() else { return };
    if external() {
        return;
    }
    let (_c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    let lazy = durable(&ch, &uniq("deep-policy-lazy"), FieldTable::default()).await;
    let quorum = durable(
        &ch,
        &uniq("deep-policy-quorum"),
        table(&[("x-queue-type", s("quorum"))]),
    )
    .await;
    assert_eq!(publish_all(&ch, &lazy, &numbered(1000)).await, 1000);
    assert_eq!(publish_all(&ch, &quorum, &numbered(300)).await, 300);
    // Under the broker's window (8192): all in memory, until a policy says otherwise.
    let cases = [
        (
            &lazy,
            serde_json::json!({"queue-mode": "lazy"}),
            1000,
            2 * warren::queue::args::LAZY_RAM_MESSAGES,
        ),
        (
            &quorum,
            serde_json::json!({"max-in-memory-length": 10}),
            300,
            20,
        ),
    ];
    for (q, definition, n, most_in_ram) in cases {
        let path = format!("/api/policies/%2f/{q}");
        let body = serde_json::json!({"pattern": format!("^{q}$"), "definition": definition, "apply-to": "queues"});
        let (status, reply) = http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(body)).await;
        assert_eq!(status, 201, "{reply}");
        let (ram, paged) = ram_and_paged(q, most_in_ram).await.expect("residence");
        assert!(
            ram <= most_in_ram && ram + paged == n as u64,
            "{q}: {ram} in memory, {paged} paged out"
        );
        assert_eq!(drain(&ch, q).await, names(0..n), "{q}");
        http_at(&mgmt, Some("guest:guest"), "DELETE", &path, None).await;
    }
    cleanup(&ch, &[&lazy, &quorum]).await;
}
