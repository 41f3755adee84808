//! What every management handler answers with: JSON replies, RabbitMQ's 404, the vhost lookup,
//! and the names shared across the API (the node, a binding's properties key).

use super::http::{Request, Response};
use super::json::from_table;
use crate::broker::Broker;
use crate::vhost::VHost;
use serde_json::Value;
use serde_json::{json, Map};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub const NODE: &str = crate::broker::NODE_NAME;

pub fn ok(v: Value) -> Response {
    Response::json(200, &v)
}

pub fn not_found() -> Response {
    Response::error(404, "Object Not Found", "Not Found")
}

pub fn with_vhost(
    broker: &Broker,
    name: &str,
    f: impl FnOnce(&Arc<VHost>) -> Response,
) -> Response {
    match broker.vhost(name) {
        Some(vh) => f(&vh),
        None => not_found(),
    }
}

pub fn channel_count(conns: &[Arc<crate::meta::ConnMeta>]) -> u64 {
    conns
        .iter()
        .map(|c| u64::from(c.channels.load(Relaxed)))
        .sum()
}

/// RabbitMQ's binding id in URLs: the routing key ("~" when empty), plus "~" and a hash of the
/// arguments when there are any.
pub fn properties_key(routing_key: &str, arguments: &Value) -> String {
    let empty = arguments.as_object().is_none_or(|m| m.is_empty());
    let key = if routing_key.is_empty() {
        "~"
    } else {
        routing_key
    };
    if empty {
        return key.to_string();
    }
    // FNV-1a over the canonical JSON: stable across runs, unlike std's random hasher.
    let text = arguments.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{key}~{h:x}")
}

/// The management API names the default exchange "amq.default".
pub fn exchange_name(x: &str) -> &str {
    if x == "amq.default" {
        ""
    } else {
        x
    }
}

/// The request body as a JSON object (an empty body is an empty object).
pub fn with_body(req: &Request, f: impl FnOnce(&Map<String, Value>) -> Response) -> Response {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return f(&Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => f(&m),
        Ok(_) => Response::error(400, "bad_request", "body must be a JSON object"),
        // RabbitMQ's reason, word for word.
        Err(_) => Response::error(400, "bad_request", "not_json"),
    }
}

/// Keep the items of a JSON array that `keep` accepts.
pub fn filter(v: Value, keep: impl Fn(&Value) -> bool) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().filter(|b| keep(b)).collect()),
        other => other,
    }
}

/// Live connections as the API shows them (all, or one vhost's).
pub fn connections_json(broker: &Broker, vhost: Option<&str>) -> Value {
    broker
        .connections()
        .iter()
        .filter(|c| vhost.is_none_or(|v| c.vhost == v))
        .map(|c| {
            let local = c.name.rsplit(" -> ").next().unwrap_or("");
            let (host, port) = local.rsplit_once(':').unwrap_or((local, "0"));
            json!({
                "name": c.name, "node": NODE, "vhost": c.vhost, "user": c.user,
                "state": "running", "type": "network", "protocol": "AMQP 0-9-1", "ssl": false,
                "peer_host": c.peer.ip().to_string(), "peer_port": c.peer.port(),
                "host": host, "port": port.parse::<u16>().unwrap_or(0),
                "channels": c.channels.load(Relaxed), "channel_max": c.channel_max,
                "frame_max": c.frame_max, "timeout": c.heartbeat,
                "connected_at": c.connected_at_ms,
                "client_properties": from_table(&c.client_properties),
                "recv_oct": c.stats.recv_oct.load(Relaxed), "send_oct": c.stats.send_oct.load(Relaxed),
                "message_stats": crate::stats::json(&c.stats.messages.sample(), crate::stats::CHANNEL_STATS),
            })
        })
        .collect()
}
