//! Quorum queues as RabbitMQ 3.10.8 runs them: where a returned message goes, and when a
//! delivery carries x-delivery-count. (Checked on both brokers with WARREN_TEST_AMQP_URL.)

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;

async fn quorum_queue(ch: &Channel, prefix: &str, delivery_limit: Option<i32>) -> String {
    let q = uniq(prefix);
    let mut args = table(&[("x-queue-type", s("quorum"))]);
    if let Some(l) = delivery_limit {
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(l));
    }
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("quorum queue");
    for body in ["a", "b", "c", "d"] {
        confirmed(
            ch,
            "".into(),
            q.as_str().into(),
            Default::default(),
            body.as_bytes(),
            Default::default(),
        )
        .await
        .expect("confirmed");
    }
    q
}

fn delivery_count(props: &lapin::BasicProperties) -> Option<i64> {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
        .and_then(|v| warren::args::as_i64(&v))
}

/// Bodies and x-delivery-count of everything ready, by basic.get.
async fn drain_counts(ch: &Channel, q: &str) -> Vec<(String, Option<i64>)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        out.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            delivery_count(&m.delivery.properties),
        ));
    }
    out
}

async fn get_unacked(ch: &Channel, q: &str) -> u64 {
    get_within(ch, q, false)
        .await
        .expect("a message")
        .delivery_tag
}

fn order(v: &[(String, Option<i64>)]) -> Vec<&str> {
    v.iter().map(|(b, _)| b.as_str()).collect()
}

