//! Runtime parameters, global parameters, feature flags, shovel status and rebalancing over the
//! management API, in RabbitMQ 3.10's shapes. Components Warren has: `vhost-limits` (the
//! vhost's limits), `operator_policy` (operator policies, as RabbitMQ lists them here too) and
//! `shovel` (dynamic shovels, as with the rabbitmq_shovel plugin); others answer as RabbitMQ
//! does without the plugin that would provide them.

use super::http::{Request, Response};
use super::policies::policy_json;
use super::reply::{not_found, ok, with_body};
use crate::broker::Broker;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const COMPONENTS: [&str; 5] = [
    "vhost-limits",
    "operator_policy",
    "shovel",
    crate::broker::federation::UPSTREAM,
    crate::broker::federation::UPSTREAM_SET,
];

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    if let Some(r) = shovel_status(broker, req, seg) {
        return Some(r);
    }
    if let Some(r) = federation_status(broker, req, seg) {
        return Some(r);
    }
    let visible = |v: &str| {
        req.user
            .as_ref()
            .is_none_or(|u| super::access::may_access_vhost(broker, u, v))
    };
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "parameters"]) => ok(Value::Array(parameters(broker, |_, v| visible(v)))),
        ("GET", ["api", "parameters", c]) => ok(Value::Array(parameters(broker, |pc, v| {
            pc == *c && visible(v)
        }))),
        ("GET", ["api", "parameters", c, v]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(Value::Array(parameters(broker, |pc, pv| {
                pc == *c && pv == *v
            })))
        }
        ("GET", ["api", "parameters", c, v, name]) => {
            let found = parameters(broker, |pc, pv| pc == *c && pv == *v)
                .into_iter()
                .find(|p| p["name"] == *name);
            match found {
                Some(p) => ok(p),
                None => not_found(),
            }
        }
        ("PUT", ["api", "parameters", c, v, name]) => with_body(req, |b| {
            put_parameter(broker, req.user.as_ref(), c, v, name, b)
        }),
        ("DELETE", ["api", "parameters", c, v, name]) => {
            let existed = parameters(broker, |pc, pv| pc == *c && pv == *v)
                .iter()
                .any(|p| p["name"] == *name);
            if !existed {
                return Some(not_found());
            }
            match *c {
                "shovel" => {
                    broker.clear_shovel(v, name);
                }
                "federation-upstream" | "federation-upstream-set" => {
                    broker.clear_federation_parameter(c, v, name);
                }
                "vhost-limits" => {
                    for limit in ["max-connections", "max-queues"] {
                        broker.set_vhost_limit(v, limit, None);
                    }
                }
                _ => {
                    broker.clear_policy(v, name, true);
                }
            }
            Response::empty(204)
        }
        ("GET", ["api", "global-parameters"]) => ok(broker
            .global_parameters()
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()),
        ("GET", ["api", "global-parameters", name]) => match broker.global_parameter(name) {
            Some(value) => ok(json!({"name": name, "value": value})),
            None => not_found(),
        },
        ("PUT", ["api", "global-parameters", name]) => with_body(req, |b| match b.get("value") {
            Some(value) => {
                if broker.set_global_parameter(name, value.clone()) {
                    Response::empty(201)
                } else {
                    Response::empty(204)
                }
            }
            None => Response::error(400, "bad_request", "[{key_missing,value}]"),
        }),
        ("DELETE", ["api", "global-parameters", name]) => {
            if broker.clear_global_parameter(name) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        ("GET", ["api", "feature-flags"]) => ok(feature_flags()),
        // One node: nothing to move, answered as RabbitMQ answers it.
        ("POST", ["api", "rebalance", "queues"]) => Response::empty(204),
        _ => return None,
    })
}

