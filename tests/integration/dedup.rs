//! Exchange-level deduplication with the interface of the community plugin
//! rabbitmq-message-deduplication (`x-message-deduplication`, `x-cache-size`, `x-cache-ttl`,
//! the `x-deduplication-header` header). Warren only: RabbitMQ 3.10.8 does not ship the plugin.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::Duration;
use warren::testing::TestBroker;

async fn dedup_exchange(ch: &Channel, args: FieldTable) -> Result<String, lapin::Error> {
    let x = uniq("dedup");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Custom("x-message-deduplication".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .map(|()| x)
}

async fn send(ch: &Channel, x: &str, headers: &[(&str, AMQPValue)]) {
    ch.basic_publish(
        x.into(),
        "any-key".into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_headers(table(headers)),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

#[tokio::test]
async fn repeats_are_dropped_and_others_fan_out() {
    if external() {
        return;
    }
    let (_c, ch) = channel().await;
    let x = dedup_exchange(&ch, table(&[("x-cache-size", s("5"))]))
        .await
        .expect("declare");
    let (q1, q2) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &q1, &x, "", FieldTable::default()).await;
    bind(&ch, &q2, &x, "other", FieldTable::default()).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    for _ in 0..5 {
        send(&ch, &x, &[("x-deduplication-header", s("order-1"))]).await;
    }
    send(&ch, &x, &[("x-deduplication-header", s("order-2"))]).await;
    send(&ch, &x, &[]).await;
    send(&ch, &x, &[]).await;
    // Fanout whatever the key: one of order-1, one of order-2, both without the header.
    assert_eq!(message_count(&ch, &q1).await, 4);
    assert_eq!(message_count(&ch, &q2).await, 4);
    // A mandatory repeat comes back as unroutable.
    let confirm = ch
        .basic_publish(
            x.as_str().into(),
            "k".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"again",
            BasicProperties::default()
                .with_headers(table(&[("x-deduplication-header", s("order-1"))])),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.take_message().is_some(), "returned as unroutable");
}

#[tokio::test]
async fn the_cache_forgets_its_oldest_past_its_size() {
    if external() {
        return;
    }
    let (_c, ch) = channel().await;
    let x = dedup_exchange(&ch, table(&[("x-cache-size", AMQPValue::LongInt(2))]))
        .await
        .expect("declare");
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "", FieldTable::default()).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    for v in ["a", "b", "c", "a"] {
        send(&ch, &x, &[("x-deduplication-header", s(v))]).await;
    }
    // "a" was evicted by "c", so it routes again; "c" is still remembered.
    send(&ch, &x, &[("x-deduplication-header", s("c"))]).await;
    assert_eq!(message_count(&ch, &q).await, 4);
}

#[tokio::test]
async fn ttl_from_the_exchange_or_the_message_on_the_test_clock() {
    if external() {
        return;
    }
    let b = TestBroker::start().await;
    let (_c, ch) = channel_at(&b.url()).await;
    let x = dedup_exchange(
        &ch,
        table(&[
            ("x-cache-size", AMQPValue::LongInt(100)),
            ("x-cache-ttl", AMQPValue::LongInt(60_000)),
        ]),
    )
    .await
    .expect("declare");
    ch.queue_declare("seen".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    bind(&ch, "seen", &x, "", FieldTable::default()).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    send(&ch, &x, &[("x-deduplication-header", s("k"))]).await;
    send(
        &ch,
        &x,
        &[
            ("x-deduplication-header", s("short")),
            ("x-cache-ttl", AMQPValue::LongInt(1_000)),
        ],
    )
    .await;
    b.advance(Duration::from_secs(2));
    send(&ch, &x, &[("x-deduplication-header", s("k"))]).await;
    send(&ch, &x, &[("x-deduplication-header", s("short"))]).await;
    assert_eq!(
        b.message_count("/", "seen"),
        Some(3),
        "k still remembered (60 s), short forgotten (1 s)"
    );
    b.advance(Duration::from_secs(60));
    send(&ch, &x, &[("x-deduplication-header", s("k"))]).await;
    assert_eq!(
        b.message_count("/", "seen"),
        Some(4),
        "k forgotten after 60 s"
    );
}

#[tokio::test]
async fn the_cache_size_is_required() {
    if external() {
        return;
    }
    let (c, ch) = channel().await;
    let e = assert_code(dedup_exchange(&ch, FieldTable::default()).await, 406);
    assert!(text(&e).contains("x-cache-size"), "{}", text(&e));
    let ch = c.create_channel().await.expect("channel");
    let e = assert_code(
        dedup_exchange(
            &ch,
            table(&[
                ("x-cache-size", AMQPValue::LongInt(1)),
                ("x-cache-persistence", s("tape")),
            ]),
        )
        .await,
        406,
    );
    assert!(text(&e).contains("x-cache-persistence"), "{}", text(&e));
}

#[tokio::test]
async fn a_queue_takes_a_value_again_only_once_its_message_left() {
    if external() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("dedup-q");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        table(&[("x-message-deduplication", AMQPValue::Boolean(true))]),
    )
    .await
    .expect("queue");
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    let to_queue = |v: Option<&'static str>| {
        let (ch, q) = (ch.clone(), q.clone());
        async move {
            let headers = match v {
                Some(v) => table(&[("x-deduplication-header", s(v))]),
                None => FieldTable::default(),
            };
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm")
        }
    };
    for _ in 0..3 {
        assert!(
            to_queue(Some("a")).await.is_ack(),
            "a repeat is taken, not nacked"
        );
    }
    to_queue(Some("b")).await;
    to_queue(None).await;
    to_queue(None).await;
    assert_eq!(
        message_count(&ch, &q).await,
        4,
        "a, b, and both without the header"
    );
    // Out for delivery still counts as in the queue; acked, the value is free again.
    let m = get_within(&ch, &q, false).await.expect("a");
    to_queue(Some("a")).await;
    assert_eq!(
        message_count(&ch, &q).await,
        3,
        "a is unacked, still present"
    );
    ch.basic_ack(m.delivery_tag, Default::default())
        .await
        .expect("ack");
    to_queue(Some("a")).await;
    assert_eq!(
        message_count(&ch, &q).await,
        4,
        "a taken again after its ack"
    );
    // Purged too.
    ch.queue_purge(q.as_str().into(), Default::default())
        .await
        .expect("purge");
    to_queue(Some("b")).await;
    assert_eq!(message_count(&ch, &q).await, 1);
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .expect("delete");
}
