//! Dynamic shovels between two Warren brokers in this process: RabbitMQ's `shovel` parameter
//! over the management API, messages moved with on-confirm acks, status, delete-after, a
//! destination that goes away and comes back, and removal. Warren-only here (RabbitMQ needs
//! its shovel plugin; the cluster scenarios of issue 17 are still to come).

use crate::common::ops::*;
use crate::common::*;
use crate::process::free_port;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::Channel;
use serde_json::{json, Value};
use std::time::Duration;

async fn broker(port: u16, dir: Option<std::path::PathBuf>) -> warren::BrokerHandle {
    warren::start(warren::Config {
        port,
        mgmt_port: Some(0),
        prometheus_port: None,
        in_memory: dir.is_none(),
        data_dir: dir,
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

async fn durable_queue(ch: &Channel, q: &str) {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
}

async fn publish_n(ch: &Channel, q: &str, from: usize, n: usize) {
    let mut pending = Vec::new();
    for i in from..from + n {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.into(),
                Default::default(),
                i.to_string().as_bytes(),
                persistent(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(p.await.expect("confirm").is_ack());
    }
}

async fn depth(url: &str, q: &str) -> u32 {
    let (_c, ch) = channel_at(url).await;
    passive(&ch, q).await.map_or(0, |q| q.message_count())
}

async fn wait_depth(url: &str, q: &str, n: u32, secs: u64) -> u32 {
    let mut last = 0;
    for _ in 0..secs * 10 {
        last = depth(url, q).await;
        if last == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shovel_moves_every_message_in_order_and_stops_when_cleared() {
    if external() {
        return;
    }
    let (a, b) = (broker(0, None).await, broker(0, None).await);
    let (_ca, cha) = channel_at(&a.url()).await;
    cha.confirm_select(Default::default())
        .await
        .expect("confirms");
    durable_queue(&cha, "outbox").await;
    publish_n(&cha, "outbox", 0, 2000).await;
    let value = json!({"value": {
        "src-protocol": "amqp091", "src-uri": "amqp://", "src-queue": "outbox",
        "dest-protocol": "amqp091", "dest-uri": b.url(), "dest-queue": "inbox",
        "dest-add-forward-headers": true, "reconnect-delay": 0.2
    }});
    let (status, body) = api(&a, "PUT", "/api/parameters/shovel/%2F/move", Some(value)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(wait_depth(&b.url(), "inbox", 2000, 20).await, 2000);
    assert_eq!(depth(&a.url(), "outbox").await, 0);
    let (_, shovels) = api(&a, "GET", "/api/shovels", None).await;
    assert_eq!(shovels[0]["name"], "move");
    assert_eq!(shovels[0]["state"], "running", "{shovels}");
    assert_eq!(shovels[0]["src_queue"], "outbox");
    assert!(
        !shovels[0]["dest_uri"]
            .as_str()
            .unwrap_or("")
            .contains(":guest@"),
        "password hidden"
    );
    let (_, listed) = api(&a, "GET", "/api/parameters/shovel", None).await;
    assert_eq!(listed[0]["value"]["dest-queue"], "inbox");
    let (_, defs) = api(&a, "GET", "/api/definitions", None).await;
    assert!(defs["parameters"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["component"] == "shovel")));
    // In order, and marked as shovelled.
    let (_cb, chb) = channel_at(&b.url()).await;
    let first = chb
        .basic_get("inbox".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    let headers = first
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(headers.inner().contains_key("x-shovelled"), "{headers:?}");
    assert_eq!(first.delivery.data, b"0");
    let rest: Vec<usize> = drain(&chb, "inbox")
        .await
        .iter()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(rest, (1..2000).collect::<Vec<_>>());
    // warrenctl shows it, and clears it: it stops, and new messages stay where they are.
    let port = a.mgmt_addr().expect("mgmt").port().to_string();
    let (ok, out) = warrenctl(&port, &["shovel_status"]);
    assert!(
        ok && out.contains("move") && out.contains("running"),
        "{out}"
    );
    let (ok, out) = warrenctl(&port, &["clear_parameter", "shovel", "move"]);
    assert!(ok, "{out}");
    assert_eq!(api(&a, "GET", "/api/shovels", None).await.1, json!([]));
    publish_n(&cha, "outbox", 0, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(depth(&a.url(), "outbox").await, 5);
    assert_eq!(depth(&b.url(), "inbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_queue_length_moves_the_backlog_then_removes_itself() {
    if external() {
        return;
    }
    let (a, b) = (broker(0, None).await, broker(0, None).await);
    let (_ca, cha) = channel_at(&a.url()).await;
    cha.confirm_select(Default::default())
        .await
        .expect("confirms");
    durable_queue(&cha, "backlog").await;
    publish_n(&cha, "backlog", 0, 50).await;
    let value = json!({"value": {
        "src-uri": "amqp://", "src-queue": "backlog", "dest-uri": b.url(),
        "dest-queue": "moved", "src-delete-after": "queue-length", "reconnect-delay": 0.2
    }});
    let (status, body) = api(&a, "PUT", "/api/parameters/shovel/%2F/once", Some(value)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(wait_depth(&b.url(), "moved", 50, 20).await, 50);
    let mut gone = false;
    for _ in 0..50 {
        if api(&a, "GET", "/api/parameters/shovel/%2F/once", None)
            .await
            .0
            == 404
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the parameter removes itself");
    publish_n(&cha, "backlog", 50, 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(depth(&a.url(), "backlog").await, 3, "later messages stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_restarts_loses_nothing_and_a_bad_definition_is_refused() {
    if external() {
        return;
    }
    let dir = crate::process::temp_dir("shovel-dest");
    let port = free_port();
    let a = broker(0, None).await;
    let b = broker(port, Some(dir.clone())).await;
    let dest = b.url();
    let (status, body) = api(
        &a,
        "PUT",
        "/api/parameters/shovel/%2F/bad",
        Some(json!({"value": {"src-uri": "amqp://", "dest-uri": dest}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("src-queue")),
        "{body}"
    );
    let (_ca, cha) = channel_at(&a.url()).await;
    cha.confirm_select(Default::default())
        .await
        .expect("confirms");
    durable_queue(&cha, "jobs").await;
    let value = json!({"value": {
        "src-uri": "amqp://", "src-queue": "jobs", "dest-uri": dest,
        "dest-queue": "jobs-copy", "reconnect-delay": 0.2, "src-prefetch-count": 50
    }});
    assert_eq!(
        api(&a, "PUT", "/api/parameters/shovel/%2F/copy", Some(value))
            .await
            .0,
        201
    );
    publish_n(&cha, "jobs", 0, 500).await;
    assert_eq!(wait_depth(&dest, "jobs-copy", 500, 20).await, 500);
    // The destination goes away; what is published meanwhile waits in the source.
    b.stop().await.expect("stop");
    publish_n(&cha, "jobs", 500, 500).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, shovels) = api(&a, "GET", "/api/shovels", None).await;
    assert_eq!(shovels[0]["state"], "starting", "{shovels}");
    let b = broker(port, Some(dir.clone())).await;
    assert_eq!(wait_depth(&b.url(), "jobs-copy", 1000, 30).await, 1000);
    let (_cb, chb) = channel_at(&b.url()).await;
    let got: Vec<usize> = drain(&chb, "jobs-copy")
        .await
        .iter()
        .map(|s| s.parse().expect("number"))
        .collect();
    let unique: std::collections::BTreeSet<_> = got.iter().copied().collect();
    assert_eq!(unique.len(), 1000, "every message arrived");
    assert_eq!(
        got.len(),
        1000,
        "no duplicates without an outage mid-transfer"
    );
    assert_eq!(depth(&a.url(), "jobs").await, 0);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shovel_is_kept_across_a_restart_of_its_broker() {
    if external() {
        return;
    }
    let dir = crate::process::temp_dir("shovel-src");
    let b = broker(0, None).await;
    let a = broker(0, Some(dir.clone())).await;
    let value = json!({"value": {
        "src-uri": "amqp://", "src-queue": "q", "dest-uri": b.url(), "dest-queue": "q",
        "reconnect-delay": 0.2
    }});
    assert_eq!(
        api(&a, "PUT", "/api/parameters/shovel/%2F/keep", Some(value))
            .await
            .0,
        201
    );
    a.stop().await.expect("stop");
    let a = broker(0, Some(dir.clone())).await;
    let mut shovels = Value::Null;
    for _ in 0..50 {
        shovels = api(&a, "GET", "/api/shovels", None).await.1;
        if shovels[0]["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shovels[0]["name"], "keep", "{shovels}");
    assert_eq!(
        shovels[0]["state"], "running",
        "started again at boot: {shovels}"
    );
    let (_ca, cha) = channel_at(&a.url()).await;
    cha.confirm_select(Default::default())
        .await
        .expect("confirms");
    publish_n(&cha, "q", 0, 20).await;
    let moved = wait_depth(&b.url(), "q", 20, 20).await;
    assert_eq!(moved, 20);
    a.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With WARREN_TEST_AMQP_URL (RabbitMQ): a Warren shovel into RabbitMQ, and, when RabbitMQ has
/// its shovel plugin (WARREN_TEST_MGMT_ADDR), RabbitMQ's shovel into Warren.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shovels_between_warren_and_rabbitmq_in_both_directions() {
    if !external() {
        return;
    }
    let w = broker(0, None).await;
    let (_cw, chw) = channel_at(&w.url()).await;
    chw.confirm_select(Default::default())
        .await
        .expect("confirms");
    let (to_rabbit, from_rabbit) = (uniq("to-rabbit"), uniq("from-rabbit"));
    durable_queue(&chw, "edge").await;
    publish_n(&chw, "edge", 0, 300).await;
    let value = json!({"value": {
        "src-uri": "amqp://", "src-queue": "edge", "dest-uri": url(), "dest-queue": to_rabbit,
        "reconnect-delay": 0.2
    }});
    assert_eq!(
        api(&w, "PUT", "/api/parameters/shovel/%2F/up", Some(value))
            .await
            .0,
        201
    );
    assert_eq!(wait_depth(&url(), &to_rabbit, 300, 30).await, 300);
    let (_cr, chr) = channel().await;
    let got: Vec<usize> = drain(&chr, &to_rabbit)
        .await
        .iter()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    let _ = chr
        .queue_delete(to_rabbit.as_str().into(), Default::default())
        .await;
    let Some(mgmt) = mgmt_addr() else {
        return;
    };
    // RabbitMQ's shovel plugin, into Warren.
    let (_cr, chr) = channel().await;
    chr.confirm_select(Default::default())
        .await
        .expect("confirms");
    durable_queue(&chr, &from_rabbit).await;
    publish_n(&chr, &from_rabbit, 0, 300).await;
    let path = format!("/api/parameters/shovel/%2F/{from_rabbit}");
    let value = json!({"value": {
        "src-protocol": "amqp091", "src-uri": "amqp://", "src-queue": from_rabbit,
        "dest-protocol": "amqp091", "dest-uri": w.url(), "dest-queue": "core",
        "src-delete-after": "queue-length"
    }});
    let (status, body) = http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(value)).await;
    if status == 400 {
        eprintln!("RabbitMQ has no shovel plugin: {body}");
        return; // RabbitMQ without rabbitmq_shovel
    }
    assert_eq!(status, 201, "{body}");
    assert_eq!(wait_depth(&w.url(), "core", 300, 30).await, 300);
    let got: Vec<usize> = drain(&chw, "core")
        .await
        .iter()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    let _ = chr
        .queue_delete(from_rabbit.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_policymakers_and_administrators_create_or_restart_shovels() {
    if external() {
        return;
    }
    let a = broker(0, None).await;
    let mgmt = a.mgmt_addr().expect("mgmt").to_string();
    for (user, tags) in [("viewer", "management"), ("pm", "policymaker")] {
        api(
            &a,
            "PUT",
            &format!("/api/users/{user}"),
            Some(json!({"password": "pw", "tags": tags})),
        )
        .await;
        let perms = json!({"configure": ".*", "write": ".*", "read": ".*"});
        api(
            &a,
            "PUT",
            &format!("/api/permissions/%2F/{user}"),
            Some(perms),
        )
        .await;
    }
    let value = json!({"value": {
        "src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"
    }});
    let path = "/api/parameters/shovel/%2F/s";
    let restart = "/api/shovels/vhost/%2F/s/restart";
    let as_user =
        |user: &'static str, method: &'static str, path: &'static str, body: Option<Value>| {
            let mgmt = mgmt.clone();
            async move {
                http_at(&mgmt, Some(&format!("{user}:pw")), method, path, body)
                    .await
                    .0
            }
        };
    assert_eq!(
        as_user("viewer", "PUT", path, Some(value.clone())).await,
        401
    );
    assert_eq!(as_user("pm", "PUT", path, Some(value)).await, 201);
    assert_eq!(as_user("viewer", "DELETE", restart, None).await, 401);
    assert_eq!(as_user("pm", "DELETE", restart, None).await, 204);
    assert_eq!(as_user("viewer", "GET", "/api/shovels", None).await, 200);
    assert_eq!(as_user("pm", "DELETE", path, None).await, 204);
    // A vhost of this broker the policymaker may not access cannot be a shovel's end: the
    // shovel would reach it as the broker's own user.
    let (status, _) = api(&a, "PUT", "/api/vhosts/private", Some(json!({}))).await;
    assert_eq!(status, 201);
    let elsewhere = json!({"value": {
        "src-uri": "amqp:///private", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"
    }});
    assert_eq!(
        as_user("pm", "PUT", path, Some(elsewhere.clone())).await,
        400
    );
    let upstream = json!({"value": {"uri": "amqp:///private"}});
    let fed = "/api/parameters/federation-upstream/%2F/u";
    assert_eq!(as_user("pm", "PUT", fed, Some(upstream)).await, 400);
    api(
        &a,
        "PUT",
        "/api/permissions/private/pm",
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(as_user("pm", "PUT", path, Some(elsewhere)).await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_shovel_moves_between_vhosts_of_the_same_broker() {
    if external() {
        return;
    }
    let a = broker(0, None).await;
    let (status, _) = api(&a, "PUT", "/api/vhosts/other", Some(json!({}))).await;
    assert_eq!(status, 201);
    let (status, _) = api(
        &a,
        "PUT",
        "/api/permissions/other/guest",
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert!(status == 201 || status == 204);
    let (_c, ch) = channel_at(&a.url()).await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    durable_queue(&ch, "local.src").await;
    publish_n(&ch, "local.src", 0, 50).await;
    let value = json!({"value": {
        "src-protocol": "local", "src-uri": "amqp://", "src-queue": "local.src",
        "dest-protocol": "local", "dest-uri": "amqp:///other", "dest-queue": "local.dst",
        "reconnect-delay": 0.2
    }});
    let (status, body) = api(&a, "PUT", "/api/parameters/shovel/%2F/here", Some(value)).await;
    assert_eq!(status, 201, "{body}");
    let other = a.url().replace("/%2f", "/other");
    assert_eq!(wait_depth(&other, "local.dst", 50, 20).await, 50);
    let (_, shovels) = api(&a, "GET", "/api/shovels", None).await;
    assert_eq!(shovels[0]["src_protocol"], "local", "{shovels}");
    assert_eq!(shovels[0]["dest_protocol"], "local");
    // A local shovel names this broker only.
    let remote = json!({"value": {
        "src-protocol": "local", "src-uri": "amqp://elsewhere:5672", "src-queue": "q",
        "dest-uri": "amqp://", "dest-queue": "d"
    }});
    let (status, body) = api(&a, "PUT", "/api/parameters/shovel/%2F/bad", Some(remote)).await;
    assert_eq!(status, 400, "{body}");
    a.stop().await.expect("stop");
}