/// `GET /api/federation-links[/{vhost}]` (RabbitMQ's rabbitmq_federation_management, with
/// `state/down`) and `DELETE /api/federation-links/vhost/{vhost}/{id}/{node}/restart`.
fn federation_status(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    let visible = |v: &Value| {
        let vhost = v["vhost"].as_str().unwrap_or_default();
        req.user
            .as_ref()
            .is_none_or(|u| super::access::may_access_vhost(broker, u, vhost))
    };
    let down = |v: &Value| !matches!(v["status"].as_str(), Some("running" | "starting"));
    let all = || -> Vec<Value> {
        broker
            .federation
            .statuses(crate::broker::NODE_NAME)
            .into_iter()
            .filter(visible)
            .collect()
    };
    let in_vhost = |v: &str| {
        all()
            .into_iter()
            .filter(|s| s["vhost"] == *v)
            .collect::<Vec<_>>()
    };
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "federation-links"]) => ok(Value::Array(all())),
        ("GET", ["api", "federation-links", "state", "down"]) => {
            ok(Value::Array(all().into_iter().filter(down).collect()))
        }
        ("GET", ["api", "federation-links", v]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(Value::Array(in_vhost(v)))
        }
        ("GET", ["api", "federation-links", v, "state", "down"]) => {
            ok(Value::Array(in_vhost(v).into_iter().filter(down).collect()))
        }
        ("DELETE", ["api", "federation-links", "vhost", v, id, _node, "restart"]) => {
            if broker.restart_federation_link(v, id) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        _ => return None,
    })
}

/// `GET /api/shovels[/{vhost}]` and `DELETE /api/shovels/vhost/{vhost}/{name}/restart`.
fn shovel_status(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    let visible = |v: &Value| {
        let vhost = v["vhost"].as_str().unwrap_or_default();
        req.user
            .as_ref()
            .is_none_or(|u| super::access::may_access_vhost(broker, u, vhost))
    };
    let all = || broker.shovels.statuses(crate::broker::NODE_NAME);
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "shovels"]) => {
            ok(Value::Array(all().into_iter().filter(visible).collect()))
        }
        ("GET", ["api", "shovels", v]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(Value::Array(
                all().into_iter().filter(|s| s["vhost"] == *v).collect(),
            ))
        }
        ("DELETE", ["api", "shovels", "vhost", v, name, "restart"]) => {
            if broker.restart_shovel(v, name) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        _ => return None,
    })
}

