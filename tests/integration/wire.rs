//! Wire-level errors, sent as raw frames: each asserts the reply code and what gets closed.

use crate::common::*;
use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel as chan, connection as conn, AMQPClass};

fn publish(exchange: &str, key: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: exchange.into(),
        routing_key: key.into(),
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

#[tokio::test]
async fn frame_over_frame_max_is_501() {
    let mut r = Raw::open_with(2047, 4096, 0).await;
    r.open_channel(1).await;
    r.send(1, publish("", "nowhere")).await;
    r.send_frame(header(1, 10_000)).await;
    r.send_frame(AMQPFrame::Body(1, vec![0u8; 5000])).await;
    assert_eq!(r.expect_close().await.1, 501);
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let mut r = Raw::open().await;
    // channel.open on channel 1 with a wrong frame-end octet.
    r.send_bytes(&[1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xCD])
        .await;
    assert_eq!(r.expect_close().await.1, 501);
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    let mut r = Raw::open().await;
    r.send_bytes(&[9, 0, 0, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(r.expect_close().await.1, 501);
}

#[tokio::test]
async fn heartbeat_on_a_channel_is_505() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send_frame(AMQPFrame::InvalidHeartbeat(1)).await;
    assert_eq!(r.expect_close().await, (0, 505, 0, 0));
}

#[tokio::test]
async fn method_on_unopened_channel_is_504() {
    let mut r = Raw::open().await;
    r.send(
        3,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "q".into(),
                passive: true,
                ..Default::default()
            },
        )),
    )
    .await;
    assert_eq!(r.expect_close().await, (0, 504, 50, 10));
    if external() {
        return; // RabbitMQ drops the socket silently for a content method there.
    }
    let mut r = Raw::open().await;
    r.send(3, publish("", "q")).await;
    assert_eq!(r.expect_close().await, (0, 504, 60, 40));
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(1, AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})))
        .await;
    assert_eq!(r.expect_close().await, (0, 504, 20, 10));
}

#[tokio::test]
async fn content_on_unopened_channel_is_505() {
    let mut r = Raw::open().await;
    r.send_frame(header(5, 3)).await;
    assert_eq!(r.expect_close().await.1, 505);
}

#[tokio::test]
async fn body_before_header_is_505() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(1, publish("", "q")).await;
    r.send_frame(AMQPFrame::Body(1, b"abc".to_vec())).await;
    assert_eq!(r.expect_close().await.1, 505);
}

#[tokio::test]
async fn header_without_publish_is_505() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send_frame(header(1, 3)).await;
    assert_eq!(r.expect_close().await.1, 505);
}

#[tokio::test]
async fn method_in_the_middle_of_content_is_505() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(1, publish("", "q")).await;
    r.send(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    )
    .await;
    assert_eq!(r.expect_close().await.1, 505);
}

#[tokio::test]
async fn channel_max_exceeded_is_530() {
    let mut r = Raw::open_with(2, 131072, 0).await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    r.send(3, AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})))
        .await;
    let (ch, code, ..) = r.expect_close().await;
    assert_eq!((ch, code), (0, 530));
}

#[tokio::test]
async fn qos_with_prefetch_size_is_540() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    // basic.qos prefetch_size=1 prefetch_count=0 global=false, which amq-protocol cannot express.
    r.send_bytes(&[
        1, 0, 1, 0, 0, 0, 11, 0, 60, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0xCE,
    ])
    .await;
    assert_eq!(r.expect_close().await, (0, 540, 60, 10));
}

#[tokio::test]
async fn unknown_class_is_refused() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send_bytes(&[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, 0xCE])
        .await;
    if external() {
        // RabbitMQ drops the socket without a close method.
        assert!(r.closed_within(5).await);
    } else {
        assert_eq!(r.expect_close().await.1, 540);
    }
}

#[tokio::test]
async fn channel_error_drops_frames_until_close_ok() {
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "no-such-queue-xyz".into(),
                passive: true,
                ..Default::default()
            },
        )),
    )
    .await;
    let (ch, code, class, method) = r.expect_close().await;
    assert_eq!((ch, code, class, method), (1, 404, 50, 10));
    // Ignored while closing (another error would close it again), then close-ok frees the
    // channel number for reuse.
    r.send(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "no-such-queue-xyz".into(),
                passive: true,
                ..Default::default()
            },
        )),
    )
    .await;
    r.send(
        1,
        AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
    )
    .await;
    r.open_channel(1).await;
}

/// Random bytes after a good handshake: the broker answers with a close or drops the socket,
/// never hangs, and keeps serving other connections.
#[tokio::test]
async fn garbage_after_handshake_is_refused_cleanly() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    for seed in 0..24u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut r = Raw::open().await;
        r.open_channel(1).await;
        let mut junk: Vec<u8> = (0..rng.gen_range(1..600)).map(|_| rng.gen()).collect();
        // Half the time, make it look like a frame header so the parsers get exercised.
        if seed % 2 == 0 && junk.len() > 8 {
            junk[0] = [1u8, 2, 3][rng.gen_range(0..3)];
            junk[1] = 0;
            junk[2] = 1;
            let size = (junk.len() - 8) as u32;
            junk[3..7].copy_from_slice(&size.to_be_bytes());
            let last = junk.len() - 1;
            junk[last] = 0xCE;
        }
        r.send_bytes(&junk).await;
        // Then enough 0xFF to complete any partial frame up to frame_max (with a bad frame-end
        // octet) and to start an invalid one: whatever the junk was, the broker must end up
        // closing (after connection.close, or by dropping the socket), never hang.
        r.send_bytes(&vec![0xFF; 140_000]).await;
        assert!(
            r.ends_within(10).await,
            "seed {seed}: connection left open after garbage"
        );
    }
    // The broker is still fine.
    let (_c, ch) = channel().await;
    ch.queue_declare(
        "".into(),
        lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("broker still serves");
}

#[tokio::test]
async fn close_ok_arrives_even_when_publishes_follow_the_close() {
    // amqplib's pattern: connection.close goes out on channel 0 while publishes queued on a
    // channel are still being flushed behind it. The broker must answer close-ok and keep
    // draining, not drop the socket with unread data (a reset that loses the close-ok).
    let mut r = Raw::open().await;
    r.open_channel(1).await;
    r.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::Close(conn::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    let mut burst = Vec::new();
    for _ in 0..2000 {
        let f = AMQPFrame::Method(1, publish("", "nowhere"));
        burst.extend(
            gen_frame(&f)(WriteContext::from(Vec::new()))
                .expect("gen")
                .into_inner()
                .0,
        );
        burst.extend(
            gen_frame(&header(1, 1000))(WriteContext::from(Vec::new()))
                .expect("gen")
                .into_inner()
                .0,
        );
        let body = AMQPFrame::Body(1, vec![b'b'; 1000]);
        burst.extend(
            gen_frame(&body)(WriteContext::from(Vec::new()))
                .expect("gen")
                .into_inner()
                .0,
        );
    }
    use tokio::io::AsyncWriteExt;
    let written = r.stream.write_all(&burst).await;
    assert!(
        written.is_ok(),
        "the publishes behind the close were reset: {written:?}"
    );
    match r.recv_method().await {
        Some((0, AMQPClass::Connection(conn::AMQPMethod::CloseOk(_)))) => {}
        other => panic!("expected close-ok, got {other:?}"),
    }
}
