//! Delayed messages (x-delayed-message exchanges, x-delay), as RabbitMQ's plugin.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use std::time::Duration;

async fn delayed_exchange(ch: &lapin::Channel, inner: &str, durable: bool) -> String {
    let x = uniq("delayed");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        table(&[("x-delayed-type", s(inner))]),
    )
    .await
    .expect("delayed exchange");
    x
}

#[tokio::test]
async fn delayed_messages_are_routed_when_due() {
    if external() {
        return; // Stock RabbitMQ lacks the delayed-message plugin.
    }
    let (_c, ch) = channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let delayed = |ms: i64| BasicProperties::default().with_headers(table(&[("x-delay", int(ms))]));
    let started = std::time::Instant::now();
    for (body, ms) in [("later", 400), ("sooner", 150)] {
        let c = ch
            .basic_publish(
                x.as_str().into(),
                "k".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                delayed(ms),
            )
            .await
            .expect("pub")
            .await
            .expect("confirm");
        assert!(
            matches!(c, lapin::Confirmation::Ack(None)),
            "held, confirmed, no return: {c:?}"
        );
    }
    publish(&ch, &x, "k", b"now").await;
    assert_eq!(
        drain(&ch, &q).await,
        vec!["now"],
        "no x-delay: routed at once"
    );
    let mut cons = consume(&ch, q.as_str(), "", true).await;
    assert_eq!(next(&mut cons).await.data, b"sooner");
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(next(&mut cons).await.data, b"later");
    assert!(started.elapsed() >= Duration::from_millis(390));
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn delayed_exchange_needs_a_valid_delayed_type() {
    if external() {
        return;
    }
    let (c, ch) = channel().await;
    let e = assert_code(
        ch.exchange_declare(
            uniq("bad").as_str().into(),
            lapin::ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions::default(),
            table(&[("x-delayed-type", s("nope"))]),
        )
        .await,
        406,
    );
    assert!(text(&e).contains("x-delayed-type"), "{}", text(&e));
    // Topic routing through a delayed exchange.
    let ch = c.create_channel().await.expect("ch");
    let x = delayed_exchange(&ch, "topic", false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "a.#", FieldTable::default()).await;
    publish_props(
        &ch,
        &x,
        "a.b.c",
        b"t",
        BasicProperties::default().with_headers(table(&[("x-delay", int(50))])),
    )
    .await;
    publish_props(
        &ch,
        &x,
        "z",
        b"nomatch",
        BasicProperties::default().with_headers(table(&[("x-delay", int(50))])),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(drain(&ch, &q).await, vec!["t"]);
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}
