//! Routes of the management API and the read-only views, in the shapes RabbitMQ's management
//! plugin uses (field names, vhost in the path as %2F, 404 bodies), so rabbitmqadmin-style
//! tools and scripts written against RabbitMQ read them unchanged.

use super::http::{Request, Response};
use super::json::from_table;
pub use super::reply::{
    channel_count, connections_json, filter, not_found, ok, properties_key, with_vhost, NODE,
};
use super::{access, write};
use crate::broker::Broker;
use crate::exchange::{Binding, Exchange};
use crate::queue::Queue;
use crate::vhost::VHost;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, req: &Request) -> Response {
    super::paging::apply(req, route(broker, req))
}

fn route(broker: &Arc<Broker>, req: &Request) -> Response {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, seg.as_slice()) {
        ("GET", ["metrics"]) => super::metrics::render(broker),
        ("GET", ["api", "overview"]) => ok(overview(broker)),
        ("GET", ["api", "whoami"]) => match &req.user {
            Some(u) => ok(json!({"name": u.name, "tags": u.tags})),
            None => not_found(),
        },
        ("GET", ["api", "healthchecks", "node"]) => ok(json!({"status": "ok"})),
        ("GET", ["api", "aliveness-test", v]) => {
            with_vhost(broker, v, |_| ok(json!({"status": "ok"})))
        }
        ("GET", ["api", "vhosts"]) => ok(broker
            .vhosts()
            .iter()
            .filter(|v| {
                req.user.as_ref().is_none_or(|u| {
                    access::is_monitor(u) || access::may_access_vhost(broker, u, &v.name)
                })
            })
            .map(|v| vhost_json(v))
            .collect()),
        ("GET", ["api", "vhosts", v]) => with_vhost(broker, v, |vh| ok(vhost_json(vh))),
        ("GET", ["api", "connections"]) => {
            let all = connections_json(broker, None);
            match &req.user {
                Some(u) if !access::is_monitor(u) => ok(filter(all, |c| c["user"] == *u.name)),
                _ => ok(all),
            }
        }
        ("GET", ["api", "vhosts", v, "connections"]) => with_vhost(broker, v, |vh| {
            let all = connections_json(broker, Some(&vh.name));
            match &req.user {
                Some(u) if !access::is_monitor(u) => ok(filter(all, |c| c["user"] == *u.name)),
                _ => ok(all),
            }
        }),
        ("GET", ["api", "connections", name]) => {
            match connections_json(broker, None)
                .as_array()
                .and_then(|a| a.iter().find(|c| c["name"] == *name).cloned())
            {
                Some(c) => ok(c),
                None => not_found(),
            }
        }
        ("DELETE", ["api", "connections", name]) => {
            let reason = req
                .reason
                .as_deref()
                .unwrap_or("Closed via management plugin");
            if broker.close_connection(name, reason) {
                Response::empty(204)
            } else {
                not_found()
            }
        }
        ("GET", ["api", "exchanges"]) => ok(each_vhost(broker, req, exchanges)),
        ("GET", ["api", "exchanges", v]) => with_vhost(broker, v, |vh| ok(exchanges(vh))),
        ("GET", ["api", "exchanges", v, x]) => with_vhost(broker, v, |vh| {
            match vh.exchange(super::reply::exchange_name(x)) {
                Some(e) => ok(exchange_json(vh, &e)),
                None => not_found(),
            }
        }),
        ("GET", ["api", "exchanges", v, x, "bindings", dir @ ("source" | "destination")]) => {
            with_vhost(broker, v, |vh| {
                // amq.default names the default exchange here too (its implicit bindings).
                let x = super::reply::exchange_name(x);
                if !x.is_empty() && vh.exchange(x).is_none() {
                    return not_found();
                }
                let key = if *dir == "source" {
                    "source"
                } else {
                    "destination"
                };
                ok(filter(bindings(vh), |b| {
                    b[key] == *x && (key == "source" || b["destination_type"] == "exchange")
                }))
            })
        }
        ("GET", ["api", "queues"]) => ok(each_vhost(broker, req, queues)),
        ("GET", ["api", "queues", v]) => with_vhost(broker, v, |vh| ok(queues(vh))),
        ("GET", ["api", "queues", v, q]) => with_vhost(broker, v, |vh| match vh.queue(q) {
            Some(q) => ok(queue_json(&q)),
            None => not_found(),
        }),
        ("GET", ["api", "queues", v, q, "bindings"]) => with_vhost(broker, v, |vh| {
            if vh.queue(q).is_none() {
                return not_found();
            }
            ok(filter(bindings(vh), |b| {
                b["destination"] == *q && b["destination_type"] == "queue"
            }))
        }),
        ("GET", ["api", "bindings"]) => ok(each_vhost(broker, req, bindings)),
        ("GET", ["api", "bindings", v]) => with_vhost(broker, v, |vh| ok(bindings(vh))),
        ("GET", ["api", "bindings", v, "e", x, t @ ("q" | "e"), d]) => {
            with_vhost(broker, v, |vh| {
                let kind = if *t == "q" { "queue" } else { "exchange" };
                ok(filter(bindings(vh), |b| {
                    b["source"] == *x && b["destination"] == *d && b["destination_type"] == kind
                }))
            })
        }
        ("GET", ["api", "consumers"]) => ok(each_vhost(broker, req, consumers)),
        ("GET", ["api", "consumers", v]) => with_vhost(broker, v, |vh| ok(consumers(vh))),
        ("GET", ["api", "definitions"]) => ok(definitions(broker)),
        (_, ["api", ..]) => match super::node::handle(broker, req, &seg)
            .or_else(|| write::handle(broker, req, &seg))
            .or_else(|| super::users::handle(broker, req, &seg))
            .or_else(|| super::vhosts::handle(broker, req, &seg))
            .or_else(|| super::policies::handle(broker, req, &seg))
            .or_else(|| super::channels::handle(broker, req, &seg))
            .or_else(|| super::parameters::handle(broker, req, &seg))
            .or_else(|| super::testing::handle(broker, req, &seg))
        {
            Some(r) => r,
            None => unrouted(req, &seg),
        },
        _ => unrouted(req, &seg),
    }
}

