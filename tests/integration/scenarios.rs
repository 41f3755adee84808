//! More behaviour scenarios, each small and runnable against any broker.

use crate::common::ops::*;
use crate::common::*;
use amq_protocol::protocol::{basic, channel as chan, queue, AMQPClass};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;

/// A topic exchange that outlives its bindings (not auto-delete); `routed` checks one pattern
/// at a time and removes its queue, which would delete an auto-delete exchange.
async fn topic(ch: &lapin::Channel) -> String {
    let x = uniq("t");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("x");
    x
}

async fn drop_exchange(ch: &lapin::Channel, x: &str) {
    ch.exchange_delete(x.into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}

async fn routed(ch: &lapin::Channel, x: &str, pattern: &str, key: &str) -> bool {
    let q = temp_queue(ch).await;
    bind(ch, &q, x, pattern, FieldTable::default()).await;
    publish(ch, x, key, b"m").await;
    let got = !drain(ch, &q).await.is_empty();
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    got
}

#[tokio::test]
async fn topic_hash_matches_zero_words() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(routed(&ch, &x, "a.#", "a").await);
    assert!(routed(&ch, &x, "#.a", "a").await);
    assert!(routed(&ch, &x, "a.#.b", "a.b").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn topic_star_needs_exactly_one_word() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(!routed(&ch, &x, "a.*", "a").await);
    assert!(!routed(&ch, &x, "a.*", "a.b.c").await);
    assert!(routed(&ch, &x, "*.*", "a.b").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn topic_empty_words_and_literal_dots() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(routed(&ch, &x, "a..b", "a..b").await);
    assert!(routed(&ch, &x, "a.*.b", "a..b").await);
    assert!(!routed(&ch, &x, "a.b", "a.b.").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn headers_void_value_matches_presence() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    bind(
        &ch,
        &q,
        "amq.headers",
        "",
        table(&[("x-match", s("any")), ("flag", AMQPValue::Void)]),
    )
    .await;
    publish_props(
        &ch,
        "amq.headers",
        "",
        b"has",
        BasicProperties::default().with_headers(table(&[("flag", s("anything"))])),
    )
    .await;
    publish_props(
        &ch,
        "amq.headers",
        "",
        b"not",
        BasicProperties::default().with_headers(table(&[("other", s("x"))])),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec!["has"]);
}

#[tokio::test]
async fn headers_numeric_values_compare_by_value() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    bind(
        &ch,
        &q,
        "amq.match",
        "",
        table(&[("n", AMQPValue::LongInt(5))]),
    )
    .await;
    publish_props(
        &ch,
        "amq.match",
        "",
        b"five",
        BasicProperties::default().with_headers(table(&[("n", AMQPValue::LongInt(5))])),
    )
    .await;
    publish_props(
        &ch,
        "amq.match",
        "",
        b"six",
        BasicProperties::default().with_headers(table(&[("n", AMQPValue::LongInt(6))])),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec!["five"]);
}

#[tokio::test]
async fn fanout_to_many_queues_shares_one_message() {
    let (_c, ch) = channel().await;
    let x = uniq("fan");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let mut qs = Vec::new();
    for _ in 0..20 {
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, "", FieldTable::default()).await;
        qs.push(q);
    }
    publish(&ch, &x, "", &vec![7u8; 50_000]).await;
    for q in &qs {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("m");
        assert_eq!(m.delivery.data.len(), 50_000);
    }
}

#[tokio::test]
async fn large_message_spans_many_frames() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", &q, &body).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("m");
    assert_eq!(m.delivery.data, body);
}

#[tokio::test]
async fn empty_body_round_trips() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("m");
    assert!(m.delivery.data.is_empty());
}

#[tokio::test]
async fn binding_twice_is_idempotent() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, "amq.direct", "k", FieldTable::default()).await;
    bind(&ch, &q, "amq.direct", "k", FieldTable::default()).await;
    publish(&ch, "amq.direct", "k", b"once").await;
    assert_eq!(drain(&ch, &q).await, vec!["once"]);
}

#[tokio::test]
async fn unbinding_what_is_not_bound_is_fine() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    ch.queue_unbind(
        q.as_str().into(),
        "amq.direct".into(),
        "never".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
}

