//! The management HTTP API and warrenctl, over real sockets: what AMQP clients do shows up in
//! the API, and what the API does is seen by AMQP clients. Runs against RabbitMQ's management
//! plugin too when WARREN_TEST_MGMT_ADDR is set beside WARREN_TEST_AMQP_URL.

use crate::common::{ops::*, *};
use lapin::options::*;
use lapin::ConnectionProperties;
use serde_json::{json, Value};

/// One request with guest's credentials (or `auth`), returning (status, JSON body or Null).
async fn http_as(
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let addr = mgmt_addr().expect("management address");
    http_at(&addr, auth, method, path, body).await
}

async fn http(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http_as(Some("guest:guest"), method, path, body).await
}

fn skip() -> bool {
    mgmt_addr().is_none()
}

/// RabbitMQ's management statistics lag by up to its collection interval; Warren's do not.
async fn queue_until(q: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        let (status, v) = http("GET", &format!("/api/queues/%2F/{q}"), None).await;
        if status == 200 && f(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    last
}

#[tokio::test]
async fn queue_counts_follow_amqp() {
    if skip() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&ch, &q, "mgmt-c", false).await;
    let _held = next(&mut consumer).await;
    // RabbitMQ's counters catch up one by one: wait for all of them.
    let v = queue_until(&q, |v| {
        v["messages_unacknowledged"] == 1 && v["messages_ready"] == 2 && v["consumers"] == 1
    })
    .await;
    assert_eq!(v["messages_ready"], 2, "{v}");
    assert_eq!(v["messages_unacknowledged"], 1, "{v}");
    assert_eq!(v["messages"], 3, "{v}");
    assert_eq!(v["consumers"], 1, "{v}");
    assert_eq!(v["exclusive"], true, "{v}");
    let (status, consumers) = http("GET", "/api/consumers/%2F", None).await;
    assert_eq!(status, 200);
    let mine = consumers
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["consumer_tag"] == "mgmt-c")
        .cloned()
        .expect("our consumer is listed");
    assert_eq!(mine["queue"]["name"], q.as_str());
    assert_eq!(mine["ack_required"], true);
    assert_eq!(mine["prefetch_count"], 1);
    _held.ack(BasicAckOptions::default()).await.expect("ack");
    let v = queue_until(&q, |v| {
        v["messages_unacknowledged"] == 1 && v["messages_ready"] == 1
    })
    .await;
    assert_eq!(
        v["messages_ready"], 1,
        "the next message went out on the freed credit: {v}"
    );
    let (status, o) = http("GET", "/api/overview", None).await;
    assert_eq!(status, 200);
    assert!(o["rabbitmq_version"].is_string(), "{o}");
    assert!(
        o["object_totals"]["queues"].as_u64().unwrap_or(0) >= 1,
        "{o}"
    );
}

