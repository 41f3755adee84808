//! Users, permissions, topic permissions and user limits over the management API, in
//! RabbitMQ 3.10's paths, status codes (201 created, 204 updated or deleted, 404 missing,
//! 400 refused) and JSON shapes.

use super::http::{Request, Response};
use super::reply::{not_found, ok, with_body};
use crate::auth::{Hashing, PasswordHash, User};
use crate::broker::Broker;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    let all = |_: &str, _: &str| true;
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "users"]) => ok(users_json(broker)),
        ("GET", ["api", "users", "without-permissions"]) => {
            let with: Vec<String> = broker
                .users
                .permissions()
                .into_iter()
                .map(|p| p.1)
                .collect();
            ok(broker
                .users
                .list()
                .iter()
                .filter(|u| !with.contains(&u.name))
                .map(|u| user_json(u))
                .collect())
        }
        ("POST", ["api", "users", "bulk-delete"]) => with_body(req, |b| bulk_delete(broker, b)),
        ("GET", ["api", "users", name]) => match broker.users.user(name) {
            Some(u) => ok(user_json(&u)),
            None => not_found(),
        },
        ("PUT", ["api", "users", name]) => with_body(req, |b| put_user(broker, name, b)),
        ("DELETE", ["api", "users", name]) => deleted(broker.delete_user(name)),
        ("GET", ["api", "users", name, "permissions"]) => {
            if broker.users.user(name).is_none() {
                return Some(not_found());
            }
            ok(permissions_json(broker, |_, u| u == *name))
        }
        ("GET", ["api", "users", name, "topic-permissions"]) => {
            if broker.users.user(name).is_none() {
                return Some(not_found());
            }
            ok(topic_permissions_json(broker, |_, u| u == *name))
        }
        ("GET", ["api", "permissions"]) => ok(permissions_json(broker, all)),
        ("GET", ["api", "permissions", v, u]) => match broker.users.permission(v, u) {
            Some(_) => ok(permissions_json(broker, |pv, pu| pv == *v && pu == *u)[0].clone()),
            None => not_found(),
        },
        ("PUT", ["api", "permissions", v, u]) => with_body(req, |b| {
            let keys = match required(b, &["configure", "write", "read"]) {
                Ok(k) => k,
                Err(r) => return r,
            };
            if broker.vhost(v).is_none() || broker.users.user(u).is_none() {
                return Response::error(400, "bad_request", "vhost_or_user_not_found");
            }
            let new = broker.users.permission(v, u).is_none();
            match broker.set_permission(v, u, &keys[0], &keys[1], &keys[2]) {
                Ok(()) => Response::empty(if new { 201 } else { 204 }),
                Err(e) => Response::error(400, "bad_request", e),
            }
        }),
        ("DELETE", ["api", "permissions", v, u]) => deleted(broker.clear_permission(v, u)),
        ("GET", ["api", "topic-permissions"]) => ok(topic_permissions_json(broker, all)),
        ("GET", ["api", "topic-permissions", v, u]) => {
            let list = topic_permissions_json(broker, |pv, pu| pv == *v && pu == *u);
            if list.as_array().is_none_or(Vec::is_empty) {
                return Some(not_found());
            }
            ok(list)
        }
        ("PUT", ["api", "topic-permissions", v, u]) => with_body(req, |b| {
            let keys = match required(b, &["exchange", "write", "read"]) {
                Ok(k) => k,
                Err(r) => return r,
            };
            if broker.vhost(v).is_none() || broker.users.user(u).is_none() {
                return Response::error(400, "bad_request", "vhost_or_user_not_found");
            }
            let new = !broker
                .users
                .topic_permissions()
                .iter()
                .any(|(pv, pu, t)| pv == v && pu == u && t.exchange == keys[0]);
            match broker.set_topic_permission(v, u, &keys[0], &keys[1], &keys[2]) {
                Ok(()) => Response::empty(if new { 201 } else { 204 }),
                Err(e) => Response::error(400, "bad_request", e),
            }
        }),
        ("DELETE", ["api", "topic-permissions", v, u]) => {
            let exchange = req
                .query
                .iter()
                .find(|(k, _)| k == "exchange")
                .map(|(_, x)| x.as_str());
            deleted(broker.clear_topic_permissions(v, u, exchange))
        }
        ("GET", ["api", "user-limits"]) => ok(user_limits(broker, None)),
        ("GET", ["api", "user-limits", u]) => {
            if broker.users.user(u).is_none() {
                return Some(not_found());
            }
            ok(user_limits(broker, Some(u)))
        }
        ("PUT", ["api", "user-limits", u, limit]) => with_body(req, |b| {
            if !matches!(*limit, "max-connections" | "max-channels") {
                return Response::error(
                    400,
                    "bad_request",
                    format!("Unrecognised terms [{{<<\"{limit}\">>}}] in user-limits"),
                );
            }
            let value = match limit_value(b, limit) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if broker.set_user_limit(u, limit, Some(value)) {
                Response::empty(204)
            } else {
                Response::json(
                    400,
                    &json!({"error": "bad_request", "reason": ["no_such_user", u]}),
                )
            }
        }),
        ("DELETE", ["api", "user-limits", u, limit]) => {
            broker.set_user_limit(u, limit, None);
            Response::empty(204)
        }
        _ => return None,
    })
}

fn deleted(existed: bool) -> Response {
    if existed {
        Response::empty(204)
    } else {
        not_found()
    }
}

