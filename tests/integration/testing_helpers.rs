//! Warren's helpers for test suites: reset between tests (in Rust, over HTTP, with warrenctl),
//! wait for a queue's depth or consumers, and peek at messages without taking them. Warren only.

use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

async fn broker() -> warren::BrokerHandle {
    warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        ..Default::default()
    })
    .await
    .expect("start")
}

async fn topology(url: &str) -> Connection {
    let c = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = c.create_channel().await.expect("channel");
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.exchange_declare(
        "events".into(),
        lapin::ExchangeKind::Topic,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_bind(
        "jobs".into(),
        "events".into(),
        "#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    for i in 0..3 {
        ch.basic_publish(
            "events".into(),
            "a".into(),
            Default::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    c
}

async fn passive(url: &str, q: &str) -> Result<u32, lapin::Error> {
    let (_c, ch) = channel_at(url).await;
    ops::passive(&ch, q).await.map(|q| q.message_count())
}

#[tokio::test]
async fn reset_clears_topology_closes_connections_and_keeps_users() {
    if external() {
        return;
    }
    let w = broker().await;
    let url = w.url();
    let mgmt = w.mgmt_addr().expect("mgmt").to_string();
    let conn = topology(&url).await;
    assert_eq!(
        http_at(
            &mgmt,
            Some("guest:guest"),
            "PUT",
            "/api/vhosts/per-test",
            None
        )
        .await
        .0,
        201
    );
    assert_eq!(
        http_at(
            &mgmt,
            Some("guest:guest"),
            "PUT",
            "/api/users/kept",
            Some(json!({"password": "pw", "tags": ""}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        http_at(
            &mgmt,
            Some("guest:guest"),
            "PUT",
            "/api/policies/%2F/cap",
            Some(json!({"pattern": ".*", "definition": {"max-length": 1}}))
        )
        .await
        .0,
        201
    );
    assert!(
        eventually(|| passive_sync_count(&w, "jobs") == Some(1)).await,
        "policy applied"
    );
    w.reset(false).await.expect("reset");
    assert!(
        eventually(|| !conn.status().connected()).await,
        "connections are closed"
    );
    let e = passive(&url, "jobs").await.expect_err("the queue is gone");
    assert_eq!(code(&e), Some(404));
    let (_c, ch) = channel_at(&url).await;
    let e = ch
        .exchange_declare(
            "events".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("the exchange is gone");
    assert_eq!(code(&e), Some(404));
    assert_eq!(
        http_at(
            &mgmt,
            Some("guest:guest"),
            "GET",
            "/api/vhosts/per-test",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        http_at(&mgmt, Some("guest:guest"), "GET", "/api/users/kept", None)
            .await
            .0,
        200
    );
    assert_eq!(
        http_at(
            &mgmt,
            Some("guest:guest"),
            "GET",
            "/api/policies/%2F/cap",
            None
        )
        .await
        .0,
        404
    );
    // Keeping the topology: the messages go, the queue and its bindings stay.
    let _conn = topology(&url).await;
    assert!(eventually(|| passive_sync_count(&w, "jobs") == Some(3)).await);
    let (s, _) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        "/api/warren/reset",
        Some(json!({"keep_topology": true})),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(passive(&url, "jobs").await.expect("still there"), 0);
    let (_c, ch) = channel_at(&url).await;
    ch.basic_publish(
        "events".into(),
        "b".into(),
        Default::default(),
        b"again",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert!(
        eventually(|| passive_sync_count(&w, "jobs") == Some(1)).await,
        "the binding stayed"
    );
    w.stop().await.expect("stop");
}

/// A queue's depth, read in process.
fn passive_sync_count(w: &warren::BrokerHandle, q: &str) -> Option<u32> {
    w.broker().vhost("/")?.queue(q).map(|q| q.message_count())
}

// warrenctl blocks this thread while the broker answers it on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warrenctl_waits_peeks_and_resets() {
    if external() {
        return;
    }
    let w = broker().await;
    let port = w.mgmt_addr().expect("mgmt").port().to_string();
    let ctl = |args: &[&str]| warrenctl(&port, args);
    let (_c, ch) = channel_at(&w.url()).await;
    ch.queue_declare("w".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    let (ok, out) = ctl(&["wait", "queue=w", "messages=2", "timeout=200ms"]);
    assert!(!ok && out.contains("has 0 messages"), "times out: {out}");
    let headers = table(&[("trace-id", s("t-1"))]);
    for body in ["first", "second"] {
        let props = BasicProperties::default()
            .with_headers(headers.clone())
            .with_content_type("text/plain".into());
        ch.basic_publish(
            "".into(),
            "w".into(),
            Default::default(),
            body.as_bytes(),
            props,
        )
        .await
        .expect("publish");
    }
    let (ok, out) = ctl(&["wait", "queue=w", "messages=2", "timeout=5s"]);
    assert!(ok, "{out}");
    let (ok, out) = ctl(&["peek", "queue=w", "count=5"]);
    assert!(ok, "{out}");
    let peeked: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(peeked.as_array().map(Vec::len), Some(2));
    assert_eq!(peeked[0]["payload"], json!("first"));
    assert_eq!(peeked[0]["properties"]["headers"]["trace-id"], json!("t-1"));
    assert_eq!(peeked[0]["properties"]["content_type"], json!("text/plain"));
    // Left in place, and not marked redelivered.
    let got = ch
        .basic_get("w".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("message");
    assert_eq!(
        (got.delivery.data.as_slice(), got.delivery.redelivered),
        (&b"first"[..], false)
    );
    let _consumer = ch
        .basic_consume(
            "w".into(),
            "c".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (ok, out) = ctl(&["wait", "queue=w", "consumers=1"]);
    assert!(ok, "{out}");
    let (ok, out) = ctl(&["reset"]);
    assert!(ok, "{out}");
    let (ok, _) = ctl(&["peek", "queue=w"]);
    assert!(!ok, "the queue went with the reset");
    w.stop().await.expect("stop");
}
