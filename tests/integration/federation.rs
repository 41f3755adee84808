//! Exchange federation between two Warren brokers in this process, as RabbitMQ's federation
//! plugin defines it: `federation-upstream` / `federation-upstream-set` parameters, a policy
//! naming them, a link that mirrors the downstream exchange's bindings upstream and
//! republishes with an `x-received-from` hop, its status, and its removal. The
//! `x-federation-upstream` exchange type (what RabbitMQ's links declare on an upstream Warren)
//! is checked on its own; conformance/federation.py runs both directions against RabbitMQ.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};
use std::time::Duration;

async fn broker() -> warren::BrokerHandle {
    warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        prometheus_port: None,
        in_memory: true,
        ..Default::default()
    })
    .await
    .expect("start")
}

async fn api(
    b: &warren::BrokerHandle,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mgmt = b.mgmt_addr().expect("mgmt").to_string();
    http_at(&mgmt, Some("guest:guest"), method, path, body).await
}

/// The links' statuses once `ok` holds for them (or as last seen after ~10 s).
async fn links_when(b: &warren::BrokerHandle, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, links) = api(b, "GET", "/api/federation-links", None).await;
        assert_eq!(status, 200, "{links}");
        if ok(&links) {
            return links;
        }
        last = links;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

async fn get_within(
    ch: &lapin::Channel,
    q: &str,
    ms: u64,
) -> Option<lapin::message::BasicGetMessage> {
    for _ in 0..ms / 20 {
        if let Some(m) = get_msg(ch, q).await {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Publish to the upstream's `fed.x` with `key` until `body` arrives in the downstream's
/// `fed.q` (bindings reach the upstream asynchronously); false after ~6 s.
async fn arrives(uch: &lapin::Channel, dch: &lapin::Channel, key: &str, body: &[u8]) -> bool {
    for _ in 0..30 {
        publish(uch, "fed.x", key, body).await;
        if let Some(m) = get_within(dch, "fed.q", 200).await {
            return m.delivery.data == body;
        }
    }
    false
}

#[tokio::test]
async fn parameters_and_policies_are_checked_as_rabbitmq_does() {
    if external() {
        return;
    }
    let b = broker().await;
    let put = |name: &str, value: Value| {
        let path = format!("/api/parameters/federation-upstream/%2f/{name}");
        let b = &b;
        async move { api(b, "PUT", &path, Some(json!({ "value": value }))).await }
    };
    assert_eq!(put("up", json!({"uri": "amqp://localhost:1"})).await.0, 201);
    assert_eq!(
        put("up", json!({"uri": "amqp://localhost:2", "max-hops": 2}))
            .await
            .0,
        204
    );
    let (status, body) = put("bad", json!({"exchange": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Key \"uri\" not found in bad"),
        "{body}"
    );
    let (status, body) = put("bad", json!({"uri": "amqp://h", "prefetch-count": "many"})).await;
    assert_eq!(status, 400);
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("prefetch-count should be a number"),
        "{body}"
    );
    let set = json!({"value": [{"upstream": "up", "max-hops": 3}]});
    let (status, _) = api(
        &b,
        "PUT",
        "/api/parameters/federation-upstream-set/%2f/s",
        Some(set),
    )
    .await;
    assert_eq!(status, 201);
    let (_, list) = api(&b, "GET", "/api/parameters/federation-upstream", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["value"]["max-hops"], 2);

    let policy = |definition: Value| json!({"pattern": "^x", "apply-to": "exchanges", "definition": definition});
    let (status, body) = api(
        &b,
        "PUT",
        "/api/policies/%2f/p",
        Some(policy(json!({"federation-upstream": 5}))),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("is not a valid federation upstream name"));
    let both = policy(json!({"federation-upstream": "up", "federation-upstream-set": "s"}));
    let (status, _) = api(&b, "PUT", "/api/policies/%2f/p", Some(both)).await;
    assert_eq!(status, 400);
    let (status, _) = api(
        &b,
        "DELETE",
        "/api/parameters/federation-upstream/%2f/up",
        None,
    )
    .await;
    assert_eq!(status, 204);
    b.stop().await.expect("stop");
}

#[tokio::test]
async fn an_exchange_link_brings_upstream_messages_for_the_downstream_bindings() {
    if external() {
        return;
    }
    let upstream = broker().await;
    let downstream = broker().await;
    let (_uc, uch) = channel_at(&upstream.url()).await;
    let (_dc, dch) = channel_at(&downstream.url()).await;
    dch.exchange_declare(
        "fed.x".into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    declare(&dch, "fed.q").await;
    bind(&dch, "fed.q", "fed.x", "a.*", FieldTable::default()).await;

    // The upstream's cluster name goes into each hop (read from its connection.start).
    let name = json!({"value": "upstream-cluster"});
    let (status, _) = api(
        &upstream,
        "PUT",
        "/api/global-parameters/cluster_name",
        Some(name),
    )
    .await;
    assert!(status == 201 || status == 204, "{status}");
    let uri = upstream.url().replace("/%2f", "");
    let value = json!({"value": {"uri": uri, "reconnect-delay": 0.2}});
    let (status, _) = api(
        &downstream,
        "PUT",
        "/api/parameters/federation-upstream/%2f/up",
        Some(value),
    )
    .await;
    assert_eq!(status, 201);
    let policy = json!({"pattern": "^fed\\.", "apply-to": "exchanges",
                        "definition": {"federation-upstream-set": "all"}});
    let (status, _) = api(&downstream, "PUT", "/api/policies/%2f/fed", Some(policy)).await;
    assert_eq!(status, 201);
    let links = links_when(&downstream, |l| l[0]["status"] == "running").await;
    assert_eq!(links[0]["status"], "running", "{links}");
    assert_eq!(links[0]["exchange"], "fed.x");
    assert_eq!(links[0]["upstream"], "up");
    assert_eq!(links[0]["type"], "exchange");
    assert!(
        !links[0]["uri"]
            .as_str()
            .unwrap_or_default()
            .contains("guest:"),
        "no credentials: {links}"
    );

    // Upstream: the exchange was declared like the downstream one, and the link's queue and
    // internal exchange exist with RabbitMQ's names.
    let (_, xs) = api(&upstream, "GET", "/api/exchanges/%2f", None).await;
    let names: Vec<&str> = xs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert!(names.contains(&"fed.x"), "{names:?}");
    let internal = names
        .iter()
        .find(|n| n.starts_with("federation: fed.x -> "))
        .unwrap_or_else(|| panic!("internal exchange: {names:?}"));
    let (_, x) = api(
        &upstream,
        "GET",
        &format!(
            "/api/exchanges/%2f/{}",
            internal
                .replace(' ', "%20")
                .replace(':', "%3A")
                .replace('>', "%3E")
        ),
        None,
    )
    .await;
    assert_eq!(x["type"], "x-federation-upstream", "{x}");
    assert_eq!(x["internal"], true);

    publish(&uch, "fed.x", "a.b", b"first").await;
    publish(&uch, "fed.x", "c.d", b"not bound downstream").await;
    let m = get_within(&dch, "fed.q", 3000)
        .await
        .expect("federated message");
    assert_eq!(m.delivery.data, b"first");
    assert_eq!(m.delivery.routing_key.as_str(), "a.b");
    let headers = m.delivery.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(hops)) = headers.inner().get("x-received-from") else {
        panic!("x-received-from: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(hop)) = hops.as_slice().first() else {
        panic!("a hop: {hops:?}");
    };
    assert_eq!(str_of(hop, "exchange"), "fed.x");
    assert_eq!(str_of(hop, "cluster-name"), "upstream-cluster");
    assert_eq!(str_of(hop, "vhost"), "/");
    assert!(
        str_of(hop, "uri").starts_with("amqp://127.0.0.1:"),
        "{hop:?}"
    );
    assert!(
        get_within(&dch, "fed.q", 300).await.is_none(),
        "only what the bindings ask for"
    );

    // A new downstream binding reaches the upstream.
    bind(&dch, "fed.q", "fed.x", "c.*", FieldTable::default()).await;
    assert!(
        arrives(&uch, &dch, "c.e", b"after the new binding").await,
        "after binding"
    );

    // A message that has crossed max-hops links already is not brought again.
    let mut headers = FieldTable::default();
    let mut seen = FieldTable::default();
    seen.insert(
        "cluster-name".into(),
        AMQPValue::LongString("elsewhere".into()),
    );
    seen.insert("vhost".into(), AMQPValue::LongString("/".into()));
    headers.insert(
        "x-received-from".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(seen)])),
    );
    publish_props(
        &uch,
        "fed.x",
        "a.z",
        b"hopped",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    publish(&uch, "fed.x", "a.y", b"fresh").await;
    let m = get_within(&dch, "fed.q", 3000).await.expect("fresh");
    assert_eq!(m.delivery.data, b"fresh", "the hopped one was dropped");

    // A restart binds the other internal exchange (" A") before the old one (" B") goes, and
    // messages go on arriving.
    let id = links[0]["id"].as_str().unwrap_or_default().to_string();
    let path = format!("/api/federation-links/vhost/%2f/{id}/warren@localhost/restart");
    assert_eq!(api(&downstream, "DELETE", &path, None).await.0, 204);
    let mut names = Vec::new();
    for _ in 0..50 {
        let (_, xs) = api(&upstream, "GET", "/api/exchanges/%2f", None).await;
        names = xs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str().map(String::from))
            .filter(|n| n.starts_with("federation: fed.x -> "))
            .collect();
        if names.len() == 1 && names[0].ends_with(" A") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(names.len() == 1 && names[0].ends_with(" A"), "{names:?}");
    assert!(
        arrives(&uch, &dch, "a.r", b"after the restart").await,
        "after restart"
    );
    while get_within(&dch, "fed.q", 300).await.is_some() {}

    // Without the policy the link stops and takes its upstream queue and exchange with it.
    let (status, _) = api(&downstream, "DELETE", "/api/policies/%2f/fed", None).await;
    assert_eq!(status, 204);
    let links = links_when(&downstream, |l| l.as_array().is_some_and(Vec::is_empty)).await;
    assert_eq!(links, json!([]));
    let mut gone = false;
    for _ in 0..50 {
        let (_, qs) = api(&upstream, "GET", "/api/queues/%2f", None).await;
        if !qs.as_array().into_iter().flatten().any(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("federation: "))
        }) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the upstream queue is deleted");
    upstream.stop().await.expect("stop");
    downstream.stop().await.expect("stop");
}

#[tokio::test]
async fn the_federation_upstream_exchange_type_forwards_within_its_hops() {
    // What RabbitMQ's federation plugin declares on an upstream: runs against RabbitMQ too
    // when it has the plugin.
    let (_c, ch) = channel().await;
    let x = uniq("fed-up");
    let bad = ch
        .exchange_declare(
            x.as_str().into(),
            lapin::ExchangeKind::Custom("x-federation-upstream".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(bad, 406);
    let (_c, ch) = channel().await;
    let args = table(&[
        ("x-max-hops", AMQPValue::LongLongInt(1)),
        ("x-downstream-name", s("down")),
        ("x-downstream-vhost", s("/")),
    ]);
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Custom("x-federation-upstream".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .expect("declare");
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "", FieldTable::default()).await;
    let hop = |cluster: &str| {
        let mut t = FieldTable::default();
        t.insert("cluster-name".into(), s(cluster));
        t.insert("vhost".into(), s("/"));
        let mut h = FieldTable::default();
        h.insert(
            "x-received-from".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(t)])),
        );
        BasicProperties::default().with_headers(h)
    };
    publish(&ch, &x, "any key", b"plain").await;
    publish_props(&ch, &x, "k", b"one hop already", hop("other")).await;
    publish_props(&ch, &x, "k", b"from the downstream", hop("down")).await;
    publish(&ch, &x, "k", b"plain again").await;
    assert_eq!(drain(&ch, &q).await, vec!["plain", "plain again"]);
    ch.exchange_delete(x.as_str().into(), Default::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_queue_link_pulls_from_upstream_only_while_the_local_queue_has_a_consumer_and_nothing_ready(
) {
    if external() {
        return;
    }
    let upstream = broker().await;
    let downstream = broker().await;
    let (_uc, uch) = channel_at(&upstream.url()).await;
    let (_dc, dch) = channel_at(&downstream.url()).await;
    declare(&uch, "fed.jobs").await;
    declare(&dch, "fed.jobs").await;
    for i in 0..5 {
        publish(&uch, "", "fed.jobs", format!("job {i}").as_bytes()).await;
    }
    let uri = upstream.url();
    let value = json!({"value": {"uri": uri, "reconnect-delay": 0.2, "prefetch-count": 10}});
    let path = "/api/parameters/federation-upstream/%2f/up";
    assert_eq!(api(&downstream, "PUT", path, Some(value)).await.0, 201);
    let policy = json!({"pattern": "^fed\\.", "apply-to": "queues",
                        "definition": {"federation-upstream": "up"}});
    let (status, _) = api(&downstream, "PUT", "/api/policies/%2f/fed", Some(policy)).await;
    assert_eq!(status, 201);
    let links = links_when(&downstream, |l| l[0]["status"] == "running").await;
    assert_eq!(links[0]["type"], "queue", "{links}");
    assert_eq!(links[0]["queue"], "fed.jobs");
    assert_eq!(links[0]["upstream_queue"], "fed.jobs");
    assert_eq!(links[0]["consumer_tag"], "federation-link-up");

    // No consumer downstream: nothing moves.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(message_count(&uch, "fed.jobs").await, 5);
    assert_eq!(message_count(&dch, "fed.jobs").await, 0);

    // A consumer downstream: the upstream's messages come, in order, with their hop.
    let mut c = consume(&dch, "fed.jobs", "local", false).await;
    for i in 0..5 {
        let d = tokio::time::timeout(Duration::from_secs(5), next(&mut c))
            .await
            .expect("federated in time");
        assert_eq!(d.data, format!("job {i}").as_bytes());
        let headers = d.properties.headers().clone().unwrap_or_default();
        let Some(AMQPValue::FieldArray(hops)) = headers.inner().get("x-received-from") else {
            panic!("x-received-from: {headers:?}");
        };
        let Some(AMQPValue::FieldTable(hop)) = hops.as_slice().first() else {
            panic!("a hop: {hops:?}");
        };
        assert_eq!(str_of(hop, "queue"), "fed.jobs");
        assert_eq!(count_of_key(hop, "visit-count"), 1);
        assert_eq!(str_of(&headers, "x-original-routing-key"), "fed.jobs");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let mut drained = false;
    for _ in 0..50 {
        if message_count(&uch, "fed.jobs").await == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(drained, "acked upstream once confirmed downstream");

    // The consumer goes: the link stops pulling.
    dch.basic_cancel("local".into(), Default::default())
        .await
        .expect("cancel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 5..8 {
        publish(&uch, "", "fed.jobs", format!("job {i}").as_bytes()).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(message_count(&uch, "fed.jobs").await, 3, "left upstream");
    upstream.stop().await.expect("stop");
    downstream.stop().await.expect("stop");
}

fn count_of_key(t: &FieldTable, k: &str) -> i64 {
    match t.inner().get(k) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        other => panic!("{k}: {other:?}"),
    }
}
