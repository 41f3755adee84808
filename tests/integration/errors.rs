//! Channel and connection errors with RabbitMQ's reply codes, through lapin.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404_on_the_channel() {
    let (c, ch) = channel().await;
    let e = assert_code(
        ch.queue_declare(
            uniq("missing").as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
    assert!(
        text(&e).starts_with("NOT_FOUND - no queue '"),
        "{}",
        text(&e)
    );
    assert!(
        c.status().connected(),
        "a channel error must not close the connection"
    );
    let ch2 = c.create_channel().await.expect("connection still usable");
    ch2.queue_declare(
        uniq("ok").as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
}

#[tokio::test]
async fn inequivalent_redeclare_is_406() {
    let (c, ch) = channel().await;
    let q = uniq("ineq");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let e = assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
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
    let ch = c.create_channel().await.expect("channel");
    let x = uniq("ineqx");
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
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        406,
    );
    assert!(text(&e).contains("inequivalent arg 'type'"), "{}", text(&e));
    let ch = c.create_channel().await.expect("channel");
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn other_connections_exclusive_queue_is_405() {
    let (_c1, ch1) = channel().await;
    let q = uniq("excl");
    ch1.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (_c2, ch2) = channel().await;
    assert_code(
        ch2.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        405,
    );
    let (_c3, ch3) = channel().await;
    assert_code(
        ch3.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        405,
    );
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404() {
    let (c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let r = confirmed(
        &ch,
        uniq("nox").as_str().into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .map(|_| ());
    assert_code(r, 404);
    assert!(c.status().connected());
}

#[tokio::test]
async fn ack_of_unknown_delivery_tag_is_406() {
    // Raw frames, so the answer is the server's own (see double_ack_is_406).
    use amq_protocol::protocol::{basic, AMQPClass};
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 42,
            multiple: false,
        })),
    )
    .await;
    assert_eq!(r.expect_close().await, (1, 406, 60, 80));
}

#[tokio::test]
async fn double_ack_is_406() {
    // Raw frames: with lapin the server's channel.close could reach the client before it sent
    // its next method, which then failed on the client side without the server's code.
    use amq_protocol::protocol::{basic, AMQPClass};
    let (_c, ch) = channel().await;
    let q = uniq("double-ack");
    declare(&ch, &q).await;
    publish(&ch, "", &q, b"x").await;
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: q.as_str().into(),
            no_ack: false,
        })),
    )
    .await;
    let tag = loop {
        match r.recv_method().await {
            Some((1, AMQPClass::Basic(basic::AMQPMethod::GetOk(g)))) => break g.delivery_tag,
            Some((1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))) => panic!("no message"),
            Some(_) => continue,
            None => panic!("connection ended"),
        }
    };
    for _ in 0..2 {
        r.send(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: tag,
                multiple: false,
            })),
        )
        .await;
    }
    assert_eq!(r.expect_close().await, (1, 406, 60, 80));
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn duplicate_consumer_tag_is_530_on_the_connection() {
    let (c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let _first = consume(&ch, q.as_str(), "dup", false).await;
    assert_code(
        ch.basic_consume(
            q.as_str().into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        530,
    );
    assert!(
        eventually(|| !c.status().connected()).await,
        "530 must close the connection"
    );
}

#[tokio::test]
async fn user_id_mismatch_is_406() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let props = BasicProperties::default().with_user_id("mallory".into());
    let r = confirmed(
        &ch,
        "".into(),
        "x".into(),
        BasicPublishOptions::default(),
        b"x",
        props,
    )
    .await
    .map(|_| ());
    let e = assert_code(r, 406);
    assert!(
        text(&e).contains("user_id property set to 'mallory'"),
        "{}",
        text(&e)
    );
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let ok = BasicProperties::default().with_user_id("guest".into());
    ch.basic_publish(
        "".into(),
        "x".into(),
        BasicPublishOptions::default(),
        b"x",
        ok,
    )
    .await
    .expect("pub")
    .await
    .expect("matching user_id is fine");
}

#[tokio::test]
async fn declaring_amq_names_is_403() {
    let (c, ch) = channel().await;
    assert_code(
        ch.exchange_declare(
            "amq.custom".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
    );
    let ch = c.create_channel().await.expect("ch");
    assert_code(
        ch.queue_declare(
            "amq.custom".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
    );
    let ch = c.create_channel().await.expect("ch");
    assert_code(
        ch.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
            .await,
        403,
    );
    let ch = c.create_channel().await.expect("ch");
    // Passive declare of a built-in exchange is fine.
    ch.exchange_declare(
        "amq.topic".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive");
    assert_code(
        ch.queue_bind(
            uniq("q").as_str().into(),
            "".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        403, // the default exchange is refused before the queue is looked up
    );
}

#[tokio::test]
async fn binding_to_the_default_exchange_is_403() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    assert_code(
        ch.queue_bind(
            q.as_str().into(),
            "".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
    );
}

#[tokio::test]
async fn unknown_exchange_type_is_503() {
    let (c, ch) = channel().await;
    assert_code(
        ch.exchange_declare(
            uniq("x").as_str().into(),
            ExchangeKind::Custom("no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        503,
    );
    assert!(eventually(|| !c.status().connected()).await);
}

#[tokio::test]
async fn not_implemented_features_are_540() {
    let (c, ch) = channel().await;
    assert_code(
        ch.channel_flow(ChannelFlowOptions { active: false }).await,
        540,
    );
    assert!(eventually(|| !c.status().connected()).await);
    let (c, ch) = channel().await;
    assert_code(
        ch.basic_recover(BasicRecoverOptions { requeue: false })
            .await,
        540,
    );
    assert!(eventually(|| !c.status().connected()).await);
    let (c, ch) = channel().await;
    let _ = ch
        .basic_publish(
            "".into(),
            "x".into(),
            BasicPublishOptions {
                immediate: true,
                ..Default::default()
            },
            b"x",
            BasicProperties::default(),
        )
        .await;
    assert!(
        eventually(|| !c.status().connected()).await,
        "immediate=true must close the connection"
    );
}

#[tokio::test]
async fn channel_flow_active_true_is_accepted() {
    let (_c, ch) = channel().await;
    assert!(ch
        .channel_flow(ChannelFlowOptions { active: true })
        .await
        .expect("flow"));
}

#[tokio::test]
async fn message_over_max_size_is_406() {
    if external() {
        return; // RabbitMQ's limit is 128 MiB; the in-process broker is configured with 1 MiB.
    }
    let (c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let body = vec![0u8; 1024 * 1024 + 1];
    let r = confirmed(
        &ch,
        "".into(),
        "x".into(),
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default(),
    )
    .await
    .map(|_| ());
    let e = assert_code(r, 406);
    assert!(
        text(&e).contains("is larger than configured max size"),
        "{}",
        text(&e)
    );
    assert!(c.status().connected());
}

#[tokio::test]
async fn delete_if_unused_and_if_empty_are_406() {
    let (c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let name = q.clone();
    let _consumer = consume(&ch, name.as_str(), "", false).await;
    let e = assert_code(
        ch.queue_delete(
            name.as_str().into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
    );
    assert!(text(&e).contains("in use"), "{}", text(&e));
    let ch = c.create_channel().await.expect("ch");
    let q2 = temp_queue(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    ch.basic_publish(
        "".into(),
        q2.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .expect("pub")
    .await
    .expect("confirm");
    let e = assert_code(
        ch.queue_delete(
            q2.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await,
        406,
    );
    assert!(text(&e).contains("not empty"), "{}", text(&e));
}

#[tokio::test]
async fn exchange_delete_if_unused_is_406() {
    let (c, ch) = channel().await;
    let x = uniq("xdel");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("x");
    let q = temp_queue(&ch).await;
    ch.queue_bind(
        q.as_str().into(),
        x.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    assert_code(
        ch.exchange_delete(
            x.as_str().into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
    );
    let ch = c.create_channel().await.expect("ch");
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
    // Deleting what does not exist is fine.
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("idempotent");
    ch.queue_delete(uniq("never").as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn publish_to_internal_exchange_is_403() {
    let (_c, ch) = channel().await;
    let x = uniq("internal");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let r = confirmed(
        &ch,
        x.as_str().into(),
        "".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .map(|_| ());
    assert_code(r, 403);
}

#[tokio::test]
async fn empty_queue_name_without_declare_is_404() {
    let (_c, ch) = channel().await;
    let e = assert_code(
        ch.queue_purge("".into(), QueuePurgeOptions::default())
            .await,
        404,
    );
    assert!(
        text(&e).contains("no previously declared queue"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn invalid_x_match_is_406() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let args = table(&[("x-match", AMQPValue::LongString("bogus".into()))]);
    assert_code(
        ch.queue_bind(
            q.as_str().into(),
            "amq.headers".into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        )
        .await,
        406,
    );
}
