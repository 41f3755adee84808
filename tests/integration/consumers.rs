//! Consumers: round robin, prefetch, exclusivity, tags, server cancel, acks, requeue, get.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use amq_protocol::protocol::{basic, channel as chan, queue, AMQPClass};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};

#[tokio::test]
async fn round_robin_between_consumers() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let mut a = consume(&ch, q.as_str(), "a", true).await;
    let mut b = consume(&ch, q.as_str(), "b", true).await;
    for i in 0..10 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(String::from_utf8(next(&mut a).await.data).expect("utf8"));
        got_b.push(String::from_utf8(next(&mut b).await.data).expect("utf8"));
    }
    assert_eq!(got_a, vec!["0", "2", "4", "6", "8"]);
    assert_eq!(got_b, vec!["1", "3", "5", "7", "9"]);
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    ch.basic_qos(2, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut cons = consume(&ch, q.as_str(), "", false).await;
    let d1 = next(&mut cons).await;
    let _d2 = next(&mut cons).await;
    assert!(
        quiet(&mut cons, 300).await,
        "a third delivery broke prefetch 2"
    );
    d1.acker.ack(BasicAckOptions::default()).await.expect("ack");
    let d3 = next(&mut cons).await;
    assert_eq!(d3.data, b"2");
    assert!(quiet(&mut cons, 200).await);
    // ack multiple releases both remaining slots.
    d3.acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack multiple");
    assert_eq!(next(&mut cons).await.data, b"3");
    assert_eq!(next(&mut cons).await.data, b"4");
}

#[tokio::test]
async fn global_qos_is_shared_by_the_channel() {
    let (_c, ch) = channel().await;
    let (q1, q2) = (temp_queue(&ch).await, temp_queue(&ch).await);
    for q in [&q1, &q2] {
        for _ in 0..3 {
            publish(&ch, "", q, b"m").await;
        }
    }
    ch.basic_qos(2, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let mut c1 = consume(&ch, q1.as_str(), "", false).await;
    let mut c2 = consume(&ch, q2.as_str(), "", false).await;
    let mut n = 0;
    for cons in [&mut c1, &mut c2] {
        while !quiet(cons, 300).await {
            n += 1;
        }
    }
    assert_eq!(n, 2, "channel-wide prefetch of 2");
}

#[tokio::test]
async fn exclusive_consumer_locks_out_others() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    // Keep the consumer: lapin cancels a dropped one.
    let _excl = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exclusive");
    let (_c2, ch2) = channel().await;
    let ch3 = _c.create_channel().await.expect("ch3");
    let e = assert_code(
        ch3.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
    );
    assert!(text(&e).contains("in exclusive use"), "{}", text(&e));
    drop(ch2);
}

#[tokio::test]
async fn server_generates_consumer_tags() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let cons = consume(&ch, q.as_str(), "", false).await;
    assert!(
        cons.tag().as_str().starts_with("amq.ctag-"),
        "{}",
        cons.tag()
    );
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let (_c, ch) = channel().await;
    let q = uniq("to-delete");
    declare(&ch, &q).await;
    let mut cons = consume(&ch, q.as_str(), "", false).await;
    let (_c2, ch2) = channel().await;
    ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    use futures_lite::StreamExt;
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), cons.next())
        .await
        .expect("cancel arrives");
    assert!(end.is_none(), "the consumer stream ends on basic.cancel");
    assert!(
        ch.status().connected(),
        "a server cancel keeps the channel open"
    );
}