#[tokio::test]
async fn declare_bind_publish_get_and_delete_through_the_api() {
    if skip() {
        return;
    }
    let q = uniq("mgmt-q");
    let x = uniq("mgmt-x");
    let path = format!("/api/queues/%2F/{q}");
    let (status, _) = http(
        "PUT",
        &path,
        Some(json!({"durable": false, "arguments": {"x-max-length": 10}})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = http(
        "PUT",
        &path,
        Some(json!({"durable": false, "arguments": {"x-max-length": 10}})),
    )
    .await;
    assert_eq!(status, 204, "a redeclare changes nothing");
    let (status, err) = http("PUT", &path, Some(json!({"durable": true}))).await;
    assert_eq!(status, 400);
    assert!(
        err["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("inequivalent arg 'durable'"),
        "{err}"
    );
    let (status, _) = http(
        "PUT",
        &format!("/api/exchanges/%2F/{x}"),
        Some(json!({"type": "direct", "durable": false})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = http(
        "POST",
        &format!("/api/bindings/%2F/e/{x}/q/{q}"),
        Some(json!({"routing_key": "k"})),
    )
    .await;
    assert_eq!(status, 201);

    // An AMQP client sees what the API made.
    let (_c, ch) = channel().await;
    let declared = passive(&ch, &q).await;
    assert!(declared.is_ok(), "{declared:?}");

    let (status, r) = http(
        "POST",
        &format!("/api/exchanges/%2F/{x}/publish"),
        Some(
            json!({"routing_key": "k", "payload": "via-api", "payload_encoding": "string",
                    "properties": {"headers": {"n": 7}, "content_type": "text/plain"}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["routed"], true);
    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message published through the API");
    assert_eq!(got.delivery.data, b"via-api");
    assert_eq!(got.delivery.routing_key.as_str(), "k");
    assert_eq!(
        got.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str()),
        Some("text/plain")
    );
    let header = got
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("n").cloned());
    assert!(
        header.is_some(),
        "headers survive: {:?}",
        got.delivery.properties
    );

    // The binding is listed, and can be deleted by its properties key.
    let (status, bs) = http("GET", &format!("/api/queues/%2F/{q}/bindings"), None).await;
    assert_eq!(status, 200);
    let b = bs
        .as_array()
        .expect("array")
        .iter()
        .find(|b| b["source"] == x.as_str())
        .cloned()
        .expect("binding listed");
    assert_eq!(b["routing_key"], "k");
    let key = b["properties_key"]
        .as_str()
        .expect("properties_key")
        .to_string();
    let (status, _) = http(
        "DELETE",
        &format!("/api/bindings/%2F/e/{x}/q/{q}/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, r) = http(
        "POST",
        &format!("/api/exchanges/%2F/{x}/publish"),
        Some(json!({"routing_key": "k", "payload": "lost", "payload_encoding": "string", "properties": {}})),
    )
    .await;
    assert_eq!(r["routed"], false, "unbound: nothing routes");

    let (status, _) = http("DELETE", &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = http("GET", &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = http("DELETE", &format!("/api/exchanges/%2F/{x}"), None).await;
    assert_eq!(status, 204);
    // The default exchange is "amq.default" in URLs and "" in bodies.
    let (status, d) = http("GET", "/api/exchanges/%2F/amq.default", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (d["name"].as_str(), d["type"].as_str()),
        (Some(""), Some("direct")),
        "{d}"
    );
}

#[tokio::test]
async fn get_requeues_or_takes_and_purge_empties() {
    if skip() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("mgmt-get");
    declare(&ch, &q).await;
    for i in 0..4 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    // Unconfirmed publishes: wait until the queue holds them before reading over HTTP.
    for _ in 0..200 {
        if message_count(&ch, &q).await == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let get = |mode: &'static str, count: u64| {
        let q = q.clone();
        async move {
            http(
                "POST",
                &format!("/api/queues/%2F/{q}/get"),
                Some(json!({"count": count, "ackmode": mode, "encoding": "auto"})),
            )
            .await
        }
    };
    let (status, msgs) = get("ack_requeue_true", 2).await;
    assert_eq!(status, 200);
    let payloads: Vec<&str> = msgs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["payload"].as_str())
        .collect();
    assert_eq!(payloads, ["m0", "m1"], "{msgs}");
    assert_eq!(message_count(&ch, &q).await, 4, "requeued");
    let (_, msgs) = get("ack_requeue_false", 1).await;
    assert_eq!(msgs[0]["payload"], "m0");
    assert_eq!(msgs[0]["redelivered"], true);
    assert_eq!(message_count(&ch, &q).await, 3, "taken");
    let (status, _) = http("DELETE", &format!("/api/queues/%2F/{q}/contents"), None).await;
    assert_eq!(status, 204);
    assert_eq!(message_count(&ch, &q).await, 0, "purged");
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
}

/// The first connection in /api/connections that `f` accepts; RabbitMQ lists new connections
/// after its next statistics tick, so poll for a while.
async fn listed_connection(f: impl Fn(&Value) -> bool) -> Option<Value> {
    for _ in 0..60 {
        let (_, all) = http("GET", "/api/connections", None).await;
        if let Some(c) = all
            .as_array()
            .and_then(|a| a.iter().find(|c| f(c)).cloned())
        {
            return Some(c);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test]
async fn closing_a_connection_forces_it_with_320() {
    if skip() {
        return;
    }
    let name = uniq("mgmt-conn");
    let props = ConnectionProperties::default().with_connection_name(name.clone().into());
    let conn = lapin::Connection::connect(&url(), props)
        .await
        .expect("connect");
    let listed =
        listed_connection(|c| c["client_properties"]["connection_name"] == name.as_str()).await;
    let c = listed.expect("the connection is listed with its client properties");
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    let _ = conn.close(200, "bye".into()).await;

    // A raw client sees the close method itself.
    let mut raw = Raw::open().await;
    let port = raw.stream.local_addr().expect("local addr").port();
    let listed = listed_connection(|c| c["peer_port"] == port).await;
    let c = listed.expect("the raw connection is listed by its peer port");
    let cname = c["name"].as_str().expect("name").to_string();
    let encoded: String = cname
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (status, _) = http("DELETE", &format!("/api/connections/{encoded}"), None).await;
    assert_eq!(status, 204);
    use amq_protocol::protocol::{connection as conn, AMQPClass};
    match raw.recv_method().await {
        Some((0, AMQPClass::Connection(conn::AMQPMethod::Close(c)))) => {
            assert_eq!(c.reply_code, 320);
            assert_eq!(
                c.reply_text.as_str(),
                "CONNECTION_FORCED - Closed via management plugin"
            );
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
}

#[tokio::test]
async fn credentials_are_checked() {
    if skip() {
        return;
    }
    let (status, _) = http_as(None, "GET", "/api/overview", None).await;
    assert_eq!(status, 401);
    let (status, _) = http_as(Some("guest:wrong"), "GET", "/api/queues", None).await;
    assert_eq!(status, 401);
    let (status, _) = http("GET", "/api/queues/%2F/no-such-queue-here", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn metrics_show_queue_depth() {
    if skip() || external() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"x").await;
    publish(&ch, "", &q, b"y").await;
    assert_eq!(message_count(&ch, &q).await, 2);
    let addr = mgmt_addr().expect("addr");
    let scrape = |auth: &'static str| {
        let addr = addr.clone();
        async move {
            let a = warren::mgmt::client::Target::new(addr, (!auth.is_empty()).then_some(auth))
                .send("GET", "/metrics", None, &[])
                .await
                .expect("answer");
            (a.status, a.body.as_str().unwrap_or_default().to_string())
        }
    };
    // Queue names are not for anyone who can reach the port.
    let (status, raw) = scrape("").await;
    assert_eq!(status, 401, "{raw}");
    let (status, raw) = scrape("guest:guest").await;
    assert_eq!(status, 200, "{raw}");
    let line = format!("warren_queue_messages_ready{{vhost=\"/\",queue=\"{q}\"}} 2");
    assert!(raw.contains(&line), "missing {line}");
}

#[tokio::test]
async fn warrenctl_manages_queues() {
    if skip() || external() {
        return;
    }
    let addr = mgmt_addr().expect("addr");
    let port = addr.rsplit(':').next().expect("port").to_string();
    let q = uniq("ctl-q");
    let ctl = |args: &[&str]| warrenctl(&port, args);
    let name = format!("name={q}");
    let (ok, out) = ctl(&["declare", "queue", &name, "durable=false"]);
    assert!(ok, "{out}");
    let key = format!("routing_key={q}");
    let (ok, out) = ctl(&["publish", &key, "payload=hello ctl"]);
    assert!(
        ok && out.contains("published") && !out.contains("NOT"),
        "{out}"
    );
    let (ok, out) = ctl(&[
        "--format",
        "tsv",
        "list",
        "queues",
        "name",
        "messages_ready",
    ]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l == format!("{q}\t1")), "{out}");
    let qarg = format!("queue={q}");
    let (ok, out) = ctl(&["get", &qarg, "ackmode=ack_requeue_false"]);
    assert!(ok && out.contains("hello ctl"), "{out}");
    let (ok, out) = ctl(&["list_queues", "name", "messages"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [q.as_str(), "0"]),
        "{out}"
    );
    let (ok, out) = ctl(&["delete", "queue", &name]);
    assert!(ok, "{out}");
    let (ok, out) = ctl(&["delete", "queue", &name]);
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = ctl(&["--password", "nope", "overview"]);
    assert!(!ok && out.contains("access refused"), "{out}");
}

fn sample_definitions(x: &str, q: &str, vhost: &str) -> Value {
    json!({
        "rabbit_version": "3.10.8",
        "exchanges": [
            {"name": x, "vhost": vhost, "type": "topic", "durable": false, "auto_delete": false,
             "internal": false, "arguments": {}},
            {"name": format!("{x}-e2e"), "vhost": vhost, "type": "fanout", "durable": false,
             "auto_delete": false, "internal": false, "arguments": {}}
        ],
        "queues": [
            {"name": q, "vhost": vhost, "durable": false, "auto_delete": false,
             "arguments": {"x-max-length": 5}}
        ],
        "bindings": [
            {"source": x, "vhost": vhost, "destination": q, "destination_type": "queue",
             "routing_key": "a.#", "arguments": {}},
            {"source": format!("{x}-e2e"), "vhost": vhost, "destination": x,
             "destination_type": "exchange", "routing_key": "", "arguments": {}}
        ]
    })
}

#[tokio::test]
async fn definitions_import_declares_topology() {
    if skip() {
        return;
    }
    let (x, q) = (uniq("defs-x"), uniq("defs-q"));
    let defs = sample_definitions(&x, &q, "/");
    let (status, body) = http("POST", "/api/definitions", Some(defs.clone())).await;
    assert!(status == 204 || status == 201, "{status} {body}");
    let (status, _) = http("POST", "/api/definitions", Some(defs)).await;
    assert!(
        status == 204 || status == 201,
        "importing twice changes nothing"
    );

    // Published through the exchange-to-exchange binding and the topic binding.
    let (_c, ch) = channel().await;
    publish(&ch, &format!("{x}-e2e"), "a.b", b"via-defs").await;
    let got = get_within(&ch, &q, true).await.map(|m| m.delivery.data);
    assert_eq!(got.as_deref(), Some(&b"via-defs"[..]));
    let (_, v) = http("GET", &format!("/api/queues/%2F/{q}"), None).await;
    assert_eq!(v["arguments"]["x-max-length"], 5, "{v}");

    // As in RabbitMQ, an existing queue described differently is left as it is.
    let clash = json!({"queues": [{"name": q, "vhost": "/", "durable": true, "auto_delete": false,
                                   "arguments": {}}]});
    let (status, err) = http("POST", "/api/definitions", Some(clash)).await;
    assert!(status == 204 || status == 201, "{status} {err}");
    let (_, v) = http("GET", &format!("/api/queues/%2F/{q}"), None).await;
    assert_eq!(v["durable"], false, "{v}");
    assert_eq!(v["arguments"]["x-max-length"], 5, "{v}");
    for path in [
        format!("/api/queues/%2F/{q}"),
        format!("/api/exchanges/%2F/{x}-e2e"),
        format!("/api/exchanges/%2F/{x}"),
    ] {
        http("DELETE", &path, None).await;
    }
}

#[tokio::test]
async fn definitions_for_a_missing_vhost_apply_nothing() {
    if skip() || external() {
        return;
    }
    let (x, q) = (uniq("defs-x"), uniq("defs-q"));
    let mut defs = sample_definitions(&x, &q, "/");
    defs["bindings"][1]["vhost"] = json!("no-such-vhost");
    let (status, err) = http("POST", "/api/definitions", Some(defs)).await;
    assert_eq!(status, 400);
    assert!(
        err["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-vhost"),
        "{err}"
    );
    let (status, _) = http("GET", &format!("/api/exchanges/%2F/{x}"), None).await;
    assert_eq!(status, 404, "nothing was applied");
}

#[tokio::test]
async fn warren_loads_definitions_at_boot() {
    if external() {
        return;
    }
    let dir = crate::process::temp_dir("defs-boot");
    let file = dir.with_extension("json");
    let (x, q) = ("boot-x", "boot-q");
    std::fs::write(&file, sample_definitions(x, q, "/").to_string()).expect("write definitions");
    let file_arg = file.to_string_lossy().to_string();
    let w = crate::process::Warren::start(&dir, &["--definitions", &file_arg, "--mgmt-port", "0"])
        .await;
    let conn = lapin::Connection::connect(&w.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    publish(&ch, x, "a.z", b"booted").await;
    let got = get_within(&ch, q, true).await.map(|m| m.delivery.data);
    assert_eq!(got.as_deref(), Some(&b"booted"[..]));
    w.stop().await;

    // A file that cannot be applied stops the broker with an error naming it.
    std::fs::write(
        &file,
        "{\"queues\": [{\"name\": \"q\", \"vhost\": \"elsewhere\"}]}",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--mgmt-port",
            "0",
            "--in-memory",
            "--definitions",
            &file_arg,
        ])
        .output()
        .expect("run warren");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot load definitions") && stderr.contains("elsewhere"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn overview_reports_the_rabbitmq_version_tools_compare_with() {
    if skip() {
        return;
    }
    let (st, o) = http("GET", "/api/overview", None).await;
    assert_eq!(st, 200);
    assert_eq!(o["rabbitmq_version"], "3.10.8");
    assert_eq!(o["product_version"], "3.10.8");
    if !external() {
        assert_eq!(o["product_name"], "Warren");
        assert!(o["warren_version"].is_string());
    }
}

#[tokio::test]
async fn values_that_cannot_be_shortstrs_or_nest_too_deep_are_400() {
    if skip() || external() {
        return;
    }
    let long = "n".repeat(300);
    let (st, _) = http("PUT", &format!("/api/queues/%2F/{long}"), Some(json!({}))).await;
    assert_eq!(st, 400, "long queue name");
    let (st, _) = http(
        "PUT",
        &format!("/api/exchanges/%2F/{long}"),
        Some(json!({"type": "direct"})),
    )
    .await;
    assert_eq!(st, 400, "long exchange name");
    let (st, _) = http(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(json!({"routing_key": long, "payload": "x", "payload_encoding": "string", "properties": {}})),
    )
    .await;
    assert_eq!(st, 400, "long routing key");
    let (st, _) = http(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(json!({"routing_key": "q", "payload": "x", "payload_encoding": "string", "properties": {"message_id": long}})),
    )
    .await;
    assert_eq!(st, 400, "long shortstr property");
    let mut args = json!({});
    args[&long] = json!(1);
    let (st, _) = http(
        "PUT",
        "/api/queues/%2F/long-arg-key",
        Some(json!({"arguments": args})),
    )
    .await;
    assert_eq!(st, 400, "long argument name");
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let (st, _) = http(
        "PUT",
        "/api/queues/%2F/deep-args",
        Some(json!({"arguments": {"x": deep}})),
    )
    .await;
    assert_eq!(st, 400, "deep arguments");
    // Still serving.
    let (st, _) = http("GET", "/api/overview", None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_bad_definitions_file_changes_nothing_and_names_the_entry() {
    if skip() || external() {
        return;
    }
    let x = uniq("defs-x");
    let q = uniq("defs-q");
    let missing = uniq("defs-missing");
    let file = json!({
        "exchanges": [{"name": x, "vhost": "/", "type": "topic", "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}}],
        "queues": [{"name": q, "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
        "bindings": [{"source": x, "vhost": "/", "destination": missing, "destination_type": "queue",
                      "routing_key": "k", "arguments": {}}],
    });
    let (st, v) = http("POST", "/api/definitions", Some(file)).await;
    assert_eq!(st, 400);
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&missing), "{reason}");
    let (st, _) = http("GET", &format!("/api/exchanges/%2F/{x}"), None).await;
    assert_eq!(st, 404, "nothing of a refused file is applied");
    let (st, _) = http("GET", &format!("/api/queues/%2F/{q}"), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn an_export_imports_again() {
    if skip() || external() {
        return;
    }
    // A durable exchange bound to an exclusive queue: the binding cannot be exported (its
    // queue is not), or the file would not import.
    let (_c, ch) = channel().await;
    let x = uniq("export-x");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("x");
    let excl = temp_queue(&ch).await;
    bind(&ch, &excl, &x, "", Default::default()).await;
    let (st, defs) = http("GET", "/api/definitions", None).await;
    assert_eq!(st, 200);
    let bindings = defs["bindings"].as_array().cloned().unwrap_or_default();
    assert!(
        !bindings.iter().any(|b| b["destination"] == excl.as_str()),
        "a binding to an exclusive queue was exported"
    );
    let fresh = warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        ..Default::default()
    })
    .await
    .expect("start");
    let addr = fresh.mgmt_addr().expect("mgmt").to_string();
    let (status, answer) = http_at(
        &addr,
        Some("guest:guest"),
        "POST",
        "/api/definitions",
        Some(defs),
    )
    .await;
    assert_eq!(status, 204, "{answer}");
    fresh.shutdown().await;
}

#[tokio::test]
async fn publishing_over_http_is_checked_as_over_amqp() {
    if skip() {
        return;
    }
    let x = uniq("internal-x");
    let (st, _) = http(
        "PUT",
        &format!("/api/exchanges/%2F/{x}"),
        Some(json!({"type": "fanout", "internal": true, "durable": false})),
    )
    .await;
    assert!(st == 201 || st == 204, "{st}");
    let publish = |exchange: String, properties: Value| async move {
        http(
            "POST",
            &format!("/api/exchanges/%2F/{exchange}/publish"),
            Some(
                json!({"routing_key": "k", "payload": "x", "payload_encoding": "string",
                        "properties": properties}),
            ),
        )
        .await
    };
    let (st, _) = publish(x.clone(), json!({})).await;
    assert_eq!(st, 400, "an internal exchange takes no publishes");
    let (st, _) = publish("amq.default".into(), json!({"user_id": "someone-else"})).await;
    assert_eq!(st, 400, "user_id must be the publisher's");
    let (st, _) = publish("amq.default".into(), json!({"expiration": "soon"})).await;
    assert_eq!(st, 400, "expiration must be a number of ms");
    let (st, v) = publish("amq.default".into(), json!({"user_id": "guest"})).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn single_active_consumer_shows_which_one_is_active() {
    if skip() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("sac");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        table(&[(
            "x-single-active-consumer",
            lapin::types::AMQPValue::Boolean(true),
        )]),
    )
    .await
    .expect("declare");
    let _first = consume(&ch, &q, "first", false).await;
    let ch2 = _c.create_channel().await.expect("ch2");
    let _second = consume(&ch2, &q, "second", false).await;
    let mut listed = Vec::new();
    for _ in 0..80 {
        let (_, v) = http("GET", "/api/consumers/%2F", None).await;
        listed = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["queue"]["name"] == q.as_str())
            .collect();
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    let by_tag = |t: &str| {
        listed
            .iter()
            .find(|c| c["consumer_tag"] == t)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_tag("first")["active"], true);
    assert_eq!(by_tag("second")["active"], false);
    assert_eq!(by_tag("first")["activity_status"], "single_active");
    assert_eq!(by_tag("second")["activity_status"], "waiting");
}

#[tokio::test]
async fn health_checks_answer_as_rabbitmqs() {
    if skip() {
        return;
    }
    let amqp_port = addr().rsplit(':').next().unwrap_or("0").to_string();
    for (path, status) in [
        (format!("/api/health/checks/port-listener/{amqp_port}"), 200),
        ("/api/health/checks/port-listener/1".to_string(), 503),
        ("/api/health/checks/protocol-listener/amqp".to_string(), 200),
        (
            "/api/health/checks/protocol-listener/amqp091".to_string(),
            200,
        ),
        ("/api/health/checks/protocol-listener/mqtt".to_string(), 503),
        ("/api/health/checks/virtual-hosts".to_string(), 200),
        (
            "/api/health/checks/node-is-quorum-critical".to_string(),
            200,
        ),
        (
            "/api/health/checks/node-is-mirror-sync-critical".to_string(),
            200,
        ),
        (
            "/api/health/checks/certificate-expiration/1/months".to_string(),
            200,
        ),
        ("/api/health/checks/alarms".to_string(), 200),
        ("/api/health/checks/local-alarms".to_string(), 200),
    ] {
        let (st, v) = http("GET", &path, None).await;
        assert_eq!(st, status, "{path}: {v}");
        let want = if status == 200 { "ok" } else { "failed" };
        assert_eq!(v["status"], want, "{path}: {v}");
    }
    let (_, v) = http("GET", "/api/health/checks/port-listener/1", None).await;
    assert_eq!(v["reason"], "No active listener");
    assert_eq!(v["missing"], 1);
    let (_, v) = http("GET", "/api/health/checks/protocol-listener/amqp091", None).await;
    assert_eq!(v["protocol"], "amqp");
    let (st, v) = http("GET", "/api/cluster-name", None).await;
    assert_eq!(st, 200);
    assert!(v["name"].is_string(), "{v}");
    if !external() {
        let long = "n".repeat(100_000);
        let (st, _) = http("PUT", "/api/cluster-name", Some(json!({ "name": long }))).await;
        assert_eq!(st, 400, "an unbounded cluster name is refused");
    }
}

#[tokio::test]
async fn the_default_exchange_lists_its_implicit_bindings_as_amq_default() {
    if skip() {
        return;
    }
    let (_c, ch) = channel().await;
    let q = uniq("implicit");
    declare(&ch, &q).await;
    let (status, v) = http(
        "GET",
        "/api/exchanges/%2F/amq.default/bindings/source",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let found = v.as_array().is_some_and(|bs| {
        bs.iter().any(|b| {
            b["destination"] == q.as_str() && b["routing_key"] == q.as_str() && b["source"] == ""
        })
    });
    assert!(found, "{v}");
    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
}

#[tokio::test]
async fn move_takes_every_ready_message_to_another_queue_in_order() {
    if skip() || external() {
        return; // Warren's own endpoint (RabbitMQ's UI moves messages with a shovel)
    }
    let (_c, ch) = channel().await;
    let (from, to) = (uniq("move-from"), uniq("move-to"));
    for q in [&from, &to] {
        declare(&ch, q).await;
    }
    for i in 0..5 {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        publish_props(&ch, "", &from, format!("m{i}").as_bytes(), props).await;
    }
    assert!(queue_until(&from, |v| v["messages"] == 5).await["messages"] == 5);
    let path = format!("/api/queues/%2F/{from}/move");
    let (status, v) = http("POST", &path, Some(json!({"destination": to}))).await;
    assert_eq!((status, &v["moved"]), (200, &json!(5)), "{v}");
    assert_eq!(drain(&ch, &to).await, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(message_count(&ch, &from).await, 0);
    let (status, _) = http("POST", &path, Some(json!({"destination": "no-such-queue"}))).await;
    assert_eq!(status, 404);
    let (status, _) = http("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 400);
    for q in [&from, &to] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

#[tokio::test]
async fn a_long_move_goes_on_in_the_background_and_stops_at_what_was_there() {
    if skip() || external() {
        return; // Warren's own endpoint
    }
    let (_c, ch) = channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    let (from, to) = (uniq("move-long-from"), uniq("move-long-to"));
    for q in [&from, &to] {
        declare(&ch, q).await;
    }
    let n = 12_000;
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            ch.basic_publish(
                "".into(),
                from.as_str().into(),
                Default::default(),
                format!("m{i}").as_bytes(),
                Default::default(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        p.await.expect("confirm");
    }
    let path = format!("/api/queues/%2F/{from}/move");
    let (status, v) = http("POST", &path, Some(json!({"destination": to}))).await;
    assert_eq!((status, &v["moving"]), (202, &json!(n)), "{v}");
    // Published after the request: not part of the move.
    publish(&ch, "", &from, b"later").await;
    let moved = queue_until(&to, |v| v["messages"] == n).await;
    assert_eq!(moved["messages"], n, "{moved}");
    assert_eq!(message_count(&ch, &from).await, 1, "what came later stays");
    assert_eq!(get(&ch, &to).await.as_deref(), Some("m0"), "in order");
    for q in [&from, &to] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

#[tokio::test]
async fn a_move_into_a_full_queue_leaves_what_it_refuses_in_the_source() {
    if skip() || external() {
        return; // Warren's own endpoint
    }
    let (_c, ch) = channel().await;
    let (from, to) = (uniq("move-full-from"), uniq("move-full-to"));
    declare(&ch, &from).await;
    let full = table(&[
        ("x-max-length", lapin::types::AMQPValue::LongInt(3)),
        (
            "x-overflow",
            lapin::types::AMQPValue::LongString("reject-publish".into()),
        ),
    ]);
    ch.queue_declare(to.as_str().into(), Default::default(), full)
        .await
        .expect("declare");
    for i in 0..5 {
        publish(&ch, "", &from, format!("m{i}").as_bytes()).await;
    }
    assert!(queue_until(&from, |v| v["messages"] == 5).await["messages"] == 5);
    let path = format!("/api/queues/%2F/{from}/move");
    let (status, v) = http("POST", &path, Some(json!({"destination": to}))).await;
    assert_eq!((status, &v["moved"]), (200, &json!(3)), "{v}");
    assert_eq!(drain(&ch, &to).await, ["m0", "m1", "m2"]);
    assert_eq!(
        drain(&ch, &from).await,
        ["m3", "m4"],
        "refused, kept in order"
    );
    for q in [&from, &to] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}