#[tokio::test]
async fn what_the_client_returns_goes_to_the_back_without_a_delivery_limit() {
    let (c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    // basic.reject with requeue.
    let q = quorum_queue(&ch, "qq-reject", None).await;
    let tag = get_unacked(&ch, &q).await;
    ch.basic_reject(tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let got = drain_counts(&ch, &q).await;
    assert_eq!(order(&got), ["b", "c", "d", "a"]);
    // Every basic.get carries the count, 0 until the message came back.
    assert_eq!(got[0].1, Some(0));
    assert_eq!(got[3].1, Some(1));
    // basic.nack of several at once: they keep their order, behind the rest.
    let q2 = quorum_queue(&ch, "qq-nack", None).await;
    get_unacked(&ch, &q2).await;
    let tag = get_unacked(&ch, &q2).await;
    ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    assert_eq!(order(&drain_counts(&ch, &q2).await), ["c", "d", "a", "b"]);
    // basic.recover too.
    let q3 = quorum_queue(&ch, "qq-recover", None).await;
    let ch3 = c.create_channel().await.expect("channel");
    get_unacked(&ch3, &q3).await;
    ch3.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    assert_eq!(order(&drain_counts(&ch, &q3).await), ["b", "c", "d", "a"]);
    for q in [&q, &q2, &q3] {
        ch.queue_delete(q.as_str().into(), Default::default())
            .await
            .expect("delete");
    }
}

#[tokio::test]
async fn a_closed_channel_or_a_delivery_limit_returns_to_the_front() {
    let (c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    // The channel goes away: its deliveries return in place.
    let q = quorum_queue(&ch, "qq-close", None).await;
    let ch2 = c.create_channel().await.expect("channel");
    get_unacked(&ch2, &q).await;
    get_unacked(&ch2, &q).await;
    ch2.close(200, "bye".into()).await.expect("close");
    let got = drain_counts(&ch, &q).await;
    assert_eq!(order(&got), ["a", "b", "c", "d"]);
    assert_eq!(got[0].1, Some(1), "a channel's return counts too");
    // With a delivery limit, a rejected message stays at the head.
    let q2 = quorum_queue(&ch, "qq-limit", Some(5)).await;
    let tag = get_unacked(&ch, &q2).await;
    ch.basic_reject(tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    assert_eq!(order(&drain_counts(&ch, &q2).await), ["a", "b", "c", "d"]);
    for q in [&q, &q2] {
        ch.queue_delete(q.as_str().into(), Default::default())
            .await
            .expect("delete");
    }
}

#[tokio::test]
async fn a_consumer_sees_x_delivery_count_only_once_the_message_came_back() {
    let (_c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    let q = quorum_queue(&ch, "qq-consume", None).await;
    ch.basic_qos(1, Default::default()).await.expect("qos");
    let mut consumer = consume(&ch, &q, "", false).await;
    let first = next(&mut consumer).await;
    assert_eq!(delivery_count(&first.properties), None);
    first
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let d = next(&mut consumer).await;
        seen.push((
            String::from_utf8_lossy(&d.data).into_owned(),
            delivery_count(&d.properties),
        ));
        d.acker.ack(Default::default()).await.expect("ack");
    }
    assert_eq!(
        seen,
        [
            ("b".to_string(), None),
            ("c".to_string(), None),
            ("d".to_string(), None),
            ("a".to_string(), Some(1)),
        ]
    );
    drop(consumer);
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn quorum_queue_rules_and_delivery_limit() {
    let c = connect().await;
    let quorum = || table(&[("x-queue-type", s("quorum"))]);
    for (opts, prop) in [
        (QueueDeclareOptions::default(), "non-durable"),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            "exclusive-owner",
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            "auto-delete",
        ),
    ] {
        let ch = c.create_channel().await.expect("ch");
        let e = assert_code(
            ch.queue_declare(uniq("qq").as_str().into(), opts, quorum())
                .await,
            406,
        );
        assert!(
            text(&e).contains(&format!("invalid property '{prop}'")),
            "{}",
            text(&e)
        );
    }
    let ch = c.create_channel().await.expect("ch");
    let dlq = declare_args(&ch, &uniq("qq-dlq"), FieldTable::default()).await;
    let q = uniq("qq");
    let mut args = quorum();
    args.insert("x-delivery-limit".into(), int(1));
    args.insert("x-dead-letter-exchange".into(), s(""));
    args.insert("x-dead-letter-routing-key".into(), s(&dlq));
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("quorum queue");
    publish(&ch, "", &q, b"poison").await;
    let mut counts = Vec::new();
    for _ in 0..2 {
        let m = get_within(&ch, &q, false).await.expect("message");
        counts.push(
            match m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").cloned())
            {
                Some(v) => warren::args::as_i64(&v).unwrap_or(-1),
                None => 0,
            },
        );
        ch.basic_nack(
            m.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
        .expect("nack");
    }
    assert_eq!(counts, vec![0, 1]);
    let d = get_within(&ch, &dlq, true)
        .await
        .expect("dead-lettered past the delivery limit");
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "delivery_limit");
    cleanup(&ch, &[&q, &dlq]).await;
}

/// Warren's store: a message moved to the back keeps its new place across a restart, and one
/// acked after the move (here by a consumer on another connection) does not come back.
#[tokio::test]
async fn a_move_to_the_back_is_stored_before_the_message_goes_out_again() {
    if external() {
        return;
    }
    let dir = crate::process::temp_dir("qq-move");
    let start = || {
        warren::start(warren::Config {
            port: 0,
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
    };
    let b = start().await.expect("start");
    let q = "qq-moved";
    {
        let (_c1, ch) = channel_at(&b.url()).await;
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            table(&[("x-queue-type", s("quorum"))]),
        )
        .await
        .expect("declare");
        for body in ["a", "b", "c", "x"] {
            confirmed(
                &ch,
                "".into(),
                q.into(),
                Default::default(),
                body.as_bytes(),
                persistent(),
            )
            .await
            .expect("confirmed");
        }
        // "a" goes to the back.
        let tag = get_unacked(&ch, q).await;
        ch.basic_reject(tag, BasicRejectOptions { requeue: true })
            .await
            .expect("reject");
        // A consumer on another connection takes everything up to "x" and acks "x" only
        // after it came back from a reject on the first connection.
        let (_c2, ch2) = channel_at(&b.url()).await;
        for _ in 0..3 {
            get_unacked(&ch, q).await; // b, c, x: held unacked on the first connection
        }
        ch.basic_recover(BasicRecoverOptions { requeue: true })
            .await
            .expect("recover");
        // Order now: a (moved first), then b, c, x (recover: to the back, in order).
        let mut consumer = consume(&ch2, q, "other", false).await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let d = next(&mut consumer).await;
            seen.push(String::from_utf8_lossy(&d.data).into_owned());
            if d.data == b"x" {
                d.ack(BasicAckOptions::default()).await.expect("ack");
            }
        }
        assert_eq!(seen, ["a", "b", "c", "x"]);
    }
    b.stop().await.expect("stopped");
    let b = start().await.expect("restart");
    {
        let (_c, ch) = channel_at(&b.url()).await;
        let got: Vec<String> = drain_counts(&ch, q)
            .await
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(
            got,
            ["a", "b", "c"],
            "x was acked; the rest keep their order"
        );
    }
    b.stop().await.expect("stopped");
    let _ = std::fs::remove_dir_all(&dir);
}
