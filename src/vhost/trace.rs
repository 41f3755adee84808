//! The firehose, as RabbitMQ's rabbit_trace: with tracing on for a vhost, every publish is
//! copied to `amq.rabbitmq.trace` with routing key `publish.{exchange}` and every delivery
//! with `deliver.{queue}`, carrying RabbitMQ's headers (exchange_name, routing_keys,
//! properties, node, and who and where). Trace messages themselves are not traced. Off: one
//! relaxed load per publish and delivery.

use super::VHost;
use crate::message::Message;
use crate::queue::{Effects, Queue};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// Who published or received: RabbitMQ puts these in the trace headers.
pub struct TraceOrigin<'a> {
    pub connection: &'a str,
    pub channel: u16,
    pub user: &'a str,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The message's properties as a table keyed by RabbitMQ's P_basic field names.
fn properties_table(p: &BasicProperties) -> FieldTable {
    let mut t = FieldTable::default();
    let mut put = |k: &str, v: AMQPValue| {
        t.insert(k.into(), v);
    };
    if let Some(x) = p.content_type() {
        put("content_type", long(x.as_str()));
    }
    if let Some(x) = p.content_encoding() {
        put("content_encoding", long(x.as_str()));
    }
    if let Some(x) = p.headers() {
        put("headers", AMQPValue::FieldTable(x.clone()));
    }
    if let Some(x) = p.delivery_mode() {
        put("delivery_mode", AMQPValue::ShortShortUInt(*x));
    }
    if let Some(x) = p.priority() {
        put("priority", AMQPValue::ShortShortUInt(*x));
    }
    if let Some(x) = p.correlation_id() {
        put("correlation_id", long(x.as_str()));
    }
    if let Some(x) = p.reply_to() {
        put("reply_to", long(x.as_str()));
    }
    if let Some(x) = p.expiration() {
        put("expiration", long(x.as_str()));
    }
    if let Some(x) = p.message_id() {
        put("message_id", long(x.as_str()));
    }
    if let Some(x) = p.timestamp() {
        put("timestamp", AMQPValue::Timestamp(*x));
    }
    if let Some(x) = p.kind() {
        put("type", long(x.as_str()));
    }
    if let Some(x) = p.user_id() {
        put("user_id", long(x.as_str()));
    }
    if let Some(x) = p.app_id() {
        put("app_id", long(x.as_str()));
    }
    if let Some(x) = p.cluster_id() {
        put("cluster_id", long(x.as_str()));
    }
    t
}

impl VHost {
    pub fn tracing(&self) -> bool {
        self.tracing.load(Relaxed)
    }

    /// rabbitmqctl trace_on / trace_off (not kept across restarts, as in RabbitMQ).
    pub fn set_tracing(&self, on: bool) {
        self.tracing.store(on, Relaxed);
    }

    /// A publish, with the queues it reached.
    pub fn trace_publish(
        &self,
        m: &Message,
        routed: &[Arc<Queue>],
        who: &TraceOrigin<'_>,
        fx: &mut Effects,
    ) {
        let queues = routed.iter().map(|q| long(q.name())).collect::<Vec<_>>();
        let extra = [
            ("vhost", long(&self.name)),
            ("connection", long(who.connection)),
            ("channel", AMQPValue::LongInt(i32::from(who.channel))),
            ("user", long(who.user)),
            (
                "routed_queues",
                AMQPValue::FieldArray(FieldArray::from(queues)),
            ),
        ];
        self.trace(m, format!("publish.{}", m.exchange), &extra, fx);
    }

    /// A delivery (or basic.get) from `queue`.
    pub fn trace_deliver(
        &self,
        queue: &str,
        m: &Message,
        redelivered: bool,
        who: &TraceOrigin<'_>,
        fx: &mut Effects,
    ) {
        let extra = [
            ("redelivered", AMQPValue::LongInt(i32::from(redelivered))),
            ("vhost", long(&self.name)),
            ("connection", long(who.connection)),
            ("channel", AMQPValue::LongInt(i32::from(who.channel))),
            ("user", long(who.user)),
        ];
        self.trace(m, format!("deliver.{queue}"), &extra, fx);
    }

    fn trace(&self, m: &Message, key: String, extra: &[(&str, AMQPValue)], fx: &mut Effects) {
        if &*m.exchange == TRACE_EXCHANGE {
            return; // don't trace ourselves
        }
        let mut headers = FieldTable::default();
        headers.insert("exchange_name".into(), long(&m.exchange));
        headers.insert(
            "routing_keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![long(&m.routing_key)])),
        );
        headers.insert(
            "properties".into(),
            AMQPValue::FieldTable(properties_table(&m.properties())),
        );
        headers.insert("node".into(), long(crate::config::NODE_NAME));
        for (k, v) in extra {
            headers.insert((*k).into(), v.clone());
        }
        let key = crate::names::short(&key).to_string();
        let copy = Message::new(
            TRACE_EXCHANGE,
            key.as_str(),
            BasicProperties::default().with_headers(headers),
            m.body.clone(),
        );
        if let Ok(routed) = self.route(TRACE_EXCHANGE, &copy) {
            if !routed.queues.is_empty() {
                self.enqueue(copy, &routed.queues, fx);
            }
        }
    }
}
