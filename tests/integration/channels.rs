//! Channels: many on one connection, close and reopen, access.request.

use crate::common::ops::*;
use crate::common::*;
use amq_protocol::protocol::AMQPClass;
use std::time::Duration;

#[tokio::test]
async fn many_channels_on_one_connection() {
    let c = connect().await;
    let mut chans = Vec::new();
    for _ in 0..100 {
        chans.push(c.create_channel().await.expect("channel"));
    }
    let q = temp_queue(&chans[0]).await;
    for ch in &chans {
        publish(ch, "", &q, b"x").await;
    }
    // Channels are independent: their publishes land in the queue in no set order or time.
    let mut n = 0;
    for _ in 0..100 {
        n = message_count(&chans[0], q.as_str()).await;
        if n == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n, 100);
}

#[tokio::test]
async fn channel_close_and_reopen() {
    let c = connect().await;
    for _ in 0..5 {
        let ch = c.create_channel().await.expect("channel");
        ch.close(200, "bye".into()).await.expect("close");
    }
    assert!(c.status().connected());
}

#[tokio::test]
async fn access_request_is_answered() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        1,
        AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::Request(
            amq_protocol::protocol::access::Request {
                realm: "/data".into(),
                exclusive: false,
                passive: true,
                active: true,
                write: true,
                read: true,
            },
        )),
    )
    .await;
    match r.recv_method().await {
        Some((1, AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::RequestOk(_)))) => {}
        other => panic!("expected access.request-ok, got {other:?}"),
    }
}