#[tokio::test]
async fn bind_to_missing_exchange_is_404() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    assert_code(
        ch.queue_bind(
            q.as_str().into(),
            uniq("nox").as_str().into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn bind_missing_queue_is_404() {
    let (_c, ch) = channel().await;
    assert_code(
        ch.queue_bind(
            uniq("noq").as_str().into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_is_404() {
    let (c, ch) = channel().await;
    assert_code(
        ch.exchange_declare(
            uniq("nox").as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
    assert!(c.status().connected());
}

#[tokio::test]
async fn exchange_redeclare_with_other_durability_is_406() {
    let (_c, ch) = channel().await;
    let x = uniq("xd");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let e = assert_code(
        ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        406,
    );
    assert!(
        text(&e).contains("inequivalent arg 'durable'"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn declaring_the_default_exchange_is_403() {
    let (_c, ch) = channel().await;
    assert_code(
        ch.exchange_declare(
            "".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
    );
}

#[tokio::test]
async fn exchange_to_exchange_bind_to_missing_is_404() {
    let (_c, ch) = channel().await;
    assert_code(
        ch.exchange_bind(
            uniq("nox").as_str().into(),
            "amq.fanout".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn purge_keeps_unacked_messages() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"taken").await;
    publish(&ch, "", &q, b"ready").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    assert_eq!(
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .expect("purge"),
        1
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
    assert_eq!(drain(&ch, &q).await, vec!["taken"]);
}

#[tokio::test]
async fn get_ok_reports_remaining_count() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for _ in 0..3 {
        publish(&ch, "", &q, b"m").await;
    }
    let counts: Vec<u32> = {
        let mut v = Vec::new();
        while let Some(m) = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            v.push(m.message_count);
        }
        v
    };
    assert_eq!(counts, vec![2, 1, 0]);
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
async fn get_on_missing_queue_is_404() {
    let (_c, ch) = channel().await;
    assert_code(
        ch.basic_get(uniq("noq").as_str().into(), BasicGetOptions::default())
            .await,
        404,
    );
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
async fn many_channels_on_one_connection() {
    let c = connect().await;
    let mut chans = Vec::new();
    for _ in 0..100 {
        chans.push(c.create_channel().await.expect("channel"));
    }
    let q = temp_queue(&chans[0]).await;
    for ch in &chans {
        publish(ch, "", &q, b"x").await;
    }
    // Channels are independent: their publishes land in the queue in no set order or time.
    let mut n = 0;
    for _ in 0..100 {
        n = message_count(&chans[0], q.as_str()).await;
        if n == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n, 100);
}

#[tokio::test]
async fn channel_close_and_reopen() {
    let c = connect().await;
    for _ in 0..5 {
        let ch = c.create_channel().await.expect("channel");
        ch.close(200, "bye".into()).await.expect("close");
    }
    assert!(c.status().connected());
}

#[tokio::test]
async fn confirms_with_mandatory_mixed() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let q = temp_queue(&ch).await;
    let routed = ch
        .basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"in",
            BasicProperties::default(),
        )
        .await
        .expect("pub");
    let lost = ch
        .basic_publish(
            "".into(),
            uniq("none").as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"out",
            BasicProperties::default(),
        )
        .await
        .expect("pub");
    assert!(matches!(
        routed.await.expect("c1"),
        lapin::Confirmation::Ack(None)
    ));
    assert!(matches!(
        lost.await.expect("c2"),
        lapin::Confirmation::Ack(Some(_))
    ));
}

#[tokio::test]
async fn tx_commit_applies_nack_and_reject() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"a").await;
    publish(&ch, "", &q, b"b").await;
    ch.tx_select().await.expect("tx");
    let a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a");
    let b = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("b");
    ch.basic_reject(a.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    ch.basic_ack(b.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.tx_commit().await.expect("commit");
    assert_eq!(drain(&ch, &q).await, vec!["a"]);
}

#[tokio::test]
async fn exclusive_queue_is_usable_by_its_owner_on_any_channel() {
    let (c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let ch2 = c.create_channel().await.expect("ch2");
    publish(&ch2, "", &q, b"mine").await;
    assert_eq!(drain(&ch2, &q).await, vec!["mine"]);
}

#[tokio::test]
async fn publishing_to_another_connections_exclusive_queue_is_allowed() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let (_c2, other) = channel().await;
    publish(&other, "", &q, b"hello").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(drain(&ch, &q).await, vec!["hello"]);
}

#[tokio::test]
async fn deleting_another_connections_exclusive_queue_is_405() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let (_c2, other) = channel().await;
    assert_code(
        other
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await,
        405,
    );
}

#[tokio::test]
async fn access_request_is_answered() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        1,
        AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::Request(
            amq_protocol::protocol::access::Request {
                realm: "/data".into(),
                exclusive: false,
                passive: true,
                active: true,
                write: true,
                read: true,
            },
        )),
    )
    .await;
    match r.recv_method().await {
        Some((1, AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::RequestOk(_)))) => {}
        other => panic!("expected access.request-ok, got {other:?}"),
    }
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
async fn priority_argument_of_zero_is_a_plain_queue() {
    let (_c, ch) = channel().await;
    let q = uniq("prio0");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(&[("x-max-priority", AMQPValue::LongInt(0))]),
    )
    .await
    .expect("declare");
    publish_props(
        &ch,
        "",
        &q,
        b"low",
        BasicProperties::default().with_priority(0),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"high",
        BasicProperties::default().with_priority(9),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec!["low", "high"]);
}

#[tokio::test]
async fn per_message_ttl_expires_only_at_the_head() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"blocker").await;
    publish_props(
        &ch,
        "",
        &q,
        b"short",
        BasicProperties::default().with_expiration("10".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The expired message sits behind a live one and still counts, as in RabbitMQ.
    let n = message_count(&ch, q.as_str()).await;
    assert_eq!(n, 2);
    // But it is never delivered.
    assert_eq!(drain(&ch, &q).await, vec!["blocker"]);
}

#[tokio::test]
async fn dead_letter_to_missing_exchange_drops() {
    let (_c, ch) = channel().await;
    let q = uniq("dlx-missing");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(&[("x-dead-letter-exchange", s(&uniq("nowhere")))]),
    )
    .await
    .expect("declare");
    publish(&ch, "", &q, b"x").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert!(drain(&ch, &q).await.is_empty());
}

#[tokio::test]
async fn cc_and_bcc_headers_route_to_more_keys() {
    let (_c, ch) = channel().await;
    let x = uniq("ccx");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let (qa, qb, qc) = (
        temp_queue(&ch).await,
        temp_queue(&ch).await,
        temp_queue(&ch).await,
    );
    bind(&ch, &qa, &x, "a", FieldTable::default()).await;
    bind(&ch, &qb, &x, "b", FieldTable::default()).await;
    bind(&ch, &qc, &x, "c", FieldTable::default()).await;
    let list = |k: &str| AMQPValue::FieldArray(vec![s(k)].into());
    let props =
        BasicProperties::default().with_headers(table(&[("CC", list("b")), ("BCC", list("c"))]));
    publish_props(&ch, &x, "a", b"m", props).await;
    for q in [&qa, &qb, &qc] {
        let m = get_within(&ch, q, true)
            .await
            .expect("delivered to every listed key");
        let h = m.delivery.properties.headers().clone().unwrap_or_default();
        assert!(h.inner().contains_key("CC"), "CC is kept");
        assert!(!h.inner().contains_key("BCC"), "BCC is removed");
    }
}

#[tokio::test]
async fn dead_letters_keep_cc_routing_keys() {
    let (_c, ch) = channel().await;
    let dlx = uniq("ccdlx");
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    let q = uniq("ccsrc");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(&[("x-dead-letter-exchange", s(&dlx))]),
    )
    .await
    .expect("q");
    let via_cc = temp_queue(&ch).await;
    bind(&ch, &via_cc, &dlx, "cc-key", FieldTable::default()).await;
    let props = BasicProperties::default().with_headers(table(&[(
        "CC",
        AMQPValue::FieldArray(vec![s("cc-key")].into()),
    )]));
    publish_props(&ch, "", &q, b"m", props).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = get_within(&ch, &via_cc, true)
        .await
        .expect("dead-lettered through the CC key");
    let h = d.delivery.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = h.inner().get("x-death") else {
        panic!("x-death")
    };
    let AMQPValue::FieldTable(first) = &deaths.as_slice()[0] else {
        panic!("entry")
    };
    assert_eq!(
        first.inner().get("routing-keys"),
        Some(&AMQPValue::FieldArray(vec![s(&q), s("cc-key")].into()))
    );
}

#[tokio::test]
async fn unbinding_from_or_to_what_is_gone_is_fine() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    // A missing exchange, a missing queue: unbind-ok, as RabbitMQ 3.10.8 answers.
    ch.queue_unbind(
        q.as_str().into(),
        uniq("gone-x").as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind from a missing exchange");
    ch.queue_unbind(
        uniq("gone-q").as_str().into(),
        "amq.direct".into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind of a missing queue");
    ch.exchange_unbind(
        uniq("gone-dst").as_str().into(),
        uniq("gone-src").as_str().into(),
        "k".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange unbind between missing exchanges");
    // An auto-delete exchange goes with its last binding (its auto-delete queue went with its
    // consumer); the teardown's unbind afterwards is still fine (aio-pika's RPC pattern).
    let x = uniq("ad-x");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let aq = uniq("ad-q");
    ch.queue_declare(
        aq.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("q");
    bind(&ch, &aq, &x, "k", FieldTable::default()).await;
    let consumer = consume(&ch, &aq, "ad-tag", false).await;
    ch.basic_cancel("ad-tag".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    drop(consumer);
    ch.queue_unbind(
        aq.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind after the auto-delete cascade");
    assert!(ch.status().connected());
}
