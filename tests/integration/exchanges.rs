//! Exchanges and bindings: declare (passive, redeclare, the default exchange), bind and
//! unbind, including what is already bound, missing or gone.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::ExchangeKind;

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