#[tokio::test]
async fn closing_a_channel_requeues_unacked_in_order() {
    let (c, ch) = channel().await;
    let q = uniq("requeue");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: false,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    for i in 0..4 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    let ch2 = c.create_channel().await.expect("ch2");
    let mut cons = consume(&ch2, q.as_str(), "", false).await;
    for _ in 0..4 {
        let d = next(&mut cons).await;
        assert!(!d.redelivered);
    }
    ch2.close(200, "bye".into()).await.expect("close");
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        assert!(
            m.delivery.redelivered,
            "requeued messages are marked redelivered"
        );
        got.push(String::from_utf8(m.delivery.data.clone()).expect("utf8"));
    }
    assert_eq!(got, vec!["0", "1", "2", "3"]);
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn nack_and_reject_requeue_or_drop() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    let m0 = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m0");
    let m1 = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m1");
    let m2 = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m2");
    assert_eq!(m2.message_count, 0);
    ch.basic_reject(m0.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    ch.basic_nack(
        m2.delivery_tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack multiple");
    let rest = drain(&ch, &q).await;
    assert_eq!(
        rest,
        vec!["1", "2"],
        "m0 dropped; m1 and m2 requeued in order"
    );
    let _ = m1;
}

#[tokio::test]
async fn basic_get_and_recover() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    assert!(ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .is_none());
    publish(&ch, "", &q, b"a").await;
    publish(&ch, "", &q, b"b").await;
    let a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a");
    assert_eq!((a.message_count, a.redelivered), (1, false));
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    let again = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("again");
    assert_eq!(again.delivery.data, b"a");
    assert!(again.delivery.redelivered);
}

#[tokio::test]
async fn ack_multiple_and_zero_tag() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for _ in 0..5 {
        publish(&ch, "", &q, b"m").await;
    }
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(
            ch.basic_get(q.as_str().into(), BasicGetOptions::default())
                .await
                .expect("get")
                .expect("m")
                .delivery_tag,
        );
    }
    assert!(
        tags.windows(2).all(|w| w[0] < w[1]),
        "delivery tags grow: {tags:?}"
    );
    ch.basic_ack(tags[2], BasicAckOptions { multiple: true })
        .await
        .expect("ack 3");
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    assert!(drain(&ch, &q).await.is_empty(), "everything was acked");
}

#[tokio::test]
async fn cancel_then_consume_again() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let cons = consume(&ch, q.as_str(), "tag", false).await;
    ch.basic_cancel(cons.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    // Cancelling an unknown tag is not an error.
    ch.basic_cancel("never".into(), BasicCancelOptions::default())
        .await
        .expect("cancel unknown");
    let mut cons = consume(&ch, q.as_str(), "tag", false).await;
    publish(&ch, "", &q, b"x").await;
    assert_eq!(next(&mut cons).await.data, b"x");
}

#[tokio::test]
async fn reject_with_requeue_redelivers_to_the_next_consumer() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"again").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    assert!(!m.delivery.redelivered);
    ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let mut cons = consume(&ch, q.as_str(), "", true).await;
    let d = next(&mut cons).await;
    assert!(d.redelivered);
    assert_eq!(d.data, b"again");
}