/// No handler answered: a known path with another method is 405 with RabbitMQ's `allow`
/// header and no body; anything else is RabbitMQ's 404.
fn unrouted(req: &Request, seg: &[&str]) -> Response {
    let allowed = super::endpoints::methods(seg);
    if allowed.is_empty() || allowed.contains(&req.method.as_str()) {
        return not_found();
    }
    let mut r = Response::empty(405);
    r.allow = Some(super::endpoints::allow_header(&allowed));
    r
}

/// `f` over every vhost the requesting user may look into.
fn each_vhost(broker: &Broker, req: &Request, f: fn(&VHost) -> Value) -> Value {
    let mut all = Vec::new();
    for vh in broker.vhosts() {
        if let Some(u) = &req.user {
            if !access::may_access_vhost(broker, u, &vh.name) {
                continue;
            }
        }
        if let Value::Array(items) = f(&vh) {
            all.extend(items);
        }
    }
    Value::Array(all)
}

fn overview(broker: &Broker) -> Value {
    let (mut queues, mut exchanges, mut consumers, mut ready, mut unacked) =
        (0, 0, 0u64, 0u64, 0u64);
    for vh in broker.vhosts() {
        exchanges += vh.exchanges().len();
        queues += vh.queues().len();
        let t = queue_totals(&vh);
        consumers += t.consumers;
        ready += t.ready;
        unacked += t.unacked;
    }
    let conns = broker.connections();
    let channels = channel_count(&conns);
    let (recv_oct, send_oct, messages) = broker.totals();
    let mut message_stats = crate::stats::json(&messages, crate::stats::CHANNEL_STATS);
    message_stats["recv_oct"] = recv_oct.into();
    message_stats["send_oct"] = send_oct.into();
    let exchange_types: Vec<Value> = [
        "direct",
        "fanout",
        "headers",
        "topic",
        "x-consistent-hash",
        "x-delayed-message",
        "x-federation-upstream",
        "x-message-deduplication",
    ]
    .iter()
    .map(|t| json!({"name": t, "description": "", "enabled": true}))
    .collect();
    let contexts: Vec<Value> = broker
        .listeners()
        .iter()
        .filter(|(p, _)| p.starts_with("http"))
        .map(|(_, port)| {
            json!({"node": NODE, "description": "RabbitMQ Management", "path": "/",
                   "port": port.to_string()})
        })
        .collect();
    json!({
        "management_version": broker.config.rabbitmq_version,
        "rabbitmq_version": broker.config.rabbitmq_version,
        "product_name": "Warren",
        // Tools compare this with RabbitMQ releases; Warren's own version has its own key.
        "product_version": broker.config.rabbitmq_version,
        "warren_version": env!("CARGO_PKG_VERSION"),
        "cluster_name": broker.cluster_name(),
        "node": NODE,
        "uptime_ms": u64::try_from(broker.started_at.elapsed().as_millis()).unwrap_or(u64::MAX),
        "object_totals": {
            "connections": conns.len(), "channels": channels, "exchanges": exchanges,
            "queues": queues, "consumers": consumers,
        },
        "queue_totals": {
            "messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked,
        },
        "message_stats": message_stats,
        "rates_mode": "basic",
        "exchange_types": exchange_types,
        "contexts": contexts,
        "listeners": broker.listeners().iter().map(|(protocol, port)| json!({
            "node": NODE, "protocol": protocol, "ip_address": broker.config.bind, "port": port,
        })).collect::<Vec<_>>(),
    })
}

