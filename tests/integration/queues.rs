//! Queue declaration, flags, counts, purge, delete, exclusivity and auto-delete.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;

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