#[tokio::test]
async fn nack_multiple_zero_requeues_everything() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for b in ["1", "2", "3"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    for _ in 0..3 {
        ch.basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("m");
    }
    ch.basic_nack(
        0,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack all");
    assert_eq!(drain(&ch, &q).await, vec!["1", "2", "3"]);
}

#[tokio::test]
async fn closing_the_connection_requeues_unacked() {
    let (_c, ch) = channel().await;
    let q = uniq("conn-requeue");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("q");
    publish(&ch, "", &q, b"held").await;
    let (c2, ch2) = channel().await;
    let mut cons = consume(&ch2, q.as_str(), "", false).await;
    let _d = next(&mut cons).await;
    c2.close(200, "bye".into()).await.expect("close");
    let back = get_within(&ch, &q, true).await.expect("requeued");
    assert!(back.delivery.redelivered);
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn prefetch_zero_means_unlimited() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    ch.basic_qos(0, BasicQosOptions::default())
        .await
        .expect("qos");
    for i in 0..50 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    let mut cons = consume(&ch, q.as_str(), "", false).await;
    for _ in 0..50 {
        next(&mut cons).await;
    }
}

#[tokio::test]
async fn qos_applies_to_consumers_created_after_it() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    let mut unlimited = consume(&ch, q.as_str(), "a", false).await;
    for _ in 0..5 {
        next(&mut unlimited).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let q2 = temp_queue(&ch).await;
    for i in 0..3 {
        publish(&ch, "", &q2, format!("{i}").as_bytes()).await;
    }
    let mut limited = consume(&ch, q2.as_str(), "b", false).await;
    next(&mut limited).await;
    assert!(quiet(&mut limited, 200).await);
}

#[tokio::test]
async fn consumer_on_missing_queue_is_404() {
    let (c, ch) = channel().await;
    assert_code(
        ch.basic_consume(
            uniq("noq").as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
    );
    assert!(c.status().connected());
}

#[tokio::test]
async fn server_cancel_is_not_sent_without_the_capability() {
    // The raw client advertises consumer_cancel_notify; a client without it gets no basic.cancel.
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    r.send(
        0,
        AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::StartOk(
            amq_protocol::protocol::connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: b"\0guest\0guest".to_vec().into(),
                locale: "en_US".into(),
            },
        )),
    )
    .await;
    r.recv_method().await.expect("tune");
    r.send(
        0,
        AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::TuneOk(
            amq_protocol::protocol::connection::TuneOk {
                channel_max: 10,
                frame_max: 131072,
                heartbeat: 0,
            },
        )),
    )
    .await;
    r.send(
        0,
        AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Open(
            amq_protocol::protocol::connection::Open {
                virtual_host: "/".into(),
            },
        )),
    )
    .await;
    r.recv_method().await.expect("open-ok");
    r.open_channel(1).await;
    let q = uniq("nocap");
    r.send(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: q.as_str().into(),
            auto_delete: false,
            ..Default::default()
        })),
    )
    .await;
    r.recv_method().await.expect("declare-ok");
    r.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: q.as_str().into(),
            consumer_tag: "t".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    r.recv_method().await.expect("consume-ok");
    let (_c, ch) = channel().await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    // Next thing we hear on the channel must be our own close-ok, not a basic.cancel.
    r.send(
        1,
        AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match r.recv_method().await {
        Some((1, AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)))) => {}
        other => panic!("expected close-ok only, got {other:?}"),
    }
}

#[tokio::test]
async fn two_channels_have_independent_delivery_tags() {
    let (c, ch1) = channel().await;
    let ch2 = c.create_channel().await.expect("ch2");
    let q = temp_queue(&ch1).await;
    for _ in 0..4 {
        publish(&ch1, "", &q, b"m").await;
    }
    let a = ch1
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a");
    let b = ch2
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("b");
    assert_eq!((a.delivery_tag, b.delivery_tag), (1, 1));
}

#[tokio::test]
async fn consumer_priorities() {
    let (_c, ch) = channel().await;
    let q = declare_args(&ch, &uniq("cprio"), FieldTable::default()).await;
    let ch_low = _c.create_channel().await.expect("ch");
    let ch_high = _c.create_channel().await.expect("ch");
    ch_high
        .basic_qos(2, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut low = consume(&ch_low, q.as_str(), "low", false).await;
    let mut high = ch_high
        .basic_consume(
            q.as_str().into(),
            "high".into(),
            BasicConsumeOptions::default(),
            table(&[("x-priority", int(10))]),
        )
        .await
        .expect("high");
    for i in 0..4 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    assert_eq!(next(&mut high).await.data, b"0");
    assert_eq!(next(&mut high).await.data, b"1");
    // The high-priority consumer is full (prefetch 2): the rest goes to the low one.
    assert_eq!(next(&mut low).await.data, b"2");
    assert_eq!(next(&mut low).await.data, b"3");
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn single_active_consumer() {
    let (c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("sac"),
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let ch1 = c.create_channel().await.expect("ch1");
    let ch2 = c.create_channel().await.expect("ch2");
    let mut first = consume(&ch1, q.as_str(), "first", true).await;
    let mut second = consume(&ch2, q.as_str(), "second", true).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    for i in 0..3 {
        assert_eq!(next(&mut first).await.data, format!("{i}").as_bytes());
    }
    assert!(
        quiet(&mut second, 200).await,
        "only the active consumer receives"
    );
    ch1.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "", &q, b"after").await;
    assert_eq!(next(&mut second).await.data, b"after");
    cleanup(&ch, &[&q]).await;
}
