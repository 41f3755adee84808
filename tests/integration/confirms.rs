//! Publisher confirms.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn every_publish_is_acked() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let q = temp_queue(&ch).await;
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(matches!(
            p.await.expect("confirm"),
            lapin::Confirmation::Ack(None)
        ));
    }
    let q2 = ch
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
    assert_eq!(q2.message_count(), 500, "acked means enqueued");
}

#[tokio::test]
async fn wait_for_confirms_after_a_burst() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let q = temp_queue(&ch).await;
    for _ in 0..100 {
        let _confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .expect("publish");
    }
    let returned = ch.wait_for_confirms().await.expect("confirms");
    assert!(returned.is_empty());
}

#[tokio::test]
async fn confirm_select_nowait_and_unroutable() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions { nowait: false })
        .await
        .expect("confirm");
    // Selecting twice is allowed.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("again");
    let c = ch
        .basic_publish(
            "amq.direct".into(),
            uniq("nobody").as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(
        matches!(c, lapin::Confirmation::Ack(None)),
        "unroutable is acked: {c:?}"
    );
}

#[tokio::test]
async fn confirm_tags_follow_publish_order_across_queues() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let x = uniq("cfx");
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
    .expect("x");
    let qs = [temp_queue(&ch).await, temp_queue(&ch).await];
    for q in &qs {
        bind(&ch, q, &x, "", FieldTable::default()).await;
    }
    let mut confirms = Vec::new();
    for i in 0..50u8 {
        let props = BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
        confirms.push(
            ch.basic_publish(
                x.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &[i],
                props,
            )
            .await
            .expect("pub"),
        );
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack());
    }
    for q in &qs {
        assert_eq!(drain(&ch, q).await.len(), 50);
    }
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
    // Both are acked and the unroutable one comes back. Which confirm lapin hands the
    // returned message to depends on whether the broker acked them one by one or with one
    // multiple ack (RabbitMQ under load does the latter), so only its body is pinned.
    let mut returned = Vec::new();
    for c in [routed.await.expect("c1"), lost.await.expect("c2")] {
        match c {
            lapin::Confirmation::Ack(r) => returned.extend(r.map(|m| m.delivery.data)),
            other => panic!("not acked: {other:?}"),
        }
    }
    assert_eq!(returned, vec![b"out".to_vec()]);
}