/// String values of `keys`, each required (RabbitMQ: 400 "[{key_missing,K}]").
fn required(b: &Map<String, Value>, keys: &[&str]) -> Result<Vec<String>, Response> {
    keys.iter()
        .map(|k| match b.get(*k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Response::error(
                400,
                "bad_request",
                format!("{k} must be a string"),
            )),
            None => Err(Response::error(
                400,
                "bad_request",
                format!("[{{key_missing,{k}}}]"),
            )),
        })
        .collect()
}

/// A limit's `value`: a number (negative: no limit).
pub(super) fn limit_value(b: &Map<String, Value>, limit: &str) -> Result<i64, Response> {
    match b.get("value") {
        Some(v) => v.as_i64().ok_or_else(|| {
            Response::error(
                400,
                "bad_request",
                format!("Validation failed\n\n{limit} should be a number, actually was {v}\n"),
            )
        }),
        None => Err(Response::error(400, "bad_request", "[{key_missing,value}]")),
    }
}

/// RabbitMQ's tags: a list, or a comma-separated string (trimmed, empties dropped).
pub(super) fn tags_of(v: &Value) -> Option<Vec<String>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    };
    match v {
        Value::String(s) => Some(split(s)),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(split)
                .collect(),
        ),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// A user from a PUT body or a definitions entry: `tags` required; `password` (hashed here),
/// or `password_hash` with `hashing_algorithm`; neither keeps `keep` (None: no password).
/// Err: RabbitMQ's 400 reason.
pub fn user_from_json(
    name: &str,
    b: &Map<String, Value>,
    keep: Option<&User>,
) -> Result<User, Value> {
    let bad = |reason: Value| reason;
    let tags = match b.get("tags").map(tags_of) {
        Some(Some(t)) => t,
        Some(None) => return Err(bad(json!("tags must be a string or a list"))),
        None => return Err(bad(json!("tags_not_present"))),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad(json!("user names are 1 to 255 bytes")));
    }
    let hashing = match b.get("hashing_algorithm").and_then(Value::as_str) {
        None => Hashing::Sha256,
        Some(a) => match Hashing::parse(a) {
            Some(h) => h,
            None => return Err(bad(json!(["unknown_hashing_algorithm", a]))),
        },
    };
    let password = match (b.get("password"), b.get("password_hash")) {
        (Some(Value::String(p)), _) => PasswordHash::new(Hashing::Sha256, p),
        (Some(_), _) => return Err(bad(json!("password must be a string"))),
        (None, Some(Value::String(h))) => match PasswordHash::from_base64(hashing, h) {
            Some(p) => p,
            None => return Err(bad(json!(["not_base64", h]))),
        },
        (None, Some(_)) => return Err(bad(json!("password_hash must be a string"))),
        // RabbitMQ: an update without either clears the password; a new user gets none.
        (None, None) => PasswordHash::default(),
    };
    let limits = keep.map(|u| u.limits.clone()).unwrap_or_default();
    let limits = match b.get("limits").and_then(Value::as_object) {
        Some(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
            .collect(),
        None => limits,
    };
    Ok(User {
        name: name.to_string(),
        password,
        tags,
        limits,
    })
}

fn put_user(broker: &Broker, name: &str, b: &Map<String, Value>) -> Response {
    let existing = broker.users.user(name);
    match user_from_json(name, b, existing.as_deref()) {
        Ok(user) => {
            broker.put_user(user);
            Response::empty(if existing.is_some() { 204 } else { 201 })
        }
        Err(reason) => Response::json(400, &json!({"error": "bad_request", "reason": reason})),
    }
}

/// RabbitMQ deletes in order and stops at the first missing user (without undoing).
fn bulk_delete(broker: &Broker, b: &Map<String, Value>) -> Response {
    let Some(names) = b.get("users").and_then(Value::as_array) else {
        return Response::error(400, "bad_request", "[{key_missing,users}]");
    };
    for n in names {
        let n = n.as_str().unwrap_or_default();
        if !broker.delete_user(n) {
            return Response::json(
                400,
                &json!({"error": "bad_request", "reason": ["no_such_user", n]}),
            );
        }
    }
    Response::empty(204)
}

pub fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password.to_base64(),
        "hashing_algorithm": u.password.hashing.name(),
        "tags": u.tags,
        "limits": u.limits,
    })
}

pub fn users_json(broker: &Broker) -> Value {
    broker.users.list().iter().map(|u| user_json(u)).collect()
}

/// Permissions whose (vhost, user) `pick` chooses.
pub fn permissions_json(broker: &Broker, pick: impl Fn(&str, &str) -> bool) -> Value {
    broker
        .users
        .permissions()
        .iter()
        .filter(|(v, u, _)| pick(v, u))
        .map(|(v, u, p)| {
            json!({"user": u, "vhost": v, "configure": p.configure.source,
                   "write": p.write.source, "read": p.read.source})
        })
        .collect()
}

pub fn topic_permissions_json(broker: &Broker, pick: impl Fn(&str, &str) -> bool) -> Value {
    broker
        .users
        .topic_permissions()
        .iter()
        .filter(|(v, u, _)| pick(v, u))
        .map(|(v, u, t)| {
            json!({"user": u, "vhost": v, "exchange": t.exchange,
                   "write": t.write.source, "read": t.read.source})
        })
        .collect()
}

fn user_limits(broker: &Broker, only: Option<&str>) -> Value {
    broker
        .users
        .list()
        .iter()
        .filter(|u| only.is_none_or(|n| n == u.name) && !u.limits.is_empty())
        .map(|u| json!({"user": u.name, "value": u.limits}))
        .collect()
}
