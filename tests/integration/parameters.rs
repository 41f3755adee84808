//! Runtime and global parameters, feature flags and rebalancing in the management API, in
//! RabbitMQ 3.10's shapes. Runs against RabbitMQ's management plugin too.

use crate::common::*;
use serde_json::{json, Value};

async fn api(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr = mgmt_addr().expect("management address");
    http_at(&addr, Some("guest:guest"), method, path, body).await
}

#[tokio::test]
async fn global_parameters() {
    if mgmt_addr().is_none() {
        return;
    }
    let name = uniq("gp");
    let path = format!("/api/global-parameters/{name}");
    assert_eq!(
        api("PUT", &path, Some(json!({"value": {"a": 1}}))).await.0,
        201
    );
    assert_eq!(
        api("PUT", &path, Some(json!({"value": {"a": 2}}))).await.0,
        204
    );
    assert_eq!(
        api("GET", &path, None).await,
        (200, json!({"name": name, "value": {"a": 2}}))
    );
    let (_, all) = api("GET", "/api/global-parameters", None).await;
    let names: Vec<&str> = all
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&name.as_str()) && names.contains(&"internal_cluster_id"),
        "{all}"
    );
    assert_eq!(api("PUT", &path, Some(json!({}))).await.0, 400);
    assert_eq!(api("DELETE", &path, None).await.0, 204);
    assert_eq!(api("DELETE", &path, None).await.0, 404);
    assert_eq!(api("GET", &path, None).await.0, 404);
}

#[tokio::test]
async fn vhost_limits_and_operator_policies_are_parameters() {
    if mgmt_addr().is_none() {
        return;
    }
    let v = uniq("params");
    assert_eq!(api("PUT", &format!("/api/vhosts/{v}"), None).await.0, 201);
    let limits = format!("/api/parameters/vhost-limits/{v}/limits");
    assert_eq!(
        api("PUT", &limits, Some(json!({"value": {"max-queues": 100}})))
            .await
            .0,
        201
    );
    assert_eq!(
        api("GET", &limits, None).await,
        (
            200,
            json!({"value": {"max-queues": 100}, "vhost": v, "component": "vhost-limits", "name": "limits"})
        )
    );
    let (_, vl) = api("GET", &format!("/api/vhost-limits/{v}"), None).await;
    assert_eq!(vl, json!([{"vhost": v, "value": {"max-queues": 100}}]));
    let (_, per_component) = api("GET", &format!("/api/parameters/vhost-limits/{v}"), None).await;
    assert_eq!(per_component.as_array().map(Vec::len), Some(1));
    assert_eq!(
        api("PUT", &limits, Some(json!({}))).await,
        (
            400,
            json!({"error": "bad_request", "reason": "[{key_missing,value}]"})
        )
    );
    let (s, e) = api(
        "PUT",
        &format!("/api/parameters/bogus/{v}/x"),
        Some(json!({"value": 1})),
    )
    .await;
    assert_eq!(
        (s, e["reason"].clone()),
        (
            400,
            json!("Validation failed\n\ncomponent bogus not found\n")
        )
    );
    assert_eq!(
        api(
            "PUT",
            &format!("/api/operator-policies/{v}/cap"),
            Some(json!({"pattern": "^x", "definition": {"max-length": 3}, "apply-to": "queues"}))
        )
        .await
        .0,
        201
    );
    let (_, all) = api("GET", "/api/parameters", None).await;
    let op = all
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["component"] == json!("operator_policy") && p["vhost"] == json!(v))
                .cloned()
        })
        .expect("operator policies are listed as parameters");
    assert_eq!(op["name"], json!("cap"));
    assert_eq!(op["value"]["definition"], json!({"max-length": 3}));
    assert_eq!(api("DELETE", &limits, None).await.0, 204);
    let (_, vl) = api("GET", &format!("/api/vhost-limits/{v}"), None).await;
    assert_eq!(vl, json!([]));
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}

#[tokio::test]
async fn feature_flags_rebalance_and_the_cluster_name_parameter() {
    if mgmt_addr().is_none() {
        return;
    }
    let (s, flags) = api("GET", "/api/feature-flags", None).await;
    assert_eq!(s, 200);
    let quorum = flags
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|f| f["name"] == json!("quorum_queue"))
                .cloned()
        })
        .expect("quorum_queue flag");
    assert_eq!(quorum["state"], json!("enabled"));
    assert_eq!(quorum["stability"], json!("stable"));
    assert_eq!(api("POST", "/api/rebalance/queues", None).await.0, 204);
    if external() {
        return; // leave the referee's cluster name alone
    }
    let (_, before) = api("GET", "/api/cluster-name", None).await;
    assert_eq!(
        api(
            "PUT",
            "/api/cluster-name",
            Some(json!({"name": "params-test"}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api("GET", "/api/global-parameters/cluster_name", None)
            .await
            .1["value"],
        json!("params-test")
    );
    api(
        "PUT",
        "/api/cluster-name",
        Some(json!({"name": before["name"]})),
    )
    .await;
}

#[tokio::test]
async fn list_pagination_sorting_and_columns() {
    if mgmt_addr().is_none() {
        return;
    }
    let v = uniq("pages");
    assert_eq!(api("PUT", &format!("/api/vhosts/{v}"), None).await.0, 201);
    for q in ["pa1", "pa2", "pb3", "pc4", "pa5"] {
        let body = json!({"durable": false, "arguments": {"x-max-length": 9}});
        assert_eq!(
            api("PUT", &format!("/api/queues/{v}/{q}"), Some(body))
                .await
                .0,
            201
        );
    }
    let list = |query: &str| {
        let path = format!("/api/queues/{v}?{query}");
        async move { api("GET", &path, None).await }
    };
    assert_eq!(
        list("page=1&page_size=2&name=PA&columns=name").await,
        (
            200,
            json!({"filtered_count": 3, "item_count": 2, "items": [{"name": "pa1"}, {"name": "pa2"}],
                     "page": 1, "page_count": 2, "page_size": 2, "total_count": 5})
        )
    );
    let (_, page) = list("page=1&page_size=2&name=%5Ep%5Bab%5D&use_regex=true&columns=name&sort=name&sort_reverse=true").await;
    assert_eq!(page["filtered_count"], json!(4));
    assert_eq!(page["items"], json!([{"name": "pb3"}, {"name": "pa5"}]));
    assert_eq!(
        list("sort=name&sort_reverse=true&columns=name").await.1,
        json!([{"name": "pc4"}, {"name": "pb3"}, {"name": "pa5"}, {"name": "pa2"}, {"name": "pa1"}])
    );
    assert_eq!(
        list("page=1&page_size=1&columns=name,arguments.x-max-length")
            .await
            .1["items"],
        json!([{"name": "pa1", "arguments": {"x-max-length": 9}}])
    );
    let (s, e) = list("page=9&page_size=2").await;
    assert_eq!((s, e["error"].clone()), (400, json!("page_out_of_range")));
    let (s, e) = list("page=0").await;
    assert_eq!(
        (s, e["error"].clone()),
        (400, json!("invalid_pagination_parameters"))
    );
    let (s, e) = list("page=1&page_size=1000").await;
    assert_eq!(
        (s, e["error"].clone()),
        (400, json!("invalid_pagination_parameters"))
    );
    assert_eq!(list("page=x").await.0, 400);
    let (_, empty) = list("page=1&name=zzz").await;
    assert_eq!(
        (empty["filtered_count"].clone(), empty["page_count"].clone()),
        (json!(0), json!(0))
    );
    api("DELETE", &format!("/api/vhosts/{v}"), None).await;
}
