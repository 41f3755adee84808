//! Firehose tracing as RabbitMQ does it: with tracing on, publishes and deliveries are copied
//! to amq.rabbitmq.trace with RabbitMQ's routing keys and headers. Runs against RabbitMQ too.

use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::json;

fn header<'a>(t: &'a FieldTable, k: &str) -> Option<&'a AMQPValue> {
    t.inner().get(k)
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn tracing_copies_publishes_and_deliveries() {
    if mgmt_addr().is_none() {
        return;
    }
    let mgmt = mgmt_addr().expect("addr");
    let v = uniq("trace");
    let put = |body: serde_json::Value| {
        let (mgmt, path) = (mgmt.clone(), format!("/api/vhosts/{v}"));
        async move {
            http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(body))
                .await
                .0
        }
    };
    assert_eq!(put(json!({})).await, 201);
    let (_c, ch) = channel_at(&format!("amqp://guest:guest@{}/{v}", addr())).await;
    ch.queue_declare("tq".into(), Default::default(), FieldTable::default())
        .await
        .expect("trace queue");
    ch.queue_bind(
        "tq".into(),
        "amq.rabbitmq.trace".into(),
        "#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind to the firehose");
    ch.queue_declare("work".into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    assert_eq!(put(json!({"tracing": true})).await, 204);
    let (_, shown) = http_at(
        &mgmt,
        Some("guest:guest"),
        "GET",
        &format!("/api/vhosts/{v}"),
        None,
    )
    .await;
    assert_eq!(shown["tracing"], json!(true));
    let props = BasicProperties::default().with_headers(table(&[("x", s("1"))]));
    ch.basic_publish(
        "".into(),
        "work".into(),
        Default::default(),
        b"hello",
        props,
    )
    .await
    .expect("publish");
    let got = ops::get_within(&ch, "work", true)
        .await
        .expect("the message");
    assert_eq!(got.delivery.data, b"hello");
    let publish = ops::get_within(&ch, "tq", true)
        .await
        .expect("publish trace");
    assert_eq!(publish.delivery.routing_key.as_str(), "publish.");
    assert_eq!(publish.delivery.data, b"hello");
    let h = publish
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    assert_eq!(text(header(&h, "exchange_name")), "");
    assert_eq!(text(header(&h, "user")), "guest");
    assert_eq!(text(header(&h, "vhost")), v);
    match header(&h, "routed_queues") {
        Some(AMQPValue::FieldArray(a)) => assert_eq!(a.as_slice().len(), 1),
        other => panic!("routed_queues: {other:?}"),
    }
    match header(&h, "properties") {
        Some(AMQPValue::FieldTable(p)) => assert!(p.inner().contains_key("headers"), "{p:?}"),
        other => panic!("properties: {other:?}"),
    }
    let deliver = ops::get_within(&ch, "tq", true)
        .await
        .expect("deliver trace");
    assert_eq!(deliver.delivery.routing_key.as_str(), "deliver.work");
    let h = deliver
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    assert!(
        matches!(header(&h, "redelivered"), Some(v) if matches!(v, AMQPValue::LongInt(0) | AMQPValue::ShortShortInt(0) | AMQPValue::LongLongInt(0) | AMQPValue::ShortInt(0))),
        "{h:?}"
    );
    // Off: nothing more.
    assert_eq!(put(json!({"tracing": false})).await, 204);
    ch.basic_publish(
        "".into(),
        "work".into(),
        Default::default(),
        b"quiet",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    ops::get_within(&ch, "work", true)
        .await
        .expect("the message");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let more = ch
        .basic_get("tq".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(more.is_none(), "tracing is off");
    http_at(
        &mgmt,
        Some("guest:guest"),
        "DELETE",
        &format!("/api/vhosts/{v}"),
        None,
    )
    .await;
}

#[tokio::test]
async fn publishes_through_the_management_api_are_traced_too() {
    if mgmt_addr().is_none() {
        return;
    }
    let mgmt = mgmt_addr().expect("addr");
    let v = uniq("trace-http");
    let vpath = format!("/api/vhosts/{v}");
    let put = |body: serde_json::Value| {
        let (mgmt, path) = (mgmt.clone(), vpath.clone());
        async move {
            http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(body))
                .await
                .0
        }
    };
    assert_eq!(put(json!({})).await, 201);
    let (_c, ch) = channel_at(&format!("amqp://guest:guest@{}/{v}", addr())).await;
    for q in ["tq", "work"] {
        ch.queue_declare(q.into(), Default::default(), FieldTable::default())
            .await
            .expect("queue");
    }
    ch.queue_bind(
        "tq".into(),
        "amq.rabbitmq.trace".into(),
        "publish.#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind to the firehose");
    assert_eq!(put(json!({"tracing": true})).await, 204);
    let (status, body) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        &format!("/api/exchanges/{v}/amq.direct/publish"),
        Some(
            json!({"properties": {}, "routing_key": "work", "payload": "via http",
                    "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!((status, body["routed"].clone()), (200, json!(false)));
    let (status, body) = http_at(
        &mgmt,
        Some("guest:guest"),
        "POST",
        &format!("/api/exchanges/{v}/amq.default/publish"),
        Some(
            json!({"properties": {}, "routing_key": "work", "payload": "via http",
                    "payload_encoding": "string"}),
        ),
    )
    .await;
    assert_eq!((status, body["routed"].clone()), (200, json!(true)));
    let mut keys = Vec::new();
    while let Some(t) = ops::get_within(&ch, "tq", true).await {
        assert_eq!(t.delivery.data, b"via http");
        let h = t.delivery.properties.headers().clone().expect("headers");
        assert_eq!(text(header(&h, "user")), "guest");
        keys.push(t.delivery.routing_key.to_string());
    }
    assert_eq!(keys, ["publish.amq.direct", "publish."]);
    http_at(&mgmt, Some("guest:guest"), "DELETE", &vpath, None).await;
}
