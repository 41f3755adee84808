//! Message and queue TTL: per queue, per message (the lower wins), TTL 0, invalid
//! expirations, expiry only at the head.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::BasicProperties;
use std::time::Duration;

#[tokio::test]
async fn queue_ttl_expires_messages() {
    let (_c, ch) = channel().await;
    let q = declare_args(&ch, &uniq("ttl"), table(&[("x-message-ttl", int(100))])).await;
    publish(&ch, "", &q, b"old").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        message_count(&ch, &q).await,
        0,
        "expired messages are not counted once removed"
    );
    publish(&ch, "", &q, b"new").await;
    assert_eq!(get(&ch, &q).await.as_deref(), Some("new"));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn per_message_ttl_and_the_lower_one_wins() {
    let (_c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("msgttl"),
        table(&[("x-message-ttl", int(60_000))]),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"short",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"long",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(drain(&ch, &q).await, vec!["long"]);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn ttl_zero_delivers_only_to_a_ready_consumer() {
    let (_c, ch) = channel().await;
    let q = declare_args(&ch, &uniq("ttl0"), table(&[("x-message-ttl", int(0))])).await;
    publish(&ch, "", &q, b"nobody").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(get(&ch, &q).await.is_none());
    let mut c = consume(&ch, q.as_str(), "", true).await;
    publish(&ch, "", &q, b"someone").await;
    assert_eq!(next(&mut c).await.data, b"someone");
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn invalid_expiration_is_406() {
    for (exp, why) in [("abc", "no_integer"), ("-5", "{value_negative,-5}")] {
        let (_c, ch) = channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        let r = confirmed(
            &ch,
            "".into(),
            "x".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_expiration(exp.into()),
        )
        .await
        .map(|_| ());
        let e = assert_code(r, 406);
        assert_eq!(
            text(&e),
            format!("PRECONDITION_FAILED - invalid expiration '{exp}': {why}")
        );
    }
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
