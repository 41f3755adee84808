//! Dead-lettering: rejected and expired messages, x-death and its counts, cycles, a missing
//! dead-letter exchange, CC keys kept.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_x_death() {
    let (_c, ch) = channel().await;
    let dlq = declare_args(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare_args(
        &ch,
        &uniq("src"),
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"bad",
        BasicProperties::default()
            .with_expiration("60000".into())
            .with_message_id("m1".into()),
    )
    .await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = get_within(&ch, &dlq, true).await.expect("dead-lettered");
    assert_eq!(d.delivery.data, b"bad");
    assert_eq!(d.delivery.routing_key.as_str(), dlq);
    assert_eq!(
        d.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("m1")
    );
    assert!(
        d.delivery.properties.expiration().is_none(),
        "expiration is removed"
    );
    let x = death(&d.delivery, 0);
    assert_eq!(count_of(&x), 1);
    assert_eq!(str_of(&x, "reason"), "rejected");
    assert_eq!(str_of(&x, "queue"), q);
    assert_eq!(str_of(&x, "exchange"), "");
    assert_eq!(str_of(&x, "original-expiration"), "60000");
    assert!(matches!(
        x.inner().get("time"),
        Some(AMQPValue::Timestamp(_))
    ));
    assert!(
        matches!(x.inner().get("routing-keys"), Some(AMQPValue::FieldArray(a)) if a.as_slice() == [s(&q)])
    );
    let h = d.delivery.properties.headers().clone().expect("headers");
    assert_eq!(h.inner().get("x-first-death-reason"), Some(&s("rejected")));
    assert_eq!(h.inner().get("x-first-death-queue"), Some(&s(&q)));
    assert_eq!(h.inner().get("x-first-death-exchange"), Some(&s("")));
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn expired_messages_are_dead_lettered() {
    let (_c, ch) = channel().await;
    let x = uniq("dlx");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    let dlq = declare_args(&ch, &uniq("dlq"), FieldTable::default()).await;
    bind(&ch, &dlq, &x, "", FieldTable::default()).await;
    let q = declare_args(
        &ch,
        &uniq("ttlsrc"),
        table(&[
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", s(&x)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"late").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = get_msg(&ch, &dlq).await.expect("dead-lettered by expiry");
    assert_eq!(d.delivery.exchange.as_str(), x);
    assert_eq!(
        d.delivery.routing_key.as_str(),
        q,
        "original routing key kept without x-dead-letter-routing-key"
    );
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "expired");
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn x_death_counts_repeated_deaths() {
    let (_c, ch) = channel().await;
    let (a, b) = (uniq("ping"), uniq("pong"));
    declare_args(
        &ch,
        &a,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&b)),
        ]),
    )
    .await;
    declare_args(
        &ch,
        &b,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&a)),
        ]),
    )
    .await;
    publish(&ch, "", &a, b"ball").await;
    let mut from = a.clone();
    let mut last = None;
    for _ in 0..3 {
        let m = get_within(&ch, &from, false)
            .await
            .expect("message bounced");
        ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        last = Some(m);
        from = if from == a { b.clone() } else { a.clone() };
    }
    // Third pass arrives in `b` again having died in a twice and b once... read it.
    let m = get_within(&ch, &from, true)
        .await
        .expect("after three rejections");
    let first = death(&m.delivery, 0);
    assert_eq!(str_of(&first, "queue"), a, "most recent death first");
    assert_eq!(count_of(&first), 2);
    assert_eq!(count_of(&death(&m.delivery, 1)), 1);
    let _ = last;
    cleanup(&ch, &[&a, &b]).await;
}

#[tokio::test]
async fn expiry_cycle_back_to_the_same_queue_is_dropped() {
    let (_c, ch) = channel().await;
    let q = uniq("selfloop");
    declare_args(
        &ch,
        &q,
        table(&[
            ("x-message-ttl", int(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&q)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"loop").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message_count(&ch, &q).await, 0);
    cleanup(&ch, &[&q]).await;
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
