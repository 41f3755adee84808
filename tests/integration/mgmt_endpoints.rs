//! The endpoint table (src/mgmt/endpoints.rs): docs/management-api.md is generated from it,
//! every GET it lists answers on a broker where the objects exist, and a method it does not
//! list is RabbitMQ's 405 with an `allow` header.

use crate::common::*;
use serde_json::json;

#[test]
fn the_endpoint_table_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/management-api.md");
    let want = warren::mgmt::endpoints::markdown();
    if std::env::var("WARREN_UPDATE_DOCS").is_ok() {
        std::fs::write(path, &want).expect("write docs");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/management-api.md is out of date: run WARREN_UPDATE_DOCS=1 cargo test --test integration the_endpoint_table"
    );
}

#[tokio::test]
async fn every_listed_get_answers() {
    if external() {
        return;
    }
    let w = warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(0),
        ..Default::default()
    })
    .await
    .expect("start");
    let mgmt = w.mgmt_addr().expect("mgmt").to_string();
    let api = |m: &'static str, p: String, b: Option<serde_json::Value>| {
        let mgmt = mgmt.clone();
        async move { http_at(&mgmt, Some("guest:guest"), m, &p, b).await.0 }
    };
    // Objects for the placeholders to name.
    assert_eq!(
        api("PUT", "/api/queues/%2F/doc-q".into(), Some(json!({}))).await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/policies/%2F/doc".into(),
            Some(json!({"pattern": "^doc", "definition": {"max-length": 9}}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/operator-policies/%2F/doc".into(),
            Some(json!({"pattern": "^doc", "definition": {"max-length": 9}}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/vhost-limits/%2F/max-queues".into(),
            Some(json!({"value": 100}))
        )
        .await,
        204
    );
    assert_eq!(
        api(
            "PUT",
            "/api/global-parameters/doc".into(),
            Some(json!({"value": 1}))
        )
        .await,
        201
    );
    assert_eq!(
        api(
            "PUT",
            "/api/topic-permissions/%2F/guest".into(),
            Some(json!({"exchange": "amq.topic", "write": ".*", "read": ".*"}))
        )
        .await,
        201
    );
    let amqp_port = w.local_addr().port().to_string();
    for (methods, pattern, _) in warren::mgmt::endpoints::ENDPOINTS {
        if !methods.split(' ').any(|m| m == "GET") {
            continue;
        }
        let exchange_path = pattern.starts_with("/api/exchanges/");
        let queue_path = pattern.starts_with("/api/queues/");
        let path = pattern
            .replace("{vhost}", "%2F")
            .replace("{node}", "warren@localhost")
            .replace("{user}", "guest")
            .replace("{exchange}", "amq.direct")
            .replace("{queue}", "doc-q")
            .replace("{component}", "vhost-limits")
            .replace("{within}/{unit}", "1/days")
            .replace("{port}", &amqp_port)
            .replace("{protocol}", "amqp")
            .replace(
                "{name}",
                match pattern {
                    _ if exchange_path => "amq.direct",
                    _ if queue_path => "doc-q",
                    p if p.starts_with("/api/parameters/") => "limits",
                    _ => "doc",
                },
            );
        let status = api("GET", path.clone(), None).await;
        // Connections and channels by name: none are open here.
        let none_open =
            path.starts_with("/api/connections/doc") || path.starts_with("/api/channels/doc");
        let expected = if none_open { 404 } else { 200 };
        assert_eq!(status, expected, "GET {path}");
    }
    // A method a path does not take: 405, no body, and what it does take.
    let out = warren::mgmt::client::Target::new(mgmt.as_str(), Some("guest:guest"))
        .send("POST", "/api/overview", None, &[])
        .await
        .expect("answer");
    assert_eq!(out.status, 405, "{out:?}");
    assert_eq!(
        out.header("allow").map(str::to_lowercase).as_deref(),
        Some("head, get, options"),
        "{out:?}"
    );
    assert_eq!(out.body, serde_json::Value::Null, "no body");
    assert_eq!(api("DELETE", "/api/users".into(), None).await, 405);
    assert_eq!(api("GET", "/api/no-such-thing".into(), None).await, 404);
    w.stop().await.expect("stop");
}
