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

#[tokio::test]
async fn consumers_past_max_consumers_per_channel_get_530() {
    if external() {
        return; // RabbitMQ's consumer_max_per_channel is a node setting, unlimited by default
    }
    let b = warren::start(warren::Config {
        port: 0,
        max_consumers_per_channel: Some(2),
        ..Default::default()
    })
    .await
    .expect("start");
    let (_c, ch) = channel_at(&b.url()).await;
    declare(&ch, "cmax").await;
    let _a = consume(&ch, "cmax", "a", false).await;
    let _b = consume(&ch, "cmax", "b", false).await;
    // A second channel has its own count.
    let (_c2, ch2) = channel_at(&b.url()).await;
    let _other = consume(&ch2, "cmax", "a", false).await;
    let e = assert_code(
        ch.basic_consume(
            "cmax".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await,
        530,
    );
    assert!(
        text(&e).contains("reached maximum (2) of consumers per channel"),
        "{}",
        text(&e)
    );
    b.shutdown().await;
}

mod pending {
    //! What one connection may hold of unfinished bodies and uncommitted transactions.
    use crate::common::ops::*;
    use crate::common::*;
    use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
    use amq_protocol::protocol::{basic, tx, AMQPClass};
    use lapin::options::*;

    fn publish() -> AMQPClass {
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "pending".into(),
            mandatory: false,
            immediate: false,
        }))
    }

    fn header(ch: u16, size: u64) -> AMQPFrame {
        AMQPFrame::Header(
            ch,
            AMQPContentHeader {
                class_id: 60,
                body_size: size,
                properties: Default::default(),
            },
        )
    }

    async fn broker(limit: u64) -> warren::BrokerHandle {
        warren::start(warren::Config {
            port: 0,
            max_pending_bytes: limit,
            ..Default::default()
        })
        .await
        .expect("start")
    }

    #[tokio::test]
    async fn partial_bodies_past_the_connection_budget_get_506() {
        if external() {
            return; // RabbitMQ has no such limit; only its memory alarm
        }
        let b = broker(1000).await;
        let mut r = Raw::open_at(&b.local_addr().to_string()).await;
        r.open_channel(1).await;
        r.open_channel(2).await;
        // Announced, never sent: the announcement is what a trickling peer could make us hold.
        r.send(1, publish()).await;
        r.send_frame(header(1, 600)).await;
        r.send(2, publish()).await;
        r.send_frame(header(2, 600)).await;
        assert_eq!(r.expect_close().await, (0, 506, 60, 40));
        // Other connections are unaffected.
        let (_c, ch) = channel_at(&b.url()).await;
        ch.basic_publish(
            "".into(),
            "x".into(),
            BasicPublishOptions::default(),
            &[0u8; 900],
            Default::default(),
        )
        .await
        .expect("publish within the budget");
        b.shutdown().await;
    }

    #[tokio::test]
    async fn finished_bodies_give_their_budget_back() {
        if external() {
            return;
        }
        let b = broker(1000).await;
        let (_c, ch) = channel_at(&b.url()).await;
        declare(&ch, "pending").await;
        for _ in 0..20 {
            publish_bytes(&ch, &[7u8; 900]).await;
        }
        assert_eq!(message_count(&ch, "pending").await, 20);
        b.shutdown().await;
    }

    async fn publish_bytes(ch: &lapin::Channel, body: &[u8]) {
        ch.basic_publish(
            "".into(),
            "pending".into(),
            BasicPublishOptions::default(),
            body,
            Default::default(),
        )
        .await
        .expect("publish");
    }

    #[tokio::test]
    async fn a_transaction_past_the_budget_gets_506_and_commits_give_it_back() {
        if external() {
            return;
        }
        let b = broker(1000).await;
        let (_c, ch) = channel_at(&b.url()).await;
        declare(&ch, "pending").await;
        ch.tx_select().await.expect("select");
        for _ in 0..5 {
            publish_bytes(&ch, &[1u8; 400]).await;
            publish_bytes(&ch, &[2u8; 400]).await;
            ch.tx_commit().await.expect("commit gives the budget back");
        }
        assert_eq!(message_count(&ch, "pending").await, 10);
        publish_bytes(&ch, &[1u8; 400]).await;
        ch.tx_rollback().await.expect("rollback gives it back too");
        // Raw, to read the code: 3 × 400 uncommitted bytes cross the 1000-byte budget.
        let mut r = Raw::open_at(&b.local_addr().to_string()).await;
        r.open_channel(1).await;
        r.send(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
            .await;
        for _ in 0..3 {
            r.send(1, publish()).await;
            r.send_frame(header(1, 400)).await;
            r.send_frame(AMQPFrame::Body(1, vec![0u8; 400])).await;
        }
        assert_eq!(r.expect_close().await, (0, 506, 60, 40));
        assert_eq!(
            message_count(&ch, "pending").await,
            10,
            "nothing half-committed"
        );
        b.shutdown().await;
    }
}
