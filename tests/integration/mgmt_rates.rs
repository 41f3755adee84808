//! message_stats and their rates in the management API, shaped as RabbitMQ 3.10's: counts and
//! `*_details.rate` on the overview, queues, exchanges, connections and channels. Runs against
//! RabbitMQ too (its statistics arrive every 5 s, so each check polls).

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use serde_json::Value;
use std::time::Duration;

async fn get(path: &str) -> Value {
    let mgmt = mgmt_addr().expect("management");
    let (status, v) = http_at(&mgmt, Some("guest:guest"), "GET", path, None).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// Poll `path` until `ok` holds (RabbitMQ's statistics lag), returning the last answer.
async fn until(path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = get(path).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never satisfied the check: {last}");
}

fn count(v: &Value, stat: &str) -> u64 {
    v["message_stats"][stat].as_u64().unwrap_or(0)
}

fn rate(v: &Value, stat: &str) -> f64 {
    v["message_stats"][format!("{stat}_details")]["rate"]
        .as_f64()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counts_and_rates_are_shaped_as_rabbitmqs() {
    if mgmt_addr().is_none() {
        return;
    }
    let (c, ch) = channel().await;
    let x = uniq("rates-x");
    let q = uniq("rates-q");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    declare(&ch, &q).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    for _ in 0..10 {
        confirmed(
            &ch,
            x.as_str().into(),
            "k".into(),
            Default::default(),
            b"m",
            Default::default(),
        )
        .await
        .expect("confirmed");
    }
    // Five taken with basic.get and acked, one taken without ack.
    for _ in 0..5 {
        let m = get_within(&ch, &q, false).await.expect("message");
        ch.basic_ack(m.delivery_tag, Default::default())
            .await
            .expect("ack");
    }
    get_within(&ch, &q, true).await.expect("message");
    let queue = until(&format!("/api/queues/%2F/{q}"), |v| {
        count(v, "publish") == 10 && count(v, "ack") == 5
    })
    .await;
    assert_eq!(count(&queue, "get"), 5, "{queue}");
    assert_eq!(count(&queue, "get_no_ack"), 1, "{queue}");
    assert_eq!(count(&queue, "deliver_get"), 6, "{queue}");
    assert!(queue["message_stats"]["publish_details"]["rate"].is_number());
    let xv = until(&format!("/api/exchanges/%2F/{x}"), |v| {
        count(v, "publish_in") == 10 && count(v, "publish_out") == 10
    })
    .await;
    assert!(xv["message_stats"]["publish_in_details"]["rate"].is_number());
    let chans = until("/api/channels", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|c| count(c, "publish") == 10 && count(c, "confirm") == 10)
        })
    })
    .await;
    let mine = chans
        .as_array()
        .and_then(|a| a.iter().find(|c| count(c, "publish") == 10))
        .cloned()
        .expect("this channel");
    assert_eq!(count(&mine, "ack"), 5, "{mine}");
    assert_eq!(count(&mine, "get"), 5, "{mine}");
    assert_eq!(count(&mine, "get_no_ack"), 1, "{mine}");
    let overview = until("/api/overview", |v| count(v, "publish") >= 10).await;
    assert!(overview["message_stats"]["publish_details"]["rate"].is_number());
    let _ = c.close(200, "".into()).await;
}

#[tokio::test]
async fn rates_follow_a_steady_flow() {
    if mgmt_addr().is_none() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("rates-flow");
    declare(&ch, &q).await;
    let publisher = {
        let ch = ch.clone();
        let q = q.clone();
        tokio::spawn(async move {
            loop {
                if ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        b"tick",
                        Default::default(),
                    )
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let queue = until(&format!("/api/queues/%2F/{q}"), |v| {
        rate(v, "publish") > 10.0
    })
    .await;
    assert!(rate(&queue, "publish") < 1000.0, "{queue}");
    let overview = until("/api/overview", |v| rate(v, "publish") > 10.0).await;
    assert!(count(&overview, "publish") > 0);
    publisher.abort();
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .expect("delete");
}
