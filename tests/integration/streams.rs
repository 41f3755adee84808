//! Stream queues over AMQP 0-9-1: offsets, credit, retention, refusals and recovery, checked
//! against RabbitMQ 3.10.8's streams where it has them (filtering is RabbitMQ 3.13's, and
//! retention on a test clock and kill -9 are Warren-only).

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use crate::process::{temp_dir, Warren};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::time::Duration;

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = table(&[("x-queue-type", s("stream"))]);
    for (k, v) in extra {
        t.insert((*k).into(), v.clone());
    }
    t
}

async fn declare_stream(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        stream_args(extra),
    )
    .await
    .expect("declare stream");
}

/// Publish bodies with confirms (all must be acked).
async fn append(ch: &Channel, q: &str, bodies: &[String], props: BasicProperties) {
    let mut pending = Vec::new();
    for b in bodies {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.into(),
                Default::default(),
                b.as_bytes(),
                props.clone(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(p.await.expect("confirm").is_ack());
    }
}

async fn confirming(url: &str) -> (lapin::Connection, Channel) {
    let (c, ch) = channel_at(url).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    (c, ch)
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn offset_of(d: &lapin::message::Delivery) -> i64 {
    let h = d.properties.headers().clone().unwrap_or_default();
    match h.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset header: {other:?}"),
    }
}

/// A consumer on its own channel with a prefetch, starting at `offset` (None: no argument).
async fn reader(
    conn: &lapin::Connection,
    q: &str,
    offset: Option<AMQPValue>,
    extra: &[(&str, AMQPValue)],
) -> (Channel, lapin::Consumer) {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut args = table(extra);
    if let Some(o) = offset {
        args.insert("x-stream-offset".into(), o);
    }
    let c = ch
        .basic_consume(q.into(), "".into(), BasicConsumeOptions::default(), args)
        .await
        .expect("consume");
    (ch, c)
}

/// Take deliveries (acking them) until none comes for `quiet_ms`: (offset, body) each.
async fn take(c: &mut lapin::Consumer, quiet_ms: u64) -> Vec<(i64, String)> {
    use futures_lite::StreamExt;
    let mut out = Vec::new();
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), c.next()).await
    {
        out.push((offset_of(&d), String::from_utf8_lossy(&d.data).into_owned()));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    out
}

fn offsets(got: &[(i64, String)]) -> Vec<i64> {
    got.iter().map(|g| g.0).collect()
}

#[tokio::test]
async fn declare_takes_only_what_a_stream_can_do() {
    let name = uniq("st-decl");
    /// durable, exclusive, auto-delete, arguments, what the refusal says.
    type Case = (
        bool,
        bool,
        bool,
        Vec<(&'static str, AMQPValue)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            false,
            false,
            false,
            vec![],
            "invalid property 'non-durable'",
        ),
        (
            true,
            true,
            false,
            vec![],
            "invalid property 'exclusive-owner'",
        ),
        (true, false, true, vec![], "invalid property 'auto-delete'"),
        (
            true,
            false,
            false,
            vec![("x-message-ttl", int(1000))],
            "invalid arg 'x-message-ttl'",
        ),
        (
            true,
            false,
            false,
            vec![("x-max-length", int(10))],
            "of queue type rabbit_stream_queue",
        ),
        (
            true,
            false,
            false,
            vec![("x-max-age", s("7X"))],
            "invalid arg 'x-max-age' for queue",
        ),
        (
            true,
            false,
            false,
            vec![("x-max-age", int(7))],
            "{unacceptable_type,",
        ),
        (
            true,
            false,
            false,
            vec![("x-stream-max-segment-size-bytes", int(-1))],
            "{value_negative,-1}",
        ),
    ];
    for (durable, exclusive, auto_delete, extra, expected) in cases {
        // Each refusal closes its channel.
        let (_c, ch) = channel().await;
        let r = ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable,
                    exclusive,
                    auto_delete,
                    ..Default::default()
                },
                stream_args(&extra),
            )
            .await;
        let e = assert_code(r, 406);
        assert!(text(&e).contains(expected), "{expected}: {}", text(&e));
    }
    let (_c, ch) = channel().await;
    declare_stream(&ch, &name, &[("x-max-age", s("7D"))]).await;
    // Redeclared with other retention: inequivalent.
    let r = ch
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            stream_args(&[("x-max-age", s("1D"))]),
        )
        .await;
    assert!(text(&assert_code(r, 406)).contains("inequivalent arg 'x-max-age'"));
    let (_c, ch) = channel().await;
    cleanup(&ch, &[&name]).await;
}

