//! Channels and per-user connections over the management API, in RabbitMQ 3.10's shapes:
//! `/api/channels[/{name}]`, `/api/connections/{name}/channels`, `/api/vhosts/{v}/channels`,
//! `/api/connections/username/{user}` (GET lists, DELETE closes them all). Channel figures
//! come from each connection's own task (`Broker::channel_snapshots`).

use super::http::{Request, Response};
use super::reply::{not_found, ok, NODE};
use crate::broker::Broker;
use crate::meta::{ChannelSnapshot, ConnMeta};
use serde_json::{json, Value};
use std::sync::Arc;

/// Paths whose answer needs the channels gathered first.
pub fn wants_channels(seg: &[String]) -> bool {
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    matches!(
        s.as_slice(),
        ["api", "channels", ..]
            | ["api", "connections", _, "channels"]
            | ["api", "vhosts", _, "channels"]
    )
}

fn channel_json(broker: &Broker, c: &ConnMeta, ch: &ChannelSnapshot) -> Value {
    let stats = broker.channel_rates.rates((c.id, ch.number), ch.counts);
    json!({
        "name": format!("{} ({})", c.name, ch.number), "number": ch.number, "node": NODE,
        "vhost": c.vhost, "user": c.user, "user_who_performed_action": c.user,
        "connection_details": {"name": c.name, "peer_host": c.peer.ip().to_string(),
                               "peer_port": c.peer.port()},
        "state": "running", "consumer_count": ch.consumer_count,
        "messages_unacknowledged": ch.messages_unacknowledged,
        "messages_unconfirmed": ch.messages_unconfirmed,
        "messages_uncommitted": ch.messages_uncommitted, "acks_uncommitted": ch.acks_uncommitted,
        "prefetch_count": ch.prefetch_count, "global_prefetch_count": ch.global_prefetch_count,
        "confirm": ch.confirm, "transactional": ch.transactional,
        "message_stats": crate::stats::json(&stats, crate::stats::CHANNEL_STATS),
    })
}

/// Channels of the connections `pick` chooses, and that the requesting user may see.
fn channels(broker: &Broker, req: &Request, pick: impl Fn(&ConnMeta) -> bool) -> Vec<Value> {
    let mine = |c: &ConnMeta| {
        req.user
            .as_ref()
            .is_none_or(|u| super::access::is_monitor(u) || u.name == c.user)
    };
    let mut out = Vec::new();
    for (c, list) in req.channels.iter().flatten() {
        if pick(c) && mine(c) {
            out.extend(list.iter().map(|ch| channel_json(broker, c, ch)));
        }
    }
    out
}

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    Some(match (req.method.as_str(), seg) {
        ("GET", ["api", "connections", "username", user]) => {
            let all = super::reply::connections_json(broker, None);
            ok(super::reply::filter(all, |c| c["user"] == *user))
        }
        ("DELETE", ["api", "connections", "username", user]) => {
            let reason = req
                .reason
                .as_deref()
                .unwrap_or("Closed via management plugin");
            broker.close_where(|c| c.user == *user, reason);
            Response::empty(204)
        }
        ("GET", ["api", "channels"]) => ok(Value::Array(channels(broker, req, |_| true))),
        ("GET", ["api", "channels", name]) => {
            match channels(broker, req, |_| true)
                .into_iter()
                .find(|c| c["name"] == *name)
            {
                Some(c) => ok(c),
                None => not_found(),
            }
        }
        ("GET", ["api", "connections", name, "channels"]) => {
            if !broker.connections().iter().any(|c| c.name == *name) {
                return Some(not_found());
            }
            ok(Value::Array(channels(broker, req, |c| c.name == *name)))
        }
        ("GET", ["api", "vhosts", v, "channels"]) => {
            if broker.vhost(v).is_none() {
                return Some(not_found());
            }
            ok(Value::Array(channels(broker, req, |c| c.vhost == *v)))
        }
        _ => return None,
    })
}
