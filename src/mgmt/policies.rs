//! Policies and operator policies over the management API, in RabbitMQ 3.10's paths and
//! shapes: `{"vhost", "name", "pattern", "apply-to", "definition", "priority"}`.

use super::http::{Request, Response};
use super::reply::{not_found, ok, with_body};
use crate::broker::Broker;
use crate::vhost::Policy;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    let (operator, rest) = match seg {
        ["api", "policies", rest @ ..] => (false, rest),
        ["api", "operator-policies", rest @ ..] => (true, rest),
        _ => return None,
    };
    let visible = |v: &str| {
        req.user
            .as_ref()
            .is_none_or(|u| super::access::may_access_vhost(broker, u, v))
    };
    Some(match (req.method.as_str(), rest) {
        ("GET", []) => ok(list(broker, operator, |v| visible(v))),
        ("GET", [v]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(list(broker, operator, |x| x == *v))
        }
        ("GET", [v, name]) => {
            let found = list(broker, operator, |x| x == *v)
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == *name).cloned());
            match found {
                Some(p) => ok(p),
                None => not_found(),
            }
        }
        ("PUT", [v, name]) => with_body(req, |b| put(broker, v, name, b, operator)),
        ("DELETE", [v, name]) => {
            if broker.clear_policy(v, name, operator) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        _ => return None,
    })
}

fn put(
    broker: &Broker,
    vhost: &str,
    name: &str,
    b: &Map<String, Value>,
    operator: bool,
) -> Response {
    if broker.vhost(vhost).is_none() {
        return not_found();
    }
    match policy_from_json(name, b, operator) {
        Ok(p) => match broker.set_policy(vhost, p) {
            Ok(true) => Response::empty(201),
            Ok(false) => Response::empty(204),
            Err(e) => Response::error(400, "bad_request", e),
        },
        Err(e) => Response::error(400, "bad_request", e),
    }
}

/// A policy from the API's (or a definitions file's) fields.
pub fn policy_from_json(
    name: &str,
    b: &Map<String, Value>,
    operator: bool,
) -> Result<Policy, String> {
    if name.is_empty() || name.len() > 255 {
        return Err("policy names are 1 to 255 bytes".into());
    }
    let Some(pattern) = b.get("pattern").and_then(Value::as_str) else {
        return Err("[{key_missing,pattern}]".into());
    };
    let Some(definition) = b.get("definition").and_then(Value::as_object) else {
        return Err("[{key_missing,definition}]".into());
    };
    let priority = match b.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or("Validation failed\n\npriority must be an integer\n")?,
    };
    let apply_to = b.get("apply-to").and_then(Value::as_str).unwrap_or("all");
    Policy::new(name, pattern, apply_to, priority, definition, operator)
}

pub fn policy_json(vhost: &str, p: &Policy) -> Value {
    json!({"vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to.name(),
           "definition": p.definition, "priority": p.priority})
}

/// Policies (or operator policies) of the vhosts `pick` chooses.
pub fn list(broker: &Broker, operator: bool, pick: impl Fn(&str) -> bool) -> Value {
    let mut out = Vec::new();
    for vh in broker.vhosts().iter().filter(|v| pick(&v.name)) {
        for p in vh.policies().iter().filter(|p| p.operator == operator) {
            out.push(policy_json(&vh.name, p));
        }
    }
    Value::Array(out)
}
