//! Management requests that change things: declare and delete exchanges and queues, purge,
//! bindings, publish and get. They go through the same vhost calls as the AMQP methods, so the
//! checks, RabbitMQ's error texts and durability are the same.

use super::http::{Request, Response};
use super::json::{from_table, to_table};
use super::reply::{exchange_name, not_found, ok, properties_key, with_body, with_vhost};
use crate::broker::Broker;
use crate::error::AmqpError;
use crate::message::Message;
use crate::queue::Effects;
use crate::vhost::{ExchangeDecl, QueueDecl, VHost};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{FieldTable, ShortString};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Management acts as no connection: exclusive queues of connections stay theirs.
const NO_CONNECTION: u64 = 0;

pub fn handle(broker: &Arc<Broker>, req: &Request, seg: &[&str]) -> Option<Response> {
    let m = req.method.as_str();
    if let Some(u) = &req.user {
        if let Err(refused) = super::access::resource_check(broker, u, m, seg, &req.body) {
            return Some(refused);
        }
    }
    let r = match (m, seg) {
        ("PUT", ["api", "exchanges", v, x]) => with_body(req, |b| {
            with_vhost(broker, v, |vh| declare_exchange(vh, x, b))
        }),
        ("DELETE", ["api", "exchanges", v, x]) => with_vhost(broker, v, |vh| {
            if vh.exchange(x).is_none() {
                return not_found();
            }
            done(vh.delete_exchange(x, req.query_flag("if-unused"), &mut Effects::default()))
        }),
        ("POST", ["api", "exchanges", v, x, "publish"]) => {
            let user = req.user.as_ref().map_or("", |u| u.name.as_str());
            with_body(req, |b| with_vhost(broker, v, |vh| publish(vh, x, b, user)))
        }
        ("PUT", ["api", "queues", v, q]) => {
            with_body(req, |b| with_vhost(broker, v, |vh| declare_queue(vh, q, b)))
        }
        ("DELETE", ["api", "queues", v, q]) => with_vhost(broker, v, |vh| {
            if vh.queue(q).is_none() {
                return not_found();
            }
            let mut fx = Effects::default();
            let r = vh.delete_queue(
                q,
                req.query_flag("if-unused"),
                req.query_flag("if-empty"),
                NO_CONNECTION,
                &mut fx,
            );
            vh.submit(&mut fx);
            done(r.map(|_| ()))
        }),
        ("DELETE", ["api", "queues", v, q, "contents"]) => with_vhost(broker, v, |vh| {
            let queue = match vh.queue_for(q, NO_CONNECTION) {
                Ok(queue) => queue,
                Err(e) => return amqp_error(e),
            };
            if let Err(e) = queue.refuse_on_stream("queue.purge") {
                return amqp_error(e);
            }
            let mut fx = Effects::default();
            queue.purge(&mut fx);
            vh.submit(&mut fx);
            Response::empty(204)
        }),
        ("POST", ["api", "queues", v, q, "get"]) => {
            with_body(req, |b| with_vhost(broker, v, |vh| get(vh, q, b)))
        }
        ("POST", ["api", "queues", v, q, "move"]) => {
            with_body(req, |b| with_vhost(broker, v, |vh| move_messages(vh, q, b)))
        }
        ("POST", ["api", "bindings", v, "e", x, t @ ("q" | "e"), d]) => with_body(req, |b| {
            with_vhost(broker, v, |vh| {
                let key = b.get("routing_key").and_then(Value::as_str).unwrap_or("");
                if let Some(r) = too_long("routing_key", key) {
                    return r;
                }
                let args = match to_table(b.get("arguments").unwrap_or(&Value::Null)) {
                    Ok(a) => a,
                    Err(e) => return Response::error(400, "bad_request", e),
                };
                let r = if *t == "q" {
                    vh.bind_queue(d, x, key, &args, NO_CONNECTION, &mut Effects::default())
                } else {
                    vh.bind_exchange(d, x, key, &args, &mut Effects::default())
                };
                match r {
                    Ok(()) => Response::empty(201),
                    Err(e) => amqp_error(e),
                }
            })
        }),
        ("POST", ["api", "definitions"]) => match serde_json::from_slice::<Value>(&req.body) {
            Ok(defs) => match super::definitions::import(broker, &defs) {
                Ok(_) => Response::empty(204),
                Err(e) => Response::error(400, "bad_request", e),
            },
            Err(e) => Response::error(400, "bad_request", format!("not JSON: {e}")),
        },
        ("DELETE", ["api", "bindings", v, "e", x, t @ ("q" | "e"), d, props]) => {
            with_vhost(broker, v, |vh| unbind(vh, x, *t == "q", d, props))
        }
        _ => return None,
    };
    Some(r)
}

