//! The consistent-hash exchange, as RabbitMQ's rabbitmq_consistent_hash_exchange plugin:
//! weights as binding keys, one destination per message, the same key to the same place,
//! hash-header and hash-property. Against RabbitMQ, runs when the plugin is enabled
//! (`RMQ_PLUGINS=rabbitmq_consistent_hash_exchange`) and skips otherwise.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};

const TYPE: &str = "x-consistent-hash";

/// Declare a consistent-hash exchange; None when the broker does not know the type.
async fn exchange(ch: &Channel, args: FieldTable) -> Option<String> {
    let x = uniq("chx");
    match ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Custom(TYPE.into()),
            ExchangeDeclareOptions::default(),
            args,
        )
        .await
    {
        Ok(()) => Some(x),
        Err(e) if external() && code(&e) == Some(503) => None,
        Err(e) => panic!("declare: {e}"),
    }
}

async fn queues(ch: &Channel, x: &str, weights: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for w in weights {
        let q = temp_queue(ch).await;
        bind(ch, &q, x, w, FieldTable::default()).await;
        out.push(q);
    }
    out
}

async fn counts(ch: &Channel, qs: &[String]) -> Vec<u32> {
    let mut out = Vec::new();
    for q in qs {
        out.push(message_count(ch, q).await);
    }
    out
}

async fn publish_confirmed(ch: &Channel, x: &str, key: &str, props: BasicProperties) {
    ch.basic_publish(
        x.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"m",
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

#[tokio::test]
async fn weights_share_out_keys_and_a_key_keeps_its_queue() {
    let (_c, ch) = channel().await;
    let Some(x) = exchange(&ch, FieldTable::default()).await else {
        return;
    };
    let qs = queues(&ch, &x, &["1", "2", "1"]).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    for i in 0..4000 {
        ch.basic_publish(
            x.as_str().into(),
            format!("key-{i}").as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    ch.wait_for_confirms().await.expect("confirms");
    let n = counts(&ch, &qs).await;
    assert_eq!(
        n.iter().sum::<u32>(),
        4000,
        "each message to exactly one queue: {n:?}"
    );
    assert!(
        (1700..2300).contains(&n[1]),
        "weight 2 takes about half: {n:?}"
    );
    assert!(
        (800..1200).contains(&n[0]) && (800..1200).contains(&n[2]),
        "{n:?}"
    );
    for q in &qs {
        ch.queue_purge(q.as_str().into(), Default::default())
            .await
            .expect("purge");
    }
    for _ in 0..20 {
        publish_confirmed(&ch, &x, "the-same-key", BasicProperties::default()).await;
    }
    let n = counts(&ch, &qs).await;
    assert!(
        n.contains(&20),
        "one queue takes every message of a key: {n:?}"
    );
}

#[tokio::test]
async fn binding_keys_must_be_positive_integers() {
    let (c, ch) = channel().await;
    let Some(x) = exchange(&ch, FieldTable::default()).await else {
        return;
    };
    let q = temp_queue(&ch).await;
    for (key, text_part) in [
        ("abc", "The binding key must be an integer: <<\"abc\">>"),
        ("1.5", "The binding key must be an integer: <<\"1.5\">>"),
        ("0", "The binding key must be greater than 0"),
        ("-1", "The binding key must be greater than 0"),
    ] {
        let ch = c.create_channel().await.expect("channel");
        let e = assert_code(
            ch.queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await,
            406,
        );
        assert!(text(&e).contains(text_part), "{key}: {}", text(&e));
    }
}

#[tokio::test]
async fn hash_header_and_hash_property() {
    let (c, ch) = channel().await;
    let Some(x) = exchange(&ch, table(&[("hash-header", s("tenant"))])).await else {
        return;
    };
    let qs = queues(&ch, &x, &["1", "1", "1", "1"]).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    // The routing key varies, the header does not: one queue.
    for i in 0..20 {
        let props = BasicProperties::default().with_headers(table(&[("tenant", s("acme"))]));
        publish_confirmed(&ch, &x, &format!("k{i}"), props).await;
    }
    let n = counts(&ch, &qs).await;
    assert!(n.contains(&20), "hashed on the header: {n:?}");
    // The header varies: more than one queue.
    for i in 0..200 {
        let props =
            BasicProperties::default().with_headers(table(&[("tenant", s(&format!("t{i}")))]));
        publish_confirmed(&ch, &x, "k", props).await;
    }
    let n = counts(&ch, &qs).await;
    assert!(n.iter().filter(|c| **c > 0).count() > 1, "{n:?}");

    let Some(p) = exchange(&ch, table(&[("hash-property", s("message_id"))])).await else {
        return;
    };
    let qs = queues(&ch, &p, &["1", "1", "1", "1"]).await;
    for i in 0..20 {
        let props = BasicProperties::default().with_message_id("order-7".into());
        publish_confirmed(&ch, &p, &format!("k{i}"), props).await;
    }
    assert!(counts(&ch, &qs).await.contains(&20), "hashed on message_id");

    // The plugin's argument checks.
    for (args, text_part) in [
        (
            table(&[("hash-header", s("h")), ("hash-property", s("message_id"))]),
            "hash-header and hash-property are mutually exclusive",
        ),
        (
            table(&[("hash-property", s("bogus"))]),
            "Unsupported property: bogus",
        ),
    ] {
        let ch = c.create_channel().await.expect("channel");
        let e = assert_code(
            ch.exchange_declare(
                uniq("chbad").as_str().into(),
                ExchangeKind::Custom(TYPE.into()),
                ExchangeDeclareOptions::default(),
                args,
            )
            .await,
            406,
        );
        assert!(text(&e).contains(text_part), "{}", text(&e));
    }
}
