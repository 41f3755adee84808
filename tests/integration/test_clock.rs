//! The test clock: timers move only when told, and advancing runs everything that falls due
//! in order before it returns. Warren only (RabbitMQ has no such clock).

use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::json;
use std::time::Duration;
use warren::testing::TestBroker;

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    table(pairs)
}

fn count(b: &TestBroker, q: &str) -> Option<u32> {
    b.message_count("/", q)
}

#[tokio::test]
async fn a_retry_ladder_of_one_second_one_minute_one_hour_runs_in_one_advance() {
    if external() {
        return;
    }
    let b = TestBroker::start().await;
    let (_c, ch) = channel_at(&b.url()).await;
    // work -> (reject) -> wait.1s -> work ... ; each rung waits longer, as a back-off does.
    ch.queue_declare("done".into(), Default::default(), FieldTable::default())
        .await
        .expect("done");
    for (q, ttl, next) in [
        ("wait-1h", 3_600_000, "done"),
        ("wait-1m", 60_000, "wait-1h"),
        ("wait-1s", 1_000, "wait-1m"),
    ] {
        let a = args(&[
            ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(next)),
        ]);
        ch.queue_declare(q.into(), Default::default(), a)
            .await
            .expect("rung");
    }
    ch.basic_publish(
        "".into(),
        "wait-1s".into(),
        Default::default(),
        b"job",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert!(
        b.wait_for_messages("/", "wait-1s", 1, Duration::from_secs(5))
            .await
    );
    // Real time does not move it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(count(&b, "wait-1s"), Some(1));
    b.advance(Duration::from_millis(999));
    assert_eq!(count(&b, "wait-1s"), Some(1), "not due yet");
    b.advance(Duration::from_millis(1));
    assert_eq!(
        (count(&b, "wait-1s"), count(&b, "wait-1m")),
        (Some(0), Some(1))
    );
    // One advance across the other two rungs runs them in order.
    let started = std::time::Instant::now();
    b.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        (
            count(&b, "wait-1m"),
            count(&b, "wait-1h"),
            count(&b, "done")
        ),
        (Some(0), Some(0), Some(1))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let m = ch
        .basic_get("done".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the job");
    let deaths = match m
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death").cloned())
    {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().len(),
        other => panic!("x-death: {other:?}"),
    };
    assert_eq!(deaths, 3, "one x-death entry per rung");
}

#[tokio::test]
async fn queue_expiry_and_delayed_messages_follow_the_clock() {
    if external() {
        return;
    }
    let b = TestBroker::start().await;
    let (_c, ch) = channel_at(&b.url()).await;
    ch.queue_declare(
        "short-lived".into(),
        Default::default(),
        args(&[("x-expires", AMQPValue::LongLongInt(60_000))]),
    )
    .await
    .expect("queue");
    ch.exchange_declare(
        "later".into(),
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        Default::default(),
        args(&[("x-delayed-type", s("direct"))]),
    )
    .await
    .expect("delayed exchange");
    ch.queue_declare("due".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    ch.queue_bind(
        "due".into(),
        "later".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let props = BasicProperties::default()
        .with_headers(table(&[("x-delay", AMQPValue::LongLongInt(30 * 60_000))]));
    // Confirmed: the broker holds it (and read the clock) before the test moves the clock.
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    ch.basic_publish(
        "later".into(),
        "k".into(),
        Default::default(),
        b"in half an hour",
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirmed");
    b.advance(Duration::from_secs(29 * 60));
    assert_eq!(count(&b, "due"), Some(0));
    assert_eq!(
        count(&b, "short-lived"),
        None,
        "x-expires of 60 s ran out at minute 1"
    );
    b.advance(Duration::from_secs(60));
    assert_eq!(count(&b, "due"), Some(1), "the delay is over");
}

#[tokio::test]
async fn the_clock_over_http_and_refused_on_the_system_clock() {
    if external() {
        return;
    }
    let b = TestBroker::start().await;
    let mgmt = b.mgmt_addr();
    let (s1, before) = http_at(&mgmt, Some("guest:guest"), "GET", "/api/warren/clock", None).await;
    assert_eq!((s1, before["test"].clone()), (200, json!(true)));
    let (s2, after) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        "/api/warren/clock",
        Some(json!({"advance": "90m"})),
    )
    .await;
    assert_eq!(s2, 200);
    let moved = after["now_ms"].as_u64().unwrap_or(0) - before["now_ms"].as_u64().unwrap_or(0);
    assert_eq!(moved, 90 * 60_000);
    let (s3, set) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        "/api/warren/clock",
        Some(json!({"set": "2030-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(
        (s3, set["now"].clone()),
        (200, json!("2030-01-01T00:00:00.000Z"))
    );
    let (s4, _) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        "/api/warren/clock",
        Some(json!({"set": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s4, 400, "a test clock does not go back");
    // A broker on the system clock refuses.
    let real = warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        ..Default::default()
    })
    .await
    .expect("start");
    let addr = real.mgmt_addr().expect("mgmt").to_string();
    let (s5, _) = http_at(
        &addr,
        Some("guest:guest"),
        "POST",
        "/api/warren/clock",
        Some(json!({"advance": "1s"})),
    )
    .await;
    assert_eq!(s5, 400);
    real.stop().await.expect("stop");
}

#[tokio::test]
async fn consumer_timeout_runs_on_the_test_clock() {
    if external() {
        return;
    }
    let b = TestBroker::with_config(warren::Config {
        consumer_timeout_ms: Some(60_000),
        ..Default::default()
    })
    .await;
    let (c, ch) = channel_at(&b.url()).await;
    ch.queue_declare("slow".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    ch.basic_publish(
        "".into(),
        "slow".into(),
        Default::default(),
        b"job",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = ops::consume(&ch, "slow", "", false).await;
    let d = ops::next(&mut consumer).await;
    assert!(!d.redelivered);
    // Short of the timeout, on the test clock: the channel stays open.
    b.advance_settled(Duration::from_secs(59)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ch.status().connected(), "59 s of a 60 s timeout");
    // Past it, over the management API as a test would from another language: the channel is
    // closed with 406 by the time the call returns, and the delivery is back in its queue.
    let (status, _) = http_at(
        &b.mgmt_addr(),
        Some("guest:guest"),
        "POST",
        "/api/warren/clock",
        Some(json!({"advance": "2s"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        count(&b, "slow"),
        Some(1),
        "requeued when the call returned"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the channel is closed");
    drop(consumer);
    let ch2 = c.create_channel().await.expect("channel");
    let m = ops::get_within(&ch2, "slow", true).await.expect("requeued");
    assert!(m.delivery.redelivered);
}

#[tokio::test]
async fn real_time_does_not_time_out_consumers_on_a_test_clock() {
    if external() {
        return;
    }
    let b = TestBroker::with_config(warren::Config {
        consumer_timeout_ms: Some(100),
        ..Default::default()
    })
    .await;
    let (_c, ch) = channel_at(&b.url()).await;
    ch.queue_declare("held".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    ch.basic_publish(
        "".into(),
        "held".into(),
        Default::default(),
        b"job",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = ops::consume(&ch, "held", "", false).await;
    let _d = ops::next(&mut consumer).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        ch.status().connected(),
        "500 ms of real time past a 100 ms timeout"
    );
    b.advance_settled(Duration::from_millis(150)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "closed once the test clock passed the timeout"
    );
}