fn done(r: Result<(), AmqpError>) -> Response {
    match r {
        Ok(()) => Response::empty(204),
        Err(e) => amqp_error(e),
    }
}

/// RabbitMQ's management answers a refused operation with 400 and the AMQP explanation
/// (without the "PRECONDITION_FAILED - " prefix), and a missing object with 404.
fn amqp_error(e: AmqpError) -> Response {
    match e.code() {
        crate::error::code::NOT_FOUND => not_found(),
        _ => Response::error(400, "bad_request", &e.explanation),
    }
}

fn flag(b: &Map<String, Value>, key: &str, default: bool) -> bool {
    b.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn arguments(b: &Map<String, Value>) -> Result<FieldTable, Response> {
    to_table(b.get("arguments").unwrap_or(&Value::Null))
        .map_err(|e| Response::error(400, "bad_request", e))
}

/// Names and keys are shortstrs over AMQP: what cannot be one is refused here, not later.
fn too_long(what: &str, s: &str) -> Option<Response> {
    (s.len() > 255).then(|| {
        Response::error(
            400,
            "bad_request",
            format!("{what} is longer than 255 bytes"),
        )
    })
}

fn declare_exchange(vh: &VHost, name: &str, b: &Map<String, Value>) -> Response {
    if let Some(r) = too_long("exchange name", name) {
        return r;
    }
    let Some(kind) = b.get("type").and_then(Value::as_str) else {
        return Response::error(400, "bad_request", "key_missing: type");
    };
    let args = match arguments(b) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let existed = vh.exchange(name).is_some();
    let decl = ExchangeDecl {
        name: name.to_string(),
        kind: kind.to_string(),
        durable: flag(b, "durable", true),
        auto_delete: flag(b, "auto_delete", false),
        internal: flag(b, "internal", false),
        arguments: args,
    };
    match vh.declare_exchange(&decl, false, &mut Effects::default()) {
        Ok(()) => Response::empty(if existed { 204 } else { 201 }),
        Err(e) => amqp_error(e),
    }
}

fn declare_queue(vh: &VHost, name: &str, b: &Map<String, Value>) -> Response {
    if let Some(r) = too_long("queue name", name) {
        return r;
    }
    let args = match arguments(b) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let existed = vh.queue(name).is_some();
    let decl = QueueDecl {
        name: name.to_string(),
        server_named: false,
        durable: flag(b, "durable", true),
        exclusive: false,
        auto_delete: flag(b, "auto_delete", false),
        arguments: args,
    };
    match vh.declare_queue(&decl, false, NO_CONNECTION, &mut Effects::default()) {
        Ok(_) => Response::empty(if existed { 204 } else { 201 }),
        Err(e) => amqp_error(e),
    }
}

fn unbind(vh: &VHost, source: &str, to_queue: bool, dest: &str, props: &str) -> Response {
    let Some(x) = vh.exchange(source) else {
        return not_found();
    };
    let found = x.bindings().into_iter().find(|b| {
        b.destination.is_queue() == to_queue
            && b.destination.name() == dest
            && properties_key(&b.routing_key, &from_table(&b.arguments)) == props
    });
    let Some(b) = found else {
        return not_found();
    };
    let r = if to_queue {
        vh.unbind_queue(
            dest,
            source,
            &b.routing_key,
            &b.arguments,
            NO_CONNECTION,
            &mut Effects::default(),
        )
    } else {
        vh.unbind_exchange(
            dest,
            source,
            &b.routing_key,
            &b.arguments,
            &mut Effects::default(),
        )
    };
    done(r)
}

fn publish(vh: &VHost, x: &str, b: &Map<String, Value>, user: &str) -> Response {
    let x = exchange_name(x);
    let key = b.get("routing_key").and_then(Value::as_str).unwrap_or("");
    if let Some(r) = too_long("routing_key", key) {
        return r;
    }
    let payload = b.get("payload").and_then(Value::as_str).unwrap_or("");
    let body = match b.get("payload_encoding").and_then(Value::as_str) {
        Some("base64") => match crate::auth::base64::decode(payload) {
            Some(bytes) => bytes,
            None => return Response::error(400, "bad_request", "payload is not base64"),
        },
        _ => payload.as_bytes().to_vec(),
    };
    let props = match properties_from_json(b.get("properties")) {
        Ok(p) => p,
        Err(e) => return Response::error(400, "bad_request", e),
    };
    // The same checks as a publish over AMQP (internal exchange, user_id, expiration).
    if let Err(e) = vh.check_publish(x, &props, user) {
        return amqp_error(e);
    }
    let message = Message::new(x.to_string(), key.to_string(), props, Bytes::from(body));
    let mut fx = Effects::default();
    // The same path as an AMQP publish (the firehose sees it on channel 1 of the API, as
    // RabbitMQ's management plugin publishes over a direct channel).
    let origin = crate::vhost::TraceOrigin {
        connection: "management API",
        channel: 1,
        user,
    };
    let delivered = match vh.publish(message, &[], &origin, &mut fx) {
        Ok(outcome) => outcome.routed,
        Err(e) => return amqp_error(e),
    };
    vh.submit(&mut fx);
    ok(json!({ "routed": delivered }))
}

/// A message as RabbitMQ's get endpoint shows it.
pub(super) fn message_json(
    m: &Message,
    redelivered: bool,
    left: u32,
    base64: bool,
    truncate: Option<u64>,
) -> Value {
    let mut payload = m.body.to_vec();
    let bytes = payload.len();
    if let Some(t) = truncate.and_then(|t| usize::try_from(t).ok()) {
        payload.truncate(t);
    }
    let (payload, encoding) = match String::from_utf8(payload) {
        Ok(s) if !base64 => (s, "string"),
        Ok(s) => (crate::auth::base64::encode(s.as_bytes()), "base64"),
        Err(e) => (crate::auth::base64::encode(e.as_bytes()), "base64"),
    };
    json!({
        "payload_bytes": bytes, "redelivered": redelivered,
        "exchange": &*m.exchange, "routing_key": &*m.routing_key, "message_count": left,
        "properties": properties_json(&m.properties()),
        "payload": payload, "payload_encoding": encoding,
    })
}

fn get(vh: &VHost, name: &str, b: &Map<String, Value>) -> Response {
    let q = match vh.queue_for(name, NO_CONNECTION) {
        Ok(q) => q,
        Err(e) => return amqp_error(e),
    };
    let count = b.get("count").and_then(Value::as_u64).unwrap_or(1);
    let Some(mode) = b.get("ackmode").and_then(Value::as_str) else {
        return Response::error(400, "bad_request", "key_missing: ackmode");
    };
    let (requeue, reject) = match mode {
        "ack_requeue_true" => (true, false),
        "reject_requeue_true" => (true, true),
        "ack_requeue_false" => (false, false),
        "reject_requeue_false" => (false, true),
        other => return Response::error(400, "bad_request", format!("bad ackmode: {other}")),
    };
    let base64 = b.get("encoding").and_then(Value::as_str) == Some("base64");
    let truncate = b.get("truncate").and_then(Value::as_u64);
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let mut taken = Vec::new();
    for _ in 0..count {
        let (entry, left) = match q.get(false, &mut fx) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                q.requeue(taken, crate::queue::Return::Released, &mut fx);
                vh.submit(&mut fx);
                return amqp_error(e);
            }
        };
        out.push(message_json(
            &entry.message,
            entry.redelivered,
            left,
            base64,
            truncate,
        ));
        taken.push(entry);
    }
    if requeue {
        q.requeue(taken, crate::queue::Return::Released, &mut fx);
    } else if reject {
        q.discard(taken, &mut fx);
    } else {
        q.count_acks(taken.len() as u64);
        q.settle(taken, &mut fx);
    }
    vh.submit(&mut fx);
    ok(Value::Array(out))
}

