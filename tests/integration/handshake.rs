//! Handshake: protocol header, capabilities, SASL, tune negotiation, vhosts, heartbeats.

use crate::common::*;
use amq_protocol::protocol::{connection as conn, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn lapin_connects_and_closes() {
    let c = connect().await;
    let ch = c.create_channel().await.expect("channel");
    assert!(ch.status().connected());
    c.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn start_advertises_rabbitmq_shaped_properties() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    let Some((0, AMQPClass::Connection(conn::AMQPMethod::Start(start)))) = r.recv_method().await
    else {
        panic!("expected connection.start");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(start.mechanisms.to_string(), "PLAIN AMQPLAIN");
    assert_eq!(start.locales.to_string(), "en_US");
    let props = start.server_properties.inner();
    for key in [
        "product",
        "version",
        "platform",
        "cluster_name",
        "copyright",
        "information",
    ] {
        assert!(props.contains_key(key), "missing {key}");
    }
    let Some(AMQPValue::FieldTable(caps)) = props.get("capabilities") else {
        panic!("no capabilities");
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&AMQPValue::Boolean(true)),
            "{cap}"
        );
    }
    if !external() {
        assert_eq!(props.get("product"), Some(&s("Warren")));
        assert!(props.contains_key("warren_version"));
    }
    // Clients pick features by `version`: the RabbitMQ release whose behaviour this is.
    assert_eq!(props.get("version"), Some(&s("3.10.8")));
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_close() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x08\x00").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        r.stream.read_to_end(&mut got),
    )
    .await;
    assert_eq!(got, b"AMQP\x00\x00\x09\x01");
}

#[tokio::test]
async fn bad_credentials_are_refused_with_403() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    r.start_ok("PLAIN", b"\0guest\0wrong").await;
    let (ch, code, class, method) = r.expect_close().await;
    assert_eq!((ch, code), (0, 403));
    assert_eq!((class, method), (0, 0));
    let bad = lapin::Connection::connect(
        &url().replace("guest:guest", "guest:nope"),
        lapin::ConnectionProperties::default(),
    )
    .await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn amqplain_login_works() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    let creds = amq_protocol::auth::Credentials::new("guest".into(), "guest".into());
    let resp = creds.sasl_auth_string(amq_protocol::auth::SASLMechanism::AMQPlain);
    r.start_ok("AMQPLAIN", resp.as_bytes()).await;
    match r.recv_method().await {
        Some((0, AMQPClass::Connection(conn::AMQPMethod::Tune(t)))) => {
            assert_eq!(
                (t.channel_max, t.frame_max, t.heartbeat),
                (2047, 131072, 60)
            );
        }
        other => panic!("expected tune, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_plain_response_is_refused() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    r.start_ok("PLAIN", b"no-nul-bytes-here").await;
    // RabbitMQ refuses the login; Warren answers with a clear close before dropping the socket.
    if external() {
        assert!(r.closed_within(5).await);
    } else {
        let (ch, code, _, _) = r.expect_close().await;
        assert_eq!((ch, code), (0, 502));
    }
}

async fn tune_refused(channel_max: u16, frame_max: u32) -> (u16, u16) {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    r.start_ok("PLAIN", b"\0guest\0guest").await;
    r.recv_method().await.expect("tune");
    r.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::TuneOk(conn::TuneOk {
            channel_max,
            frame_max,
            heartbeat: 0,
        })),
    )
    .await;
    r.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::Open(conn::Open {
            virtual_host: "/".into(),
        })),
    )
    .await;
    if external() {
        // RabbitMQ 3.10 logs the 530 and drops the socket (after a 3 s delay) without a close
        // method; Warren sends connection.close 530 first, which clients can report.
        assert!(r.closed_within(10).await);
        return (0, 530);
    }
    let (ch, code, _, _) = r.expect_close().await;
    (ch, code)
}

#[tokio::test]
async fn tune_ok_outside_limits_is_530() {
    assert_eq!(tune_refused(0, 131072).await, (0, 530));
    assert_eq!(tune_refused(4000, 131072).await, (0, 530));
    assert_eq!(tune_refused(2047, 0).await, (0, 530));
    assert_eq!(tune_refused(2047, 200_000).await, (0, 530));
    assert_eq!(tune_refused(2047, 1000).await, (0, 530));
}

#[tokio::test]
async fn tune_ok_within_limits_is_adopted() {
    let mut r = Raw::open_with(10, 4096, 0).await;
    r.open_channel(10).await;
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let mut r = Raw::tcp().await;
    r.send_open(2047, 131072, 0, "no-such-vhost").await;
    let (ch, code, class, method) = r.expect_close().await;
    assert_eq!((ch, code, class, method), (0, 530, 10, 40));
}

#[tokio::test]
async fn server_sends_heartbeats_and_drops_silent_peers() {
    let mut r = Raw::open_with(2047, 131072, 1).await;
    let mut saw_heartbeat = false;
    for _ in 0..5 {
        match r.recv().await {
            Some(amq_protocol::frame::AMQPFrame::Heartbeat) => {
                saw_heartbeat = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(saw_heartbeat, "no heartbeat from the server");
    // We stay silent: two missed intervals and the server must hang up.
    assert!(r.closed_within(6).await, "silent peer was not disconnected");
}

#[tokio::test]
async fn client_heartbeats_keep_the_connection() {
    let mut r = Raw::open_with(2047, 131072, 1).await;
    for _ in 0..6 {
        r.send_frame(amq_protocol::frame::AMQPFrame::Heartbeat)
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    r.open_channel(1).await;
}

#[tokio::test]
async fn handshake_that_never_completes_is_closed() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    // No start-ok: RabbitMQ's handshake_timeout is 10 s.
    assert!(r.closed_within(14).await);
}

#[tokio::test]
async fn client_properties_without_capabilities_still_connect() {
    let mut r = Raw::tcp().await;
    r.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    r.recv_method().await.expect("start");
    r.send(
        0,
        AMQPClass::Connection(conn::AMQPMethod::StartOk(conn::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: b"\0guest\0guest".to_vec().into(),
            locale: "en_US".into(),
        })),
    )
    .await;
    assert!(matches!(
        r.recv_method().await,
        Some((0, AMQPClass::Connection(conn::AMQPMethod::Tune(_))))
    ));
}
