//! Policies and operator policies: API shapes and validation, and what they do to queues and
//! exchanges that already exist. Runs against RabbitMQ 3.10.8 too (which applies a policy a
//! moment later, hence the `eventually`s).

use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::Channel;
use serde_json::{json, Value};

async fn api(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr = mgmt_addr().expect("management address");
    http_at(&addr, Some("guest:guest"), method, path, body).await
}

/// A fresh vhost for one test (policies match by name across a whole vhost).
async fn vhost() -> (String, String) {
    let v = uniq("pol");
    assert_eq!(api("PUT", &format!("/api/vhosts/{v}"), None).await.0, 201);
    let url = format!("amqp://guest:guest@{}/{v}", addr());
    (v, url)
}

async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare")
    .message_count()
}

/// Poll until the queue holds `n` ready messages (RabbitMQ applies policies asynchronously).
async fn until_count(ch: &Channel, q: &str, n: u32) -> u32 {
    let mut last = 0;
    for _ in 0..100 {
        last = count(ch, q).await;
        if last == n {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn policy_api_shapes_and_validation() {
    if mgmt_addr().is_none() {
        return;
    }
    let (v, _) = vhost().await;
    let p = format!("/api/policies/{v}/p1");
    let body = json!({"pattern": "^p", "definition": {"max-length": 5}, "priority": 1, "apply-to": "queues"});
    assert_eq!(api("PUT", &p, Some(body)).await.0, 201);
    assert_eq!(
        api(
            "PUT",
            &p,
            Some(json!({"pattern": "^p", "definition": {"max-length": 6}}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api("GET", &p, None).await,
        (
            200,
            json!({"vhost": v, "name": "p1", "pattern": "^p", "apply-to": "all", "definition": {"max-length": 6}, "priority": 0})
        )
    );
    let (_, all) = api("GET", &format!("/api/policies/{v}"), None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    for (bad, reason) in [
        (
            json!({"pattern": "^p", "definition": {"foo": 1}}),
            "are not recognised policy settings",
        ),
        (
            json!({"pattern": "(", "definition": {"max-length": 1}}),
            "pattern should be regular expression",
        ),
        (
            json!({"pattern": "^p", "definition": {"max-length": -1}}),
            "is not a valid maximum length",
        ),
        (
            json!({"pattern": "^p", "definition": {"message-ttl": "1000"}}),
            "is not a valid message TTL",
        ),
        (
            json!({"pattern": "^p", "definition": {"overflow": "bogus"}}),
            "is not a valid overflow value",
        ),
        (
            json!({"pattern": "^p", "definition": {}}),
            "no policy provided",
        ),
        (
            json!({"pattern": "^p", "definition": {"max-length": 1}, "apply-to": "bogus"}),
            "apply-to 'bogus' unrecognised",
        ),
        (
            json!({"definition": {"max-length": 1}}),
            "key_missing,pattern",
        ),
    ] {
        let (s, e) = api("PUT", &format!("/api/policies/{v}/bad"), Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}");
        let text = e["reason"]
            .as_str()
            .unwrap_or_default()
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        assert!(text.contains(reason), "{bad}: {e}");
    }
    // Operator policies take only limits.
    let op = format!("/api/operator-policies/{v}/op1");
    assert_eq!(
        api(
            "PUT",
            &op,
            Some(json!({"pattern": "^p", "definition": {"dead-letter-exchange": "x"}}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api(
            "PUT",
            &op,
            Some(json!({"pattern": "^p", "definition": {"max-length": 3}, "apply-to": "queues"}))
        )
        .await
        .0,
        201
    );
    let (_, ops) = api("GET", &format!("/api/operator-policies/{v}"), None).await;
    assert_eq!(ops[0]["name"], json!("op1"));
    assert_eq!(api("DELETE", &op, None).await.0, 204);
    assert_eq!(api("DELETE", &p, None).await.0, 204);
    assert_eq!(api("DELETE", &p, None).await.0, 404);
    assert_eq!(api("GET", &p, None).await.0, 404);
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}

#[tokio::test]
async fn policies_apply_to_existing_queues_and_clearing_lifts_them() {
    if mgmt_addr().is_none() {
        return;
    }
    let (v, url) = vhost().await;
    let (_c, ch) = channel_at(&url).await;
    let args = table(&[("x-max-length", lapin::types::AMQPValue::LongInt(10))]);
    ch.queue_declare("pq".into(), QueueDeclareOptions::default(), args)
        .await
        .expect("queue");
    for i in 0..8 {
        ops::publish(&ch, "", "pq", format!("m{i}").as_bytes()).await;
    }
    assert_eq!(until_count(&ch, "pq", 8).await, 8);
    // A policy's lower max-length applies at once to what is queued (oldest dropped).
    let p = format!("/api/policies/{v}/cap");
    assert_eq!(
        api(
            "PUT",
            &p,
            Some(json!({"pattern": "^pq$", "definition": {"max-length": 3}}))
        )
        .await
        .0,
        201
    );
    assert_eq!(until_count(&ch, "pq", 3).await, 3);
    assert_eq!(
        ops::get(&ch, "pq").await.as_deref(),
        Some("m5"),
        "drop-head keeps the newest"
    );
    // The queue's own argument is lower than a looser policy: the lowest wins.
    assert_eq!(
        api(
            "PUT",
            &p,
            Some(json!({"pattern": "^pq$", "definition": {"max-length": 50}}))
        )
        .await
        .0,
        204
    );
    for i in 0..12 {
        ops::publish(&ch, "", "pq", format!("n{i}").as_bytes()).await;
    }
    assert_eq!(until_count(&ch, "pq", 10).await, 10);
    // An operator policy caps below both, and the API shows the combination.
    let op = format!("/api/operator-policies/{v}/ops");
    assert_eq!(
        api(
            "PUT",
            &op,
            Some(json!({"pattern": "^pq", "definition": {"max-length": 4}, "apply-to": "queues"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(until_count(&ch, "pq", 4).await, 4);
    let mut shown = Value::Null;
    for _ in 0..150 {
        shown = api("GET", &format!("/api/queues/{v}/pq"), None).await.1;
        if shown["operator_policy"] == json!("ops") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shown["policy"], json!("cap"), "{shown}");
    assert_eq!(shown["operator_policy"], json!("ops"));
    assert_eq!(
        shown["effective_policy_definition"],
        json!({"max-length": 4})
    );
    // Cleared: only the queue's own x-max-length (10) remains.
    assert_eq!(api("DELETE", &op, None).await.0, 204);
    assert_eq!(api("DELETE", &p, None).await.0, 204);
    for i in 0..20 {
        ops::publish(&ch, "", "pq", format!("o{i}").as_bytes()).await;
    }
    assert_eq!(until_count(&ch, "pq", 10).await, 10);
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}

#[tokio::test]
async fn dead_lettering_and_alternate_exchanges_by_policy() {
    if mgmt_addr().is_none() {
        return;
    }
    let (v, url) = vhost().await;
    let (_c, ch) = channel_at(&url).await;
    for q in ["work", "dead", "stray"] {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
    }
    ch.exchange_declare(
        "dlx".into(),
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    ch.queue_bind(
        "dead".into(),
        "dlx".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.exchange_declare(
        "ae".into(),
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("ae");
    ch.queue_bind(
        "stray".into(),
        "ae".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.exchange_declare(
        "main".into(),
        lapin::ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("main");
    let put = |name: &str, body: Value| {
        let path = format!("/api/policies/{v}/{name}");
        async move { api("PUT", &path, Some(body)).await.0 }
    };
    assert_eq!(put("dl", json!({"pattern": "^work$", "definition": {"dead-letter-exchange": "dlx"}, "apply-to": "queues"})).await, 201);
    assert_eq!(put("alt", json!({"pattern": "^main$", "definition": {"alternate-exchange": "ae"}, "apply-to": "exchanges"})).await, 201);
    // RabbitMQ applies policies a moment later: retry until the effect shows.
    let mut dead = None;
    for i in 0..50 {
        let body = format!("r{i}");
        ops::publish(&ch, "", "work", body.as_bytes()).await;
        let got = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("message");
        got.reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        if let Some(d) = ops::get_within(&ch, "dead", true).await {
            dead = Some(String::from_utf8_lossy(&d.delivery.data).into_owned());
            break;
        }
    }
    assert!(
        dead.is_some_and(|d| d.starts_with('r')),
        "rejected messages reach the policy's DLX"
    );
    let mut stray = None;
    for i in 0..50 {
        ch.basic_publish(
            "main".into(),
            "nowhere".into(),
            Default::default(),
            format!("s{i}").as_bytes(),
            Default::default(),
        )
        .await
        .expect("publish");
        if let Some(s) = ops::get_within(&ch, "stray", true).await {
            stray = Some(s);
            break;
        }
    }
    assert!(
        stray.is_some(),
        "unroutable messages reach the policy's alternate exchange"
    );
    let (_, x) = api("GET", &format!("/api/exchanges/{v}/main"), None).await;
    assert_eq!(x["policy"], json!("alt"));
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}

#[tokio::test]
async fn a_policy_that_cannot_apply_alone_keeps_the_declared_arguments() {
    if mgmt_addr().is_none() {
        return;
    }
    let (v, url) = vhost().await;
    let (_c, ch) = channel_at(&url).await;
    let args = table(&[("x-max-length", lapin::types::AMQPValue::LongInt(2))]);
    ch.queue_declare("kq".into(), QueueDeclareOptions::default(), args)
        .await
        .expect("queue");
    // A routing key without an exchange: valid in a policy, and not a reason to drop x-max-length.
    let p = format!("/api/policies/{v}/rk");
    let body = json!({"pattern": "^kq$", "definition": {"dead-letter-routing-key": "k"}});
    assert_eq!(api("PUT", &p, Some(body)).await.0, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..5 {
        ops::publish(&ch, "", "kq", format!("m{i}").as_bytes()).await;
    }
    assert_eq!(until_count(&ch, "kq", 2).await, 2);
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}