/// Messages moved within the request; a longer move goes on in the background.
const MOVE_NOW: u32 = 10_000;

/// Warren's own: the messages ready in a queue when asked go, in order, to the back of another
/// queue of the vhost (RabbitMQ's UI moves messages with a shovel). Bounded by that count, so
/// publishers cannot make it endless. Up to `MOVE_NOW` are moved before the answer
/// (`{"moved": n}`); more are moved by a task, a batch at a time between other work
/// (202, `{"moving": n}`). Each message's removal and its new copy go to the store in one
/// submission.
fn move_messages(vh: &Arc<VHost>, name: &str, b: &Map<String, Value>) -> Response {
    let Some(dest) = b.get("destination").and_then(Value::as_str) else {
        return Response::error(400, "bad_request", "key_missing: destination");
    };
    let (src, dst) = match (
        vh.queue_for(name, NO_CONNECTION),
        vh.queue_for(dest, NO_CONNECTION),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return amqp_error(e),
    };
    if Arc::ptr_eq(&src, &dst) {
        return Response::error(
            400,
            "bad_request",
            "source and destination are the same queue",
        );
    }
    let count = src.message_count();
    if count <= MOVE_NOW {
        return match move_some(vh, &src, &dst, count) {
            Ok(moved) => ok(json!({ "moved": moved })),
            Err(e) => amqp_error(e),
        };
    }
    let vh = vh.clone();
    tokio::spawn(async move {
        let mut left = count;
        while left > 0 {
            match move_some(&vh, &src, &dst, left.min(1000)) {
                Ok(0) => break,
                Ok(n) => left -= n.min(left),
                Err(e) => {
                    tracing::warn!(queue = %src.name(), error = %e, "moving messages stopped");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    });
    let mut r = ok(json!({ "moving": count }));
    r.status = 202;
    r
}

/// Move up to `most` messages from `src` to the back of `dst`; how many went. A message the
/// destination refuses (full, with reject-publish), or one taken as the destination was
/// deleted, goes back to the source, and the move stops there.
fn move_some(
    vh: &VHost,
    src: &Arc<crate::queue::Queue>,
    dst: &Arc<crate::queue::Queue>,
    most: u32,
) -> crate::error::AmqpResult<u32> {
    let mut fx = Effects::default();
    let mut moved = 0u32;
    while moved < most {
        match src.get(true, &mut fx) {
            Ok(Some((entry, _))) => {
                let alive = vh.queue(dst.name()).is_some_and(|q| Arc::ptr_eq(&q, dst));
                let rejected = alive
                    && vh
                        .enqueue(
                            entry.message.shallow_clone(),
                            std::slice::from_ref(dst),
                            &mut fx,
                        )
                        .1;
                if !alive || rejected {
                    src.requeue(vec![entry], crate::queue::Return::Released, &mut fx);
                    break;
                }
                src.settle([entry], &mut fx);
                moved += 1;
                if moved.is_multiple_of(1000) {
                    vh.submit(&mut fx);
                }
            }
            Ok(None) => break,
            Err(e) => {
                vh.submit(&mut fx);
                return Err(e);
            }
        }
    }
    vh.submit(&mut fx);
    Ok(moved)
}

fn properties_from_json(v: Option<&Value>) -> Result<BasicProperties, String> {
    let mut p = BasicProperties::default();
    let Some(v) = v else { return Ok(p) };
    let Some(m) = v.as_object() else {
        return Err("properties must be a JSON object".into());
    };
    for k in [
        "content_type",
        "content_encoding",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "type",
        "user_id",
        "app_id",
    ] {
        if m.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.len() > 255)
        {
            return Err(format!("property {k} is longer than 255 bytes"));
        }
    }
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(ShortString::from);
    let n = |k: &str| m.get(k).and_then(Value::as_u64);
    if let Some(x) = s("content_type") {
        p = p.with_content_type(x);
    }
    if let Some(x) = s("content_encoding") {
        p = p.with_content_encoding(x);
    }
    if let Some(h) = m.get("headers") {
        p = p.with_headers(to_table(h)?);
    }
    if let Some(x) = n("delivery_mode") {
        p = p.with_delivery_mode(u8::try_from(x).map_err(|_| "bad delivery_mode")?);
    }
    if let Some(x) = n("priority") {
        p = p.with_priority(u8::try_from(x).map_err(|_| "bad priority")?);
    }
    if let Some(x) = s("correlation_id") {
        p = p.with_correlation_id(x);
    }
    if let Some(x) = s("reply_to") {
        p = p.with_reply_to(x);
    }
    match m.get("expiration") {
        Some(Value::String(x)) => p = p.with_expiration(ShortString::from(x.as_str())),
        Some(Value::Number(x)) => p = p.with_expiration(ShortString::from(x.to_string())),
        _ => {}
    }
    if let Some(x) = s("message_id") {
        p = p.with_message_id(x);
    }
    if let Some(x) = n("timestamp") {
        p = p.with_timestamp(x);
    }
    if let Some(x) = s("type") {
        p = p.with_type(x);
    }
    if let Some(x) = s("user_id") {
        p = p.with_user_id(x);
    }
    if let Some(x) = s("app_id") {
        p = p.with_app_id(x);
    }
    Ok(p)
}

fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(x) = p.content_type() {
        put("content_type", x.to_string().into());
    }
    if let Some(x) = p.content_encoding() {
        put("content_encoding", x.to_string().into());
    }
    if let Some(x) = p.headers() {
        put("headers", from_table(x));
    }
    if let Some(x) = p.delivery_mode() {
        put("delivery_mode", (*x).into());
    }
    if let Some(x) = p.priority() {
        put("priority", (*x).into());
    }
    if let Some(x) = p.correlation_id() {
        put("correlation_id", x.to_string().into());
    }
    if let Some(x) = p.reply_to() {
        put("reply_to", x.to_string().into());
    }
    if let Some(x) = p.expiration() {
        put("expiration", x.to_string().into());
    }
    if let Some(x) = p.message_id() {
        put("message_id", x.to_string().into());
    }
    if let Some(x) = p.timestamp() {
        put("timestamp", (*x).into());
    }
    if let Some(x) = p.kind() {
        put("type", x.to_string().into());
    }
    if let Some(x) = p.user_id() {
        put("user_id", x.to_string().into());
    }
    if let Some(x) = p.app_id() {
        put("app_id", x.to_string().into());
    }
    Value::Object(m)
}