fn put_parameter(
    broker: &Arc<Broker>,
    req_user: Option<&Arc<crate::auth::User>>,
    c: &str,
    v: &str,
    name: &str,
    b: &Map<String, Value>,
) -> Response {
    if !COMPONENTS.contains(&c) {
        return Response::error(
            400,
            "bad_request",
            format!("Validation failed\n\ncomponent {c} not found\n"),
        );
    }
    if broker.vhost(v).is_none() {
        return not_found();
    }
    let Some(value) = b.get("value") else {
        return Response::error(400, "bad_request", "[{key_missing,value}]");
    };
    let existed = parameters(broker, |pc, pv| pc == c && pv == v)
        .iter()
        .any(|p| p["name"] == *name);
    let status = if existed { 204 } else { 201 };
    // A shovel or upstream naming another vhost of this broker (amqp:///other) connects as
    // the broker's own user: the user creating it must have access there (RabbitMQ checks
    // the same).
    if let Some(user) = req_user {
        for key in ["src-uri", "dest-uri", "uri"] {
            let uris = match value.get(key) {
                Some(Value::String(u)) => vec![u.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            for u in uris {
                let Some(target) = crate::shovel::connect::local_vhost(&u, v) else {
                    continue;
                };
                if !super::access::may_access_vhost(broker, user, &target) {
                    return Response::error(
                        400,
                        "bad_request",
                        format!(
                            "Validation failed\n\n{key}: user {} may not access vhost '{target}'\n",
                            user.name
                        ),
                    );
                }
            }
        }
    }
    if c == crate::broker::federation::UPSTREAM || c == crate::broker::federation::UPSTREAM_SET {
        return match broker.put_federation_parameter(c, v, name, value) {
            Ok(_) => Response::empty(status),
            Err(e) => Response::error(400, "bad_request", e),
        };
    }
    if c == "shovel" {
        return match broker.put_shovel(v, name, value) {
            Ok(_) => Response::empty(status),
            Err(e) => Response::error(400, "bad_request", e),
        };
    }
    if c == "operator_policy" {
        let fields = value.as_object().cloned().unwrap_or_default();
        return match super::policies::policy_from_json(name, &fields, true) {
            Ok(p) => match broker.set_policy(v, p) {
                Ok(_) => Response::empty(status),
                Err(e) => Response::error(400, "bad_request", e),
            },
            Err(e) => Response::error(400, "bad_request", e),
        };
    }
    let Some(limits) = value.as_object() else {
        return Response::error(
            400,
            "bad_request",
            "Validation failed\n\nlimits must be an object\n",
        );
    };
    for (k, n) in limits {
        if !matches!(k.as_str(), "max-connections" | "max-queues") {
            return Response::error(
                400,
                "bad_request",
                format!(
                    "Validation failed\n\nUnrecognised terms [{{<<\"{k}\">>,{n}}}] in limits\n"
                ),
            );
        }
        if n.as_i64().is_none() {
            return Response::error(
                400,
                "bad_request",
                format!("Validation failed\n\n{k} should be a number, actually was {n}\n"),
            );
        }
    }
    // The parameter is the whole set: limits it does not name are cleared.
    for limit in ["max-connections", "max-queues"] {
        broker.set_vhost_limit(v, limit, limits.get(limit).and_then(Value::as_i64));
    }
    Response::empty(status)
}

/// Parameters of the components Warren has, for (component, vhost) pairs `pick` chooses.
pub fn parameters(broker: &Broker, pick: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    for vh in broker.vhosts() {
        let limits = vh.meta().limits;
        if !limits.is_empty() && pick("vhost-limits", &vh.name) {
            out.push(
                json!({"value": limits, "vhost": vh.name, "component": "vhost-limits",
                            "name": "limits"}),
            );
        }
        for c in [
            crate::broker::federation::UPSTREAM,
            crate::broker::federation::UPSTREAM_SET,
        ] {
            if pick(c, &vh.name) {
                for (v, name, value) in broker.component_parameters(c) {
                    if v == vh.name {
                        out.push(json!({"value": value, "vhost": v, "component": c, "name": name}));
                    }
                }
            }
        }
        if pick("shovel", &vh.name) {
            for (v, name, value) in broker.shovel_parameters() {
                if v == vh.name {
                    out.push(json!({"value": value, "vhost": v, "component": "shovel",
                                    "name": name}));
                }
            }
        }
        if pick("operator_policy", &vh.name) {
            for p in vh.policies().iter().filter(|p| p.operator) {
                let mut value = policy_json(&vh.name, p);
                if let Some(m) = value.as_object_mut() {
                    m.remove("vhost");
                    m.remove("name");
                }
                out.push(
                    json!({"value": value, "vhost": vh.name, "component": "operator_policy",
                                "name": p.name}),
                );
            }
        }
    }
    out
}

/// RabbitMQ 3.10's feature flags, as far as Warren has what they stand for.
fn feature_flags() -> Value {
    let flag = |name: &str, desc: &str, enabled: bool| {
        json!({"name": name, "desc": desc, "doc_url": "",
               "state": if enabled { "enabled" } else { "disabled" },
               "stability": "stable", "provided_by": "rabbit"})
    };
    json!([
        flag(
            "classic_mirrored_queue_version",
            "Support setting version for classic mirrored queues",
            true
        ),
        flag(
            "drop_unroutable_metric",
            "Count unroutable publishes to be dropped in stats",
            true
        ),
        flag(
            "empty_basic_get_metric",
            "Count AMQP `basic.get` on empty queues in stats",
            true
        ),
        flag(
            "implicit_default_bindings",
            "Default bindings are now implicit, instead of being stored in the database",
            true
        ),
        flag("maintenance_mode_status", "Maintenance mode status", true),
        flag("quorum_queue", "Support queues of type `quorum`", true),
        flag("stream_queue", "Support queues of type `stream`", false),
        flag(
            "user_limits",
            "Configure connection and channel limits for a user",
            true
        ),
        flag(
            "virtual_host_metadata",
            "Virtual host metadata (description, tags, etc)",
            true
        ),
    ])
}
