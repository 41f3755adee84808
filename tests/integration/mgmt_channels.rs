//! Channels and per-user connections in the management API: what a client's channels are doing
//! shows up with RabbitMQ's field names, and closing by user name works. Runs against RabbitMQ's
//! management plugin too (which shows channels after its next statistics tick, hence polling).

use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::ConnectionProperties;
use serde_json::{json, Value};

async fn api(method: &str, path: &str) -> (u16, Value) {
    let addr = mgmt_addr().expect("management address");
    http_at(&addr, Some("guest:guest"), method, path, None).await
}

fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('/', "%2F")
        .replace(' ', "%20")
        .replace('>', "%3E")
}

/// Poll `path` until `f` accepts its body.
async fn until(path: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..80 {
        let (s, v) = api("GET", path).await;
        if s == 200 && f(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    last
}

#[tokio::test]
async fn channels_show_what_clients_do() {
    if mgmt_addr().is_none() {
        return;
    }
    let tag = uniq("chan-conn");
    let props = ConnectionProperties::default().with_connection_name(tag.clone().into());
    let conn = lapin::Connection::connect(&url(), props)
        .await
        .expect("connect");
    let plain = conn.create_channel().await.expect("channel 1");
    let busy = conn.create_channel().await.expect("channel 2");
    busy.confirm_select(Default::default())
        .await
        .expect("confirms");
    busy.basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    let q = ops::temp_queue(&busy).await;
    let _consumer = busy
        .basic_consume(
            q.as_str().into(),
            "c1".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let conns = until("/api/connections", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|c| c["client_properties"]["connection_name"] == json!(tag))
        })
    })
    .await;
    let name = conns
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|c| c["client_properties"]["connection_name"] == json!(tag))
        })
        .and_then(|c| c["name"].as_str())
        .expect("listed connection")
        .to_string();
    let mine = |v: &Value| -> Vec<Value> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["connection_details"]["name"] == json!(name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = until("/api/channels", |v| {
        let m = mine(v);
        m.len() == 2 && m.iter().any(|c| c["consumer_count"] == json!(1))
    })
    .await;
    let mut listed = mine(&all);
    listed.sort_by_key(|c| c["number"].as_u64());
    assert_eq!(listed.len(), 2, "{all}");
    assert_eq!(listed[0]["number"], json!(plain.id()));
    assert_eq!(listed[0]["confirm"], json!(false));
    let b = &listed[1];
    assert_eq!(b["name"], json!(format!("{name} ({})", busy.id())));
    assert_eq!(b["user"], json!("guest"));
    assert_eq!(b["vhost"], json!("/"));
    assert_eq!(b["confirm"], json!(true));
    assert_eq!(b["transactional"], json!(false));
    assert_eq!(b["prefetch_count"], json!(7));
    assert_eq!(b["consumer_count"], json!(1));
    assert_eq!(b["state"], json!("running"));
    let (s, one) = api(
        "GET",
        &format!("/api/channels/{}", enc(b["name"].as_str().unwrap_or(""))),
    )
    .await;
    assert_eq!((s, &one["number"]), (200, &json!(busy.id())));
    let (_, per_conn) = api("GET", &format!("/api/connections/{}/channels", enc(&name))).await;
    assert_eq!(per_conn.as_array().map(Vec::len), Some(2), "{per_conn}");
    let (_, per_vhost) = api("GET", "/api/vhosts/%2F/channels").await;
    assert_eq!(mine(&per_vhost).len(), 2);
    assert_eq!(api("GET", "/api/channels/no-such-channel").await.0, 404);
    let (_, by_user) = api("GET", "/api/connections/username/guest").await;
    assert!(by_user
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["name"] == json!(name))));
    let _ = conn.close(200, "".into()).await;
}

#[tokio::test]
async fn closing_a_users_connections() {
    if mgmt_addr().is_none() {
        return;
    }
    let user = uniq("closer");
    let mgmt = mgmt_addr().expect("addr");
    let put = |path: String, body: Value| {
        let mgmt = mgmt.clone();
        async move {
            http_at(&mgmt, Some("guest:guest"), "PUT", &path, Some(body))
                .await
                .0
        }
    };
    assert_eq!(
        put(
            format!("/api/users/{user}"),
            json!({"password": "pw", "tags": ""})
        )
        .await,
        201
    );
    assert_eq!(
        put(
            format!("/api/permissions/%2F/{user}"),
            json!({"configure": ".*", "write": ".*", "read": ".*"})
        )
        .await,
        201
    );
    let url = format!("amqp://{user}:pw@{}/%2F", addr());
    let c1 = lapin::Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("c1");
    let c2 = lapin::Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("c2");
    let listed = until(&format!("/api/connections/username/{user}"), |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(
        api("DELETE", &format!("/api/connections/username/{user}"))
            .await
            .0,
        204
    );
    assert!(eventually(|| !c1.status().connected() && !c2.status().connected()).await);
    api("DELETE", &format!("/api/users/{user}")).await;
}
