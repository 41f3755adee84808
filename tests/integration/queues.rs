//! Queue declaration, flags, counts, purge, delete, exclusivity and auto-delete.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use std::time::Duration;

#[tokio::test]
async fn server_named_queue_and_declare_ok_counts() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    assert!(q.as_str().starts_with("amq.gen-"), "{}", q);
    // Confirmed, so the messages are in the queue before it is counted (RabbitMQ's count
    // can otherwise lag behind publishes still in flight).
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    for i in 0..3 {
        confirmed(
            &ch,
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            format!("{i}").as_bytes(),
            Default::default(),
        )
        .await
        .expect("confirmed");
    }
    let again = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!((again.message_count(), again.consumer_count()), (3, 0));
    let _consumer = consume(&ch, q.as_str(), "", false).await;
    let again = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(again.consumer_count(), 1);
    // Redeclaring a server-named queue by name hits the reserved prefix, as in RabbitMQ.
    assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        403,
    );
}

#[tokio::test]
async fn durable_flag_is_kept() {
    let (_c, ch) = channel().await;
    let q = uniq("durable");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("same flags");
    assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
    );
    let (_c, ch) = channel().await;
    assert_eq!(
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete"),
        0
    );
}

#[tokio::test]
async fn purge_and_delete_report_counts() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for _ in 0..4 {
        publish(&ch, "", &q, b"x").await;
    }
    assert_eq!(
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .expect("purge"),
        4
    );
    publish(&ch, "", &q, b"y").await;
    publish(&ch, "", &q, b"z").await;
    assert_eq!(
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete"),
        2
    );
    assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn exclusive_queue_goes_with_its_connection() {
    let (c, ch) = channel().await;
    let q = uniq("excl");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    c.close(200, "bye".into()).await.expect("close");
    let (_c2, ch2) = channel().await;
    let mut gone = false;
    for _ in 0..50 {
        if passive(&ch2, &q).await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "exclusive queue survived its connection");
}

#[tokio::test]
async fn auto_delete_queue_goes_after_its_last_consumer() {
    let (_c, ch) = channel().await;
    let q = uniq("autodel");
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
    let c1 = consume(&ch, q.as_str(), "c1", false).await;
    let c2 = consume(&ch, q.as_str(), "c2", false).await;
    ch.basic_cancel(c1.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel c1");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("still there");
    ch.basic_cancel(c2.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel c2");
    let (_c, ch) = channel().await;
    assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn auto_delete_queue_without_consumers_stays() {
    let (_c, ch) = channel().await;
    let q = uniq("autodel-idle");
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
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("still there");
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn empty_name_means_last_declared_queue() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"x").await;
    assert_eq!(
        ch.queue_purge("".into(), QueuePurgeOptions::default())
            .await
            .expect("purge"),
        1
    );
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let (_c, ch) = channel().await;
    let x = uniq("adx");
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
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    assert_code(
        ch.exchange_declare(
            x.as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn nowait_declarations_take_effect() {
    let (_c, ch) = channel().await;
    let q = uniq("nowait");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            nowait: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    publish(&ch, "", &q, b"x").await;
    assert_eq!(drain(&ch, &q).await, vec!["x"]);
    ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            nowait: true,
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
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
async fn get_on_missing_queue_is_404() {
    let (_c, ch) = channel().await;
    assert_code(
        ch.basic_get(uniq("noq").as_str().into(), BasicGetOptions::default())
            .await,
        404,
    );
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
async fn priority_queue_orders_by_priority_then_fifo() {
    let (_c, ch) = channel().await;
    let q = declare_args(&ch, &uniq("prio"), table(&[("x-max-priority", int(10))])).await;
    for (b, p) in [
        ("low", 1u8),
        ("high1", 9),
        ("mid", 5),
        ("high2", 9),
        ("none", 0),
        ("capped", 200),
    ] {
        publish_props(
            &ch,
            "",
            &q,
            b.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    // 200 is capped at the maximum, 10: above 9.
    assert_eq!(
        drain(&ch, &q).await,
        vec!["capped", "high1", "high2", "mid", "low", "none"]
    );
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn unused_queue_expires() {
    let (_c, ch) = channel().await;
    let q = declare_args(&ch, &uniq("expires"), table(&[("x-expires", int(150))])).await;
    publish(&ch, "", &q, b"x").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_c2, ch2) = channel().await;
    assert_code(
        ch2.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn queue_with_a_consumer_does_not_expire() {
    let (_c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("expires-used"),
        table(&[("x-expires", int(150))]),
    )
    .await;
    let _consumer = consume(&ch, q.as_str(), "", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    message_count(&ch, &q).await;
    cleanup(&ch, &[&q]).await;
}
