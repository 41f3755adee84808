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
    let (_c, ch) = channel_at(&b.url()).await;
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

#[tokio::test]
async fn connections_past_max_connections_get_530() {
    if external() {
        return;
    }
    let b = warren::start(warren::Config {
        port: 0,
        max_connections: Some(2),
        ..Default::default()
    })
    .await
    .expect("start");
    let c1 = lapin::Connection::connect(&b.url(), Default::default())
        .await
        .expect("first");
    let _c2 = lapin::Connection::connect(&b.url(), Default::default())
        .await
        .expect("second");
    let mut r = Raw::tcp_at(&b.local_addr().to_string()).await;
    r.send_open(2047, 131072, 0, "/").await;
    assert_eq!(r.expect_close().await, (0, 530, 10, 40));
    // A slot frees when a connection goes.
    c1.close(200, "bye".into()).await.expect("close");
    let mut ok = false;
    for _ in 0..50 {
        if lapin::Connection::connect(&b.url(), Default::default())
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a connection is accepted again below the limit");
    b.shutdown().await;
}

#[tokio::test]
async fn sockets_past_the_handshake_cap_are_closed() {
    if external() {
        return;
    }
    let b = warren::start(warren::Config {
        port: 0,
        max_handshakes: 2,
        ..Default::default()
    })
    .await
    .expect("start");
    let addr = b.local_addr().to_string();
    // Two silent sockets hold both handshake slots.
    let _s1 = Raw::tcp_at(&addr).await;
    let _s2 = Raw::tcp_at(&addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = Raw::tcp_at(&addr).await;
    assert!(
        third.closed_within(2).await,
        "a third silent socket is closed at once"
    );
    drop(_s1);
    drop(_s2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = lapin::Connection::connect(&b.url(), Default::default()).await;
    assert!(c.is_ok(), "handshakes are accepted again");
    b.shutdown().await;
}
