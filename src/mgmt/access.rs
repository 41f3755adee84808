//! Who may use which part of the management API, by user tag as RabbitMQ 3.10 decides it:
//! no management tag → 401 "Not management user"; users, permissions, limits, vhost
//! administration and definitions → administrator; a vhost's objects → a user with
//! permissions in that vhost; lists show management users only their vhosts (and their own
//! connections), monitoring and administrator users everything.

use super::http::Response;
use crate::auth::{Kind, Perm, User};
use crate::broker::Broker;

const MANAGEMENT_TAGS: [&str; 4] = ["administrator", "monitoring", "policymaker", "management"];

fn not_authorised(reason: &str) -> Response {
    Response::error(401, "not_authorised", reason)
}

pub fn is_admin(user: &User) -> bool {
    user.has_tag("administrator")
}

/// Sees every vhost and connection (RabbitMQ's is_monitor).
pub fn is_monitor(user: &User) -> bool {
    is_admin(user) || user.has_tag("monitoring")
}

/// A user may look into `vhost` when it has permissions there (administrators: always).
pub fn may_access_vhost(broker: &Broker, user: &User, vhost: &str) -> bool {
    is_admin(user) || broker.users.permission(vhost, &user.name).is_some()
}

/// Refuse the request before its body is read, or let it through.
pub fn authorize(
    broker: &Broker,
    user: &User,
    method: &str,
    seg: &[String],
) -> Result<(), Response> {
    if !MANAGEMENT_TAGS.iter().any(|t| user.has_tag(t)) {
        return Err(not_authorised("Not management user"));
    }
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let admin_only = match seg.as_slice() {
        ["api", "users", ..]
        | ["api", "permissions", ..]
        | ["api", "topic-permissions", ..]
        | ["api", "user-limits", ..]
        | ["api", "definitions", ..]
        | ["api", "warren", ..]
        | ["api", "global-parameters", ..]
        | ["api", "rebalance", ..]
        | ["api", "vhosts", _]
        | ["api", "vhosts", _, "permissions" | "topic-permissions"] => true,
        ["api", "vhost-limits", ..]
        | ["api", "cluster-name"]
        | ["api", "operator-policies", ..]
        | ["api", "parameters", "operator_policy" | "vhost-limits", ..] => method != "GET",
        _ => false,
    };
    if admin_only && !is_admin(user) {
        return Err(not_authorised("Not administrator user"));
    }
    if let ["api", "policies" | "parameters" | "shovels" | "federation-links", ..] = seg.as_slice()
    {
        if method != "GET" && !is_admin(user) && !user.has_tag("policymaker") {
            return Err(not_authorised("User not authorised to access object"));
        }
    }
    let vhost = match seg.as_slice() {
        ["api", "queues" | "exchanges" | "bindings" | "consumers" | "aliveness-test" | "policies"
        | "operator-policies" | "vhost-limits", v, ..]
        | ["api", "parameters", _, v, ..]
        | ["api", "shovels" | "federation-links", "vhost", v, ..]
        | ["api", "vhosts", v, "connections" | "channels"] => Some(*v),
        _ => None,
    };
    if let Some(v) = vhost {
        if broker.vhost(v).is_some() && !may_access_vhost(broker, user, v) {
            return Err(not_authorised("User not authorised to access virtual host"));
        }
    }
    // Other users' connections: monitoring and administrator users see them, others only
    // their own (RabbitMQ's is_authorized_user).
    if !is_monitor(user) {
        let theirs = match seg.as_slice() {
            ["api", "connections", "username", u] => *u == user.name,
            ["api", "connections", name, ..] => broker
                .connections()
                .iter()
                .any(|c| c.name == *name && c.user == user.name),
            _ => true,
        };
        if !theirs {
            return Err(not_authorised("Not monitor user"));
        }
    }
    // Closing connections: administrators close any, others only their own.
    if method == "DELETE" && !is_admin(user) {
        let theirs = match seg.as_slice() {
            ["api", "connections", "username", u] => *u == user.name,
            ["api", "connections", name] => broker
                .connections()
                .iter()
                .any(|c| c.name == *name && c.user == user.name),
            _ => true,
        };
        if !theirs {
            return Err(not_authorised("Not administrator user"));
        }
    }
    Ok(())
}

