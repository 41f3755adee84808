//! Creating and deleting vhosts, their limits, and who has permissions in them, over the
//! management API in RabbitMQ 3.10's shapes. A vhost created here grants its creator full
//! permissions, as RabbitMQ's management plugin does.

use super::http::{Request, Response};
use super::reply::{not_found, ok, with_body};
use super::users::{limit_value, permissions_json, tags_of, topic_permissions_json};
use crate::broker::Broker;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    Some(match (req.method.as_str(), seg) {
        ("PUT", ["api", "vhosts", name]) => with_body(req, |b| {
            if name.is_empty() || name.len() > 255 {
                return Response::error(400, "bad_request", "vhost names are 1 to 255 bytes");
            }
            let description = b.get("description").and_then(Value::as_str).unwrap_or("");
            let Some(tags) = tags_of(b.get("tags").unwrap_or(&Value::Null)) else {
                return Response::error(400, "bad_request", "tags must be a string or a list");
            };
            let created = broker.put_vhost(name, description, tags);
            if let (Some(vh), Some(on)) = (
                broker.vhost(name),
                b.get("tracing").and_then(Value::as_bool),
            ) {
                vh.set_tracing(on);
            }
            if created {
                if let Some(u) = &req.user {
                    let _ = broker.set_permission(name, &u.name, ".*", ".*", ".*");
                }
            }
            Response::empty(if created { 201 } else { 204 })
        }),
        ("DELETE", ["api", "vhosts", name]) => {
            if broker.delete_vhost(name) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        ("GET", ["api", "vhosts", v, "permissions"]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(permissions_json(broker, |pv, _| pv == *v))
        }
        ("GET", ["api", "vhosts", v, "topic-permissions"]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(topic_permissions_json(broker, |pv, _| pv == *v))
        }
        ("GET", ["api", "vhost-limits"]) => {
            let all = vhost_limits(broker, None);
            match &req.user {
                Some(u) => ok(super::reply::filter(all, |l| {
                    super::access::may_access_vhost(broker, u, l["vhost"].as_str().unwrap_or(""))
                })),
                None => ok(all),
            }
        }
        ("GET", ["api", "vhost-limits", v]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(vhost_limits(broker, Some(v)))
        }
        ("PUT", ["api", "vhost-limits", v, limit]) => {
            with_body(req, |b| {
                if !matches!(*limit, "max-connections" | "max-queues") {
                    return Response::error(
                    400,
                    "bad_request",
                    format!("Validation failed\n\nUnrecognised terms [{{<<\"{limit}\">>}}] in limits\n"),
                );
                }
                let value = match limit_value(b, limit) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                if broker.set_vhost_limit(v, limit, Some(value)) {
                    Response::empty(204)
                } else {
                    Response::error(404, "not_found", "vhost_not_found")
                }
            })
        }
        ("DELETE", ["api", "vhost-limits", v, limit]) => {
            broker.set_vhost_limit(v, limit, None);
            Response::empty(204)
        }
        _ => return None,
    })
}

fn vhost_limits(broker: &Broker, only: Option<&str>) -> Value {
    broker
        .vhosts()
        .iter()
        .filter(|v| only.is_none_or(|n| n == v.name))
        .filter_map(|v| {
            let limits = v.meta().limits;
            (!limits.is_empty()).then(|| json!({"vhost": v.name, "value": limits}))
        })
        .collect()
}
