//! Resource limits with RabbitMQ's codes and texts: consumer_timeout, and the caps that keep
//! one peer from taking more than its share.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::AMQPValue;
use std::time::Duration;

#[tokio::test]
async fn unacked_past_x_consumer_timeout_closes_the_channel_and_requeues() {
    if external() {
        return; // x-consumer-timeout is newer than RabbitMQ 3.10
    }
    let (c, ch) = channel().await;
    let q = uniq("ctimeout");
    ch.queue_declare(
        q.as_str().into(),
        Default::default(),
        table(&[("x-consumer-timeout", AMQPValue::LongInt(300))]),
    )
    .await
    .expect("declare");
    publish(&ch, "", &q, b"slow").await;
    let mut consumer = consume(&ch, &q, "", false).await;
    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    // Never acked: the channel is closed with RabbitMQ's 406 within the timeout (plus slack).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.status().connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "channel still open after the consumer timeout"
    );
    drop(consumer);
    let ch2 = c.create_channel().await.expect("channel");
    let m = get_within(&ch2, &q, true).await.expect("requeued");
    assert!(m.delivery.redelivered);
    assert_eq!(&m.delivery.data[..], b"slow");
}

#[tokio::test]
async fn broker_consumer_timeout_gives_rabbitmqs_406() {
    if external() {
        return;
    }
    let b = warren::start(warren::Config {
        port: 0,
        consumer_timeout_ms: Some(200),
        ..Default::default()
    })
    .await
    .expect("start");
    let mut r = Raw::open_at(&b.local_addr().to_string()).await;
    r.open_channel(1).await;
    let (_c, ch) = {
        let c = lapin::Connection::connect(&b.url(), Default::default())
            .await
            .expect("connect");
        let ch = c.create_channel().await.expect("ch");
        (c, ch)
    };
    declare(&ch, "ct").await;
    publish(&ch, "", "ct", b"m").await;
    use amq_protocol::protocol::{basic, AMQPClass};
    r.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "ct".into(),
            no_ack: false,
        })),
    )
    .await;
    let (ch_id, code, class, method) = r.expect_close().await;
    assert_eq!((ch_id, code, class, method), (1, 406, 0, 0));
    b.shutdown().await;
}

#[tokio::test]
async fn acked_in_time_is_not_timed_out() {
    if external() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("ctimeout-ok");
    ch.queue_declare(
        q.as_str().into(),
        Default::default(),
        table(&[("x-consumer-timeout", AMQPValue::LongInt(400))]),
    )
    .await
    .expect("declare");
    let mut consumer = consume(&ch, &q, "", false).await;
    for i in 0..6u8 {
        publish(&ch, "", &q, &[i]).await;
        let d = next(&mut consumer).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    assert!(ch.status().connected(), "each ack came in time");
    assert!(quiet(&mut consumer, 100).await);
}