/// What the management API does for a user is held to that user's resource permissions, as
/// RabbitMQ's does (401 "Access refused."; a get shows the AMQP text, a publish answers 400
/// with it, as RabbitMQ's do).
pub fn resource_check(
    broker: &Broker,
    user: &User,
    method: &str,
    seg: &[&str],
    body: &[u8],
) -> Result<(), Response> {
    use Kind::{Exchange, Queue};
    use Perm::{Configure, Read, Write};
    let x = |n: &str| super::reply::exchange_name(n).to_string();
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let arg = |key: &str| json["arguments"][key].as_str().map(String::from);
    let exists = |v: &str, queue: bool, n: &str| {
        broker.vhost(v).is_some_and(|vh| {
            if queue {
                vh.queue(n).is_some()
            } else {
                vh.exchange(n).is_some()
            }
        })
    };
    let (vhost, needs): (&str, Vec<(Perm, Kind, String)>) = match (method, seg) {
        // A new object naming a dead-letter or alternate exchange: read on it, write on that.
        ("PUT", ["api", "exchanges", v, n]) => {
            let mut needs = vec![(Configure, Exchange, x(n))];
            if let (Some(ae), false) = (arg("alternate-exchange"), exists(v, false, n)) {
                needs.extend([(Read, Exchange, x(n)), (Write, Exchange, ae)]);
            }
            (*v, needs)
        }
        ("PUT", ["api", "queues", v, n]) => {
            let mut needs = vec![(Configure, Queue, n.to_string())];
            if let (Some(dlx), false) = (arg("x-dead-letter-exchange"), exists(v, true, n)) {
                needs.extend([(Read, Queue, n.to_string()), (Write, Exchange, dlx)]);
            }
            (*v, needs)
        }
        ("DELETE", ["api", "exchanges", v, n]) => (*v, vec![(Configure, Exchange, x(n))]),
        ("POST", ["api", "exchanges", v, n, "publish"]) => (*v, vec![(Write, Exchange, x(n))]),
        ("DELETE", ["api", "queues", v, n]) => (*v, vec![(Configure, Queue, n.to_string())]),
        ("DELETE", ["api", "queues", v, n, "contents"])
        | ("POST", ["api", "queues", v, n, "get"]) => (*v, vec![(Read, Queue, n.to_string())]),
        ("POST" | "DELETE", ["api", "bindings", v, "e", src, t @ ("q" | "e"), dest, ..]) => {
            let kind = if *t == "q" { Queue } else { Exchange };
            (
                *v,
                vec![(Write, kind, dest.to_string()), (Read, Exchange, x(src))],
            )
        }
        _ => return Ok(()),
    };
    for (perm, kind, name) in needs {
        if broker.users.check(&user.name, vhost, perm, kind, &name) {
            continue;
        }
        let text = crate::channel::access_denied_text(kind, &name, vhost, &user.name);
        return Err(match (method, seg.get(4)) {
            ("POST", Some(&"publish")) => {
                Response::error(400, "bad_request", format!("403 {text}"))
            }
            ("POST", Some(&"get")) => not_authorised(&text),
            _ => not_authorised("Access refused."),
        });
    }
    // Topic permissions, as on a channel: publish (write) and bind (read) on topic exchanges.
    let topic = match (method, seg) {
        ("POST", ["api", "exchanges", v, n, "publish"]) => Some((*v, x(n), Write)),
        ("POST", ["api", "bindings", v, "e", src, ..]) => Some((*v, x(src), Read)),
        _ => None,
    };
    if let Some((v, exchange, perm)) = topic {
        let is_topic = broker
            .vhost(v)
            .and_then(|vh| vh.exchange(&exchange))
            .is_some_and(|e| e.type_name() == "topic");
        let key = json["routing_key"].as_str().unwrap_or("");
        if is_topic
            && !broker
                .users
                .check_topic(&user.name, v, perm, &exchange, key)
        {
            let text = format!(
                "ACCESS_REFUSED - access to topic '{key}' in exchange '{exchange}' in vhost \
                 '{v}' refused for user '{}'",
                user.name
            );
            return Err(if perm == Write {
                Response::error(400, "bad_request", format!("403 {text}"))
            } else {
                not_authorised("Access refused.")
            });
        }
    }
    Ok(())
}
