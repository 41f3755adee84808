//! `Message`: one published message, shared (`Arc`) by every queue it was routed to.

use amq_protocol::protocol::basic::AMQPProperties;
use bytes::Bytes;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct Message {
    /// Exchange the message was published to ("" for the default exchange).
    pub exchange: String,
    pub routing_key: String,
    pub properties: AMQPProperties,
    /// Frozen once by the assembler; every queue and delivery shares the same bytes.
    pub body: Bytes,
    /// Id of the stored record, 0 when the message is not on disk (transient, or routed to no
    /// durable queue).
    pub store_id: u64,
    /// Durable queues still holding the stored record; the last to let go deletes it.
    pub store_refs: AtomicU32,
    /// The per-message TTL from the `expiration` property, in ms (validated on publish).
    pub expiration_ms: Option<u64>,
}

impl Message {
    pub fn new(
        exchange: String,
        routing_key: String,
        properties: AMQPProperties,
        body: Bytes,
    ) -> Self {
        let expiration_ms = properties
            .expiration()
            .as_ref()
            .and_then(|e| parse_expiration(e.as_str()).ok());
        Message {
            exchange,
            routing_key,
            properties,
            body,
            store_id: 0,
            store_refs: AtomicU32::new(0),
            expiration_ms,
        }
    }

    /// delivery_mode 2.
    pub fn persistent(&self) -> bool {
        self.properties.delivery_mode() == &Some(2)
    }

    /// Drop one durable queue's hold on the record; true when that was the last one.
    pub fn release_store_ref(&self) -> bool {
        self.store_id != 0 && self.store_refs.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// A copy sharing the body, for paths that need their own `Arc` (direct reply-to).
    pub fn shallow_clone(&self) -> Message {
        Message::new(
            self.exchange.clone(),
            self.routing_key.clone(),
            self.properties.clone(),
            self.body.clone(),
        )
    }
}

/// The `expiration` property: a non-negative integer of milliseconds, as a string. The error is
/// RabbitMQ's explanation (`no_integer`, `{value_negative,N}`).
pub fn parse_expiration(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("{{value_negative,{n}}}")),
        Ok(n) => u64::try_from(n).map_err(|_| "no_integer".to_string()),
        Err(_) => Err("no_integer".to_string()),
    }
}