/// Ready, unacknowledged and consumer counts summed over a vhost's queues.
pub struct QueueTotals {
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

pub fn queue_totals(vh: &VHost) -> QueueTotals {
    let mut t = QueueTotals {
        ready: 0,
        unacked: 0,
        consumers: 0,
    };
    for q in vh.queues() {
        t.ready += u64::from(q.message_count());
        t.unacked += q.unacked_count();
        t.consumers += u64::from(q.consumer_count());
    }
    t
}

fn vhost_json(vh: &VHost) -> Value {
    let QueueTotals { ready, unacked, .. } = queue_totals(vh);
    let meta = vh.meta();
    json!({"name": vh.name, "description": meta.description, "tags": meta.tags,
           "metadata": {"description": meta.description, "tags": meta.tags},
           "default_queue_type": "undefined", "tracing": vh.tracing(),
           "cluster_state": {NODE: "running"},
           "messages": ready + unacked, "messages_ready": ready,
           "messages_unacknowledged": unacked})
}

fn exchanges(vh: &VHost) -> Value {
    let mut xs = vh.exchanges();
    xs.sort_by(|a, b| a.name.cmp(&b.name));
    xs.iter().map(|x| exchange_json(vh, x)).collect()
}

fn exchange_json(vh: &VHost, x: &Exchange) -> Value {
    // The default exchange counts apart: routing never looks it up.
    let stats = if x.name.is_empty() {
        vh.default_exchange_stats.sample()
    } else {
        x.stats.sample()
    };
    json!({"name": x.name, "vhost": vh.name, "type": x.type_name(), "durable": x.durable,
           "auto_delete": x.auto_delete, "internal": x.internal,
           "arguments": from_table(&x.arguments), "policy": x.policy_name(),
           "message_stats": crate::stats::json(&stats, crate::stats::EXCHANGE_STATS)})
}

fn queues(vh: &VHost) -> Value {
    let mut qs = vh.queues();
    qs.sort_by(|a, b| a.name().cmp(b.name()));
    qs.iter().map(queue_json).collect()
}

pub fn queue_json(q: &Arc<Queue>) -> Value {
    let c = &q.config;
    let ready = u64::from(q.message_count());
    let unacked = q.unacked_count();
    let p = q.policy.lock().map(|p| p.clone()).unwrap_or_default();
    let effective = Value::Object(p.definition);
    let ((ram, ram_bytes), (paged, paged_bytes)) = q.residence();
    let mut out = json!({
        "name": c.name, "vhost": c.vhost, "durable": c.durable, "auto_delete": c.auto_delete,
        "exclusive": c.exclusive_owner.is_some(), "arguments": from_table(&c.arguments),
        "type": if q.is_quorum() { "quorum" } else { "classic" }, "state": "running",
        "node": NODE, "policy": p.policy, "operator_policy": p.operator_policy,
        "effective_policy_definition": effective,
        "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
        "consumers": q.consumer_count(),
        // Where the messages are, as RabbitMQ's classic queues report it (unacknowledged
        // messages are out on delivery, in memory; byte counts cover ready messages).
        "messages_ram": ram as u64 + unacked, "messages_ready_ram": ram,
        "messages_unacknowledged_ram": unacked, "messages_paged_out": paged,
        "message_bytes_ready": ram_bytes + paged_bytes, "message_bytes_ram": ram_bytes,
        "message_bytes_paged_out": paged_bytes,
        "message_stats": crate::stats::json(&q.stats(), crate::stats::QUEUE_STATS),
    });
    if let (Some(log), Some(obj)) = (q.stream_stats(), out.as_object_mut()) {
        stream_fields(obj, &log, q.consumer_count());
    }
    out
}

/// A stream's queue fields: RabbitMQ's (messages in the log, readers, members) and the log's
/// shape (segments, first and last offset, bytes on disk).
fn stream_fields(
    obj: &mut serde_json::Map<String, Value>,
    log: &crate::store::log::LogStats,
    readers: u32,
) {
    let messages = log.next - log.first;
    for (k, v) in [
        ("type", json!("stream")),
        ("messages", json!(messages)),
        ("messages_ready", json!(messages)),
        ("readers", json!({ NODE: readers })),
        ("members", json!([NODE])),
        ("online", json!([NODE])),
        ("segments", json!(log.segments)),
        ("first_offset", json!(log.first)),
        ("last_offset", json!(log.next.checked_sub(1))),
        ("committed_offset", json!(log.next.checked_sub(1))),
        ("message_bytes", json!(log.bytes)),
    ] {
        obj.insert(k.to_string(), v);
    }
}

/// Every binding, including the implicit ones of the default exchange (as RabbitMQ lists them).
fn bindings(vh: &VHost) -> Value {
    let mut out = Vec::new();
    let mut qs = vh.queues();
    qs.sort_by(|a, b| a.name().cmp(b.name()));
    for q in &qs {
        out.push(
            json!({"source": "", "vhost": vh.name, "destination": q.name(),
                        "destination_type": "queue", "routing_key": q.name(), "arguments": {},
                        "properties_key": q.name()}),
        );
    }
    let mut xs = vh.exchanges();
    xs.sort_by(|a, b| a.name.cmp(&b.name));
    for x in xs.iter().filter(|x| !x.name.is_empty()) {
        for b in x.bindings() {
            out.push(binding_json(vh, x, &b));
        }
    }
    Value::Array(out)
}

fn binding_json(vh: &VHost, x: &Exchange, b: &Binding) -> Value {
    json!({
        "source": x.name, "vhost": vh.name, "destination": b.destination.name(),
        "destination_type": if b.destination.is_queue() { "queue" } else { "exchange" },
        "routing_key": b.routing_key, "arguments": from_table(&b.arguments),
        "properties_key": properties_key(&b.routing_key, &from_table(&b.arguments)),
    })
}

fn consumers(vh: &VHost) -> Value {
    let mut out = Vec::new();
    let mut qs = vh.queues();
    qs.sort_by(|a, b| a.name().cmp(b.name()));
    for q in qs {
        let sac = q.config.args.single_active_consumer;
        for (i, c) in q.consumers().into_iter().enumerate() {
            // With single-active-consumer only the first registered one gets messages.
            let active = !sac || i == 0;
            let status = match (sac, active) {
                (false, _) => "up",
                (true, true) => "single_active",
                (true, false) => "waiting",
            };
            let arguments = if c.priority != 0 {
                json!({"x-priority": c.priority})
            } else {
                json!({})
            };
            out.push(json!({
                "queue": {"name": q.name(), "vhost": vh.name},
                "consumer_tag": c.tag,
                "channel_details": {"number": c.channel, "connection_id": c.conn_id},
                "ack_required": !c.no_ack, "exclusive": c.exclusive,
                "prefetch_count": c.prefetch, "active": active, "activity_status": status,
                "arguments": arguments,
            }));
        }
    }
    Value::Array(out)
}

/// GET /api/definitions: what a RabbitMQ export holds for topology (durable objects only).
fn definitions(broker: &Broker) -> Value {
    let mut exchanges_out = Vec::new();
    let mut queues_out = Vec::new();
    let mut bindings_out = Vec::new();
    for vh in broker.vhosts() {
        for x in exchanges(&vh).as_array().into_iter().flatten() {
            let name = x["name"].as_str().unwrap_or("");
            if x["durable"] == true && !name.is_empty() && !name.starts_with("amq.") {
                exchanges_out.push(x.clone());
            }
        }
        for q in queues(&vh).as_array().into_iter().flatten() {
            if q["durable"] == true && q["exclusive"] == false {
                queues_out.push(json!({"name": q["name"], "vhost": q["vhost"],
                    "durable": true, "auto_delete": q["auto_delete"], "arguments": q["arguments"]}));
            }
        }
        // Only bindings whose both ends are exported (or built in): a binding to an
        // exclusive or transient queue would make the file fail to import.
        let exported = |kind: &Value, name: &Value| -> bool {
            let name = name.as_str().unwrap_or("");
            if kind == "exchange" {
                name.starts_with("amq.")
                    || exchanges_out
                        .iter()
                        .any(|x| x["name"] == name && x["vhost"] == vh.name.as_str())
            } else {
                queues_out
                    .iter()
                    .any(|q| q["name"] == name && q["vhost"] == vh.name.as_str())
            }
        };
        for b in bindings(&vh).as_array().into_iter().flatten() {
            if b["source"] != ""
                && exported(&json!("exchange"), &b["source"])
                && exported(&b["destination_type"], &b["destination"])
            {
                let mut b = b.clone();
                if let Some(m) = b.as_object_mut() {
                    m.remove("properties_key");
                }
                bindings_out.push(b);
            }
        }
    }
    json!({
        "rabbit_version": broker.config.rabbitmq_version,
        "rabbitmq_version": broker.config.rabbitmq_version,
        "product_name": "Warren", "product_version": broker.config.rabbitmq_version,
        "users": super::users::users_json(broker),
        "vhosts": broker.vhosts().iter().map(|v| {
            let meta = v.meta();
            json!({"name": v.name, "description": meta.description, "tags": meta.tags})
        }).collect::<Vec<_>>(),
        "permissions": super::users::permissions_json(broker, |_, _| true),
        "topic_permissions": super::users::topic_permissions_json(broker, |_, _| true),
        "parameters": super::parameters::parameters(broker, |c, _| {
            matches!(c, "vhost-limits" | "shovel" | "federation-upstream" | "federation-upstream-set")
        }),
        "global_parameters": broker.global_parameters().into_iter()
            .map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
        "policies": super::policies::list(broker, false, |_| true),
        "queues": queues_out, "exchanges": exchanges_out, "bindings": bindings_out,
    })
}