#[tokio::test]
async fn consumers_start_at_first_next_an_offset_or_last_and_see_their_offsets() {
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-offsets");
    declare_stream(&ch, &q, &[]).await;
    append(&ch, &q, &bodies("m", 5), persistent()).await;
    let (_a, mut first) = reader(&conn, &q, Some(s("first")), &[]).await;
    let got = take(&mut first, 500).await;
    assert_eq!(offsets(&got), vec![0, 1, 2, 3, 4]);
    assert_eq!(got[3].1, "m3");
    let (_b, mut from2) = reader(&conn, &q, Some(AMQPValue::LongLongInt(2)), &[]).await;
    assert_eq!(offsets(&take(&mut from2, 500).await), vec![2, 3, 4]);
    let (_c, mut last) = reader(&conn, &q, Some(s("last")), &[]).await;
    let got = offsets(&take(&mut last, 500).await);
    assert_eq!(
        got.last(),
        Some(&4),
        "last starts at the last chunk: {got:?}"
    );
    let (_d, mut next) = reader(&conn, &q, Some(s("next")), &[]).await;
    let (_e, mut default) = reader(&conn, &q, None, &[]).await;
    let (_f, mut ahead) = reader(&conn, &q, Some(AMQPValue::LongLongInt(6)), &[]).await;
    assert!(quiet(&mut next, 300).await && quiet(&mut default, 10).await);
    append(&ch, &q, &bodies("late", 2), persistent()).await;
    assert_eq!(
        take(&mut next, 500).await,
        vec![(5, "late0".into()), (6, "late1".into())]
    );
    assert_eq!(offsets(&take(&mut default, 500).await), vec![5, 6]);
    // An offset beyond the end waits for it.
    assert_eq!(offsets(&take(&mut ahead, 500).await), vec![6]);
    // The first consumer, still there, read on too; nothing was removed by its acks.
    assert_eq!(offsets(&take(&mut first, 500).await), vec![5, 6]);
    let (_g, mut again) = reader(&conn, &q, Some(s("first")), &[]).await;
    assert_eq!(take(&mut again, 500).await.len(), 7);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn timestamps_and_intervals_pick_where_to_start() {
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-time");
    declare_stream(&ch, &q, &[]).await;
    append(&ch, &q, &bodies("old", 3), persistent()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    append(&ch, &q, &bodies("new", 2), persistent()).await;
    let (_a, mut since) = reader(&conn, &q, Some(AMQPValue::Timestamp(now)), &[]).await;
    let got = take(&mut since, 500).await;
    assert_eq!(got, vec![(3, "new0".into()), (4, "new1".into())]);
    let (_b, mut minute) = reader(&conn, &q, Some(s("1m")), &[]).await;
    assert_eq!(take(&mut minute, 500).await.len(), 5);
    let (_c, mut future) = reader(&conn, &q, Some(AMQPValue::Timestamp(now + 3600)), &[]).await;
    assert!(quiet(&mut future, 300).await);
    // Not an offset spec: 406 with RabbitMQ's explanation.
    for bad in [s("0s"), s("1")] {
        let args = table(&[("x-stream-offset", bad)]);
        let why = refused_consume(&q, Some(10), false, args, 406).await;
        assert!(why.contains("invalid_stream_offset_arg"), "{why}");
    }
    cleanup(&ch, &[&q]).await;
}

/// basic.consume on a fresh connection (after basic.qos when `prefetch` is set): the code and
/// text of the refusal.
async fn refused_consume(
    q: &str,
    prefetch: Option<u16>,
    no_ack: bool,
    args: FieldTable,
    code: u16,
) -> String {
    let (_c, ch) = channel().await;
    if let Some(p) = prefetch {
        ch.basic_qos(p, Default::default()).await.expect("qos");
    }
    let options = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    let r = ch.basic_consume(q.into(), "".into(), options, args).await;
    text(&assert_code(r, code))
}

#[tokio::test]
async fn what_streams_refuse_is_refused_with_rabbitmqs_codes() {
    let q = uniq("st-refuse");
    {
        let (_c, ch) = channel().await;
        declare_stream(&ch, &q, &[]).await;
    }
    // basic.get: 540, the connection closes.
    let (_c, ch) = channel().await;
    let r = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await;
    assert!(text(&assert_code(r, 540)).contains("basic.get not supported by stream queues"));
    let none = FieldTable::default;
    let cases = [
        // No prefetch: 406. Automatic acknowledgement: 540. Consumer priorities: 406.
        (
            None,
            false,
            none(),
            406,
            "consumer prefetch count is not set",
        ),
        (
            Some(10),
            true,
            none(),
            540,
            "automatic acknowledgement not supported",
        ),
        (
            Some(10),
            false,
            table(&[("x-priority", int(3))]),
            406,
            "invalid arg 'x-priority'",
        ),
    ];
    for (prefetch, no_ack, args, code, expected) in cases {
        let why = refused_consume(&q, prefetch, no_ack, args, code).await;
        assert!(why.contains(expected), "{expected}: {why}");
    }
    // queue.purge: 540.
    let (_c, ch) = channel().await;
    let r = ch
        .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
        .await;
    assert!(text(&assert_code(r, 540)).contains("queue.purge not supported by stream queues"));
    if !external() {
        // RabbitMQ 3.10.8 answers these with 541 (a crash in its offset parsing); Warren says
        // what is wrong.
        for bad in [s("bogus"), AMQPValue::Boolean(true)] {
            let args = table(&[("x-stream-offset", bad)]);
            let why = refused_consume(&q, Some(10), false, args, 406).await;
            assert!(why.contains("invalid_stream_offset_arg"), "{why}");
        }
    }
    let (_c, ch) = channel().await;
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn acks_only_return_credit_and_nothing_is_removed() {
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-credit");
    declare_stream(&ch, &q, &[]).await;
    append(&ch, &q, &bodies("c", 6), persistent()).await;
    let rch = conn.create_channel().await.expect("channel");
    rch.basic_qos(2, Default::default()).await.expect("qos");
    let first = table(&[("x-stream-offset", s("first"))]);
    let mut c = rch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            Default::default(),
            first.clone(),
        )
        .await
        .expect("consume");
    let a = next(&mut c).await;
    let b = next(&mut c).await;
    assert_eq!((offset_of(&a), offset_of(&b)), (0, 1));
    if !external() {
        // RabbitMQ gives credit per chunk, so it may send a little past the prefetch.
        assert!(quiet(&mut c, 300).await, "prefetch 2 holds the third");
    }
    a.ack(Default::default()).await.expect("ack");
    b.ack(Default::default()).await.expect("ack");
    let mut rest = Vec::new();
    while rest.len() < 4 {
        let d = next(&mut c).await;
        rest.push(offset_of(&d));
        d.ack(Default::default()).await.expect("ack");
    }
    assert_eq!(rest, vec![2, 3, 4, 5]);
    assert!(take(&mut c, 300).await.is_empty());
    // Acked, and all still there for the next reader.
    let (_r, mut again) = reader(&conn, &q, Some(s("first")), &[]).await;
    assert_eq!(take(&mut again, 400).await.len(), 6);
    // basic.nack and basic.reject: 540, the connection closes.
    for reject in [false, true] {
        let (rc, rch) = channel().await;
        rch.basic_qos(2, Default::default()).await.expect("qos");
        let mut c = rch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                Default::default(),
                first.clone(),
            )
            .await
            .expect("consume");
        let d = next(&mut c).await;
        if reject {
            let _ = d.reject(BasicRejectOptions { requeue: true }).await;
        } else {
            let _ = d.nack(Default::default()).await;
        }
        let closed = rch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        );
        let e = assert_code(closed.await, 540);
        assert!(
            text(&e).contains("basic.nack and basic.reject not supported"),
            "{e}"
        );
        drop(rc);
    }
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn filters_pick_values_and_optionally_unfiltered_messages() {
    if external() {
        return; // stream filtering is RabbitMQ 3.13's; 3.10.8 ignores the arguments
    }
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-filter");
    declare_stream(&ch, &q, &[]).await;
    for (i, value) in ["eu", "us", "", "eu", "apac", ""].iter().enumerate() {
        let props = if value.is_empty() {
            persistent()
        } else {
            persistent().with_headers(table(&[("x-stream-filter-value", s(value))]))
        };
        append(&ch, &q, &[format!("{i}")], props).await;
    }
    let first = || Some(s("first"));
    let (_a, mut eu) = reader(&conn, &q, first(), &[("x-stream-filter", s("eu"))]).await;
    assert_eq!(offsets(&take(&mut eu, 400).await), vec![0, 3]);
    let list = AMQPValue::FieldArray(vec![s("us"), s("apac")].into());
    let (_b, mut two) = reader(&conn, &q, first(), &[("x-stream-filter", list)]).await;
    assert_eq!(offsets(&take(&mut two, 400).await), vec![1, 4]);
    let (_c, mut with_unfiltered) = reader(
        &conn,
        &q,
        first(),
        &[
            ("x-stream-filter", s("eu")),
            ("x-stream-match-unfiltered", AMQPValue::Boolean(true)),
        ],
    )
    .await;
    assert_eq!(
        offsets(&take(&mut with_unfiltered, 400).await),
        vec![0, 2, 3, 5]
    );
    let (_d, mut all) = reader(&conn, &q, first(), &[]).await;
    assert_eq!(take(&mut all, 400).await.len(), 6);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn retention_by_size_drops_whole_old_segments() {
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-size");
    declare_stream(
        &ch,
        &q,
        &[
            ("x-stream-max-segment-size-bytes", int(2000)),
            ("x-max-length-bytes", int(6000)),
        ],
    )
    .await;
    let pad = "x".repeat(200);
    for run in 0..10 {
        let msgs: Vec<String> = (0..10)
            .map(|i| format!("{:02}{pad}", run * 10 + i))
            .collect();
        append(&ch, &q, &msgs, persistent()).await;
    }
    // Retention runs as segments roll (RabbitMQ) or on the next tick (Warren).
    let mut first_seen = 0;
    let mut kept = 0;
    for _ in 0..20 {
        let (rch, mut c) = reader(&conn, &q, Some(s("first")), &[]).await;
        let got = take(&mut c, 300).await;
        let _ = rch.close(200, "done".into()).await;
        let last = got.last().map(|g| g.1[..2].to_string());
        assert_eq!(last.as_deref(), Some("99"), "the newest are kept");
        first_seen = got[0].0;
        kept = got.len();
        if kept < 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        kept < 50,
        "old segments dropped: {kept} kept, from offset {first_seen}"
    );
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn retention_by_age_follows_the_test_clock() {
    if external() {
        return;
    }
    let b = warren::testing::TestBroker::start().await;
    let (conn, ch) = confirming(&b.url()).await;
    let q = "aged";
    declare_stream(
        &ch,
        q,
        &[
            ("x-stream-max-segment-size-bytes", int(1000)),
            ("x-max-age", s("10s")),
        ],
    )
    .await;
    let body = "y".repeat(200);
    append(&ch, q, &vec![body.clone(); 20], persistent()).await;
    b.advance(Duration::from_secs(11));
    append(&ch, q, &vec![body; 20], persistent()).await;
    let mut start = 0;
    for _ in 0..40 {
        let (rch, mut c) = reader(&conn, q, Some(s("first")), &[]).await;
        let got = take(&mut c, 200).await;
        let _ = rch.close(200, "done".into()).await;
        start = got[0].0;
        assert_eq!(got.len() as i64, 40 - start, "nothing newer lost");
        if start > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whole segments go: the one holding both old and new messages stays.
    assert!(
        (12..=20).contains(&start),
        "segments older than 10 s dropped; starts at {start}"
    );
}

#[tokio::test]
async fn a_consumer_far_behind_reads_from_disk_in_order() {
    if external() {
        return;
    }
    // A window of 8 messages: almost every read comes from the segments.
    static B: std::sync::OnceLock<(String, Option<String>)> = std::sync::OnceLock::new();
    let url = B
        .get_or_init(|| {
            spawn_broker(warren::Config {
                port: 0,
                queue_ram_messages: 8,
                ..Default::default()
            })
        })
        .0
        .clone();
    let (conn, ch) = confirming(&url).await;
    let q = uniq("st-behind");
    declare_stream(&ch, &q, &[("x-stream-max-segment-size-bytes", int(4096))]).await;
    for run in 0..10 {
        append(&ch, &q, &bodies(&format!("r{run}-"), 100), persistent()).await;
    }
    let (_a, mut c) = reader(&conn, &q, Some(AMQPValue::LongLongInt(0)), &[]).await;
    let got = take(&mut c, 500).await;
    assert_eq!(offsets(&got), (0..1000).collect::<Vec<_>>());
    assert_eq!(got[457].1, "r4-57");
}

#[tokio::test]
async fn the_management_api_shows_a_stream() {
    let Some(mgmt) = mgmt_addr() else {
        return;
    };
    let (_conn, ch) = confirming(&url()).await;
    let q = uniq("st-mgmt");
    declare_stream(&ch, &q, &[]).await;
    append(&ch, &q, &bodies("m", 4), persistent()).await;
    let path = format!("/api/queues/%2F/{q}");
    let mut body = serde_json::Value::Null;
    // RabbitMQ refreshes queue stats every few seconds.
    for _ in 0..60 {
        body = http_at(&mgmt, Some("guest:guest"), "GET", &path, None)
            .await
            .1;
        if body["messages"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(body["type"], "stream");
    assert_eq!(body["messages"], 4);
    if !external() {
        assert_eq!(body["segments"], 1);
        assert_eq!(body["first_offset"], 0);
        assert_eq!(body["last_offset"], 3);
        assert!(body["message_bytes"].as_u64().is_some_and(|b| b > 0));
    }
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn a_kill_9_and_a_torn_tail_lose_no_confirmed_message() {
    if external() {
        return;
    }
    let dir = temp_dir("stream-kill");
    let w = Warren::start(&dir, &[]).await;
    let mut confirmed = Vec::new();
    {
        let (_c, ch) = confirming(&w.url()).await;
        declare_stream(
            &ch,
            "log",
            &[("x-stream-max-segment-size-bytes", int(20_000))],
        )
        .await;
        let mut inflight = std::collections::VecDeque::new();
        for id in 0..3000usize {
            let p = ch
                .basic_publish(
                    "".into(),
                    "log".into(),
                    Default::default(),
                    id.to_string().as_bytes(),
                    BasicProperties::default(),
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
    // A write the crash cut in half: garbage at the end of the newest segment.
    let segments: Vec<_> = walk(&dir.join("streams"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert!(segments.len() > 2, "several segments: {segments:?}");
    let newest = segments.iter().max().expect("a segment");
    let mut bytes = std::fs::read(newest).expect("read");
    bytes.extend_from_slice(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(newest, bytes).expect("tear");
    let w = Warren::start(&dir, &[]).await;
    let (conn, ch) = confirming(&w.url()).await;
    let (_r, mut c) = reader(&conn, "log", Some(s("first")), &[]).await;
    let got = take(&mut c, 700).await;
    assert!(confirmed.len() > 2000, "confirmed {}", confirmed.len());
    let ids: Vec<usize> = got.iter().map(|g| g.1.parse().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert_eq!(offsets(&got), (0..got.len() as i64).collect::<Vec<_>>());
    let have: std::collections::HashSet<_> = ids.iter().copied().collect();
    let lost: Vec<_> = confirmed.iter().filter(|id| !have.contains(id)).collect();
    assert!(lost.is_empty(), "confirmed and lost: {lost:?}");
    // The log goes on from where it was cut.
    append(&ch, "log", &["after".to_string()], persistent()).await;
    let tail = take(&mut c, 500).await;
    assert_eq!(tail, vec![(got.len() as i64, "after".to_string())]);
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_policy_sets_a_streams_retention() {
    let Some(mgmt) = mgmt_addr() else {
        return;
    };
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-policy");
    declare_stream(&ch, &q, &[("x-stream-max-segment-size-bytes", int(2000))]).await;
    let pad = "p".repeat(200);
    let run = |from: usize| -> Vec<String> {
        (from..from + 10).map(|i| format!("{i:03}{pad}")).collect()
    };
    for r in 0..10 {
        append(&ch, &q, &run(r * 10), persistent()).await;
    }
    let policy = format!("/api/policies/%2F/{q}");
    let body = serde_json::json!({
        "pattern": format!("^{q}$"), "apply-to": "queues",
        "definition": {"max-length-bytes": 6000}
    });
    let (status, _) = http_at(&mgmt, Some("guest:guest"), "PUT", &policy, Some(body)).await;
    assert!(status == 201 || status == 204, "{status}");
    let mut kept = 100;
    for i in 0..20 {
        // RabbitMQ applies retention when a segment rolls: keep appending a little.
        append(&ch, &q, &run(100 + i * 10), persistent()).await;
        let (rch, mut c) = reader(&conn, &q, Some(s("first")), &[]).await;
        let got = take(&mut c, 300).await;
        let _ = rch.close(200, "done".into()).await;
        kept = got.len();
        if kept < 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(kept < 60, "the policy's limit applies: {kept} kept");
    http_at(&mgmt, Some("guest:guest"), "DELETE", &policy, None).await;
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn a_reset_that_keeps_the_topology_empties_a_stream() {
    if external() {
        return;
    }
    let b = warren::start(warren::Config {
        port: 0,
        mgmt_port: None,
        ..Default::default()
    })
    .await
    .expect("start");
    {
        let (_c, ch) = confirming(&b.url()).await;
        declare_stream(&ch, "events", &[]).await;
        append(&ch, "events", &bodies("before", 3), persistent()).await;
    }
    b.reset(true).await.expect("reset");
    let (conn, ch) = confirming(&b.url()).await;
    let (_r, mut c) = reader(&conn, "events", Some(s("first")), &[]).await;
    assert!(quiet(&mut c, 300).await, "nothing from before the reset");
    append(&ch, "events", &["after".to_string()], persistent()).await;
    assert_eq!(take(&mut c, 400).await, vec![(0, "after".to_string())]);
}

#[tokio::test]
async fn a_filter_far_from_its_match_still_finds_it() {
    if external() {
        return; // stream filtering is RabbitMQ 3.13's
    }
    let (conn, ch) = confirming(&url()).await;
    let q = uniq("st-far-filter");
    declare_stream(&ch, &q, &[]).await;
    // More non-matching messages than one search passes over: the search resumes.
    for run in 0..5 {
        append(
            &ch,
            &q,
            &bodies(&format!("other{run}-"), 10_000),
            persistent(),
        )
        .await;
    }
    let wanted = persistent().with_headers(table(&[("x-stream-filter-value", s("needle"))]));
    append(&ch, &q, &["found".to_string()], wanted).await;
    let filter = [("x-stream-filter", s("needle"))];
    let (_r, mut c) = reader(&conn, &q, Some(s("first")), &filter).await;
    let d = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_lite::StreamExt;
        c.next().await
    })
    .await
    .expect("found within 10 s")
    .expect("open")
    .expect("delivery");
    assert_eq!((offset_of(&d), &d.data[..]), (50_000, &b"found"[..]));
    cleanup(&ch, &[&q]).await;
}
