//! `Message`: one published message, shared (`Arc`) by every queue it was routed to.
//!
//! Properties are kept in their AMQP encoding, exactly as they arrived (re-sent verbatim on
//! delivery, stored verbatim), with the few fields queues look at per message cached beside
//! them; anything else is parsed on demand. The parsed form (amq-protocol's AMQPProperties,
//! ~300 bytes plus its strings) would dominate the memory of a queued small message.

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

/// The encoding of empty properties (no flags set), shared instead of allocated.
const EMPTY_PROPERTIES: &[u8] = &[0, 0];

#[derive(Debug)]
pub struct Message {
    /// Exchange the message was published to ("" for the default exchange). Shared: a
    /// channel publishing to the same exchange and key reuses one allocation for all of them.
    pub exchange: Arc<str>,
    pub routing_key: Arc<str>,
    /// Properties in their AMQP encoding (flags + list).
    raw_properties: Bytes,
    delivery_mode: u8,
    priority: u8,
    /// Frozen once by the assembler; every queue and delivery shares the same bytes.
    pub body: Bytes,
    /// Id of the stored record, 0 when the message is not on disk (transient, or routed to no
    /// durable queue).
    pub store_id: u64,
    /// Durable queues still holding the stored record; the last to let go deletes it.
    pub store_refs: AtomicU32,
    /// Where the committer is with the record (`store::committer::{PENDING, WRITTEN,
    /// CANCELLED}`); only the committer thread changes it once the message is published.
    pub store_state: AtomicU8,
    /// The per-message TTL from the `expiration` property, in ms (validated on publish).
    pub expiration_ms: Option<u64>,
}

fn encode(p: &AMQPProperties) -> Bytes {
    match gen_properties(p)(WriteContext::from(Vec::new())) {
        Ok(ctx) => share(&ctx.into_inner().0),
        // Generation into a Vec cannot fail for well-formed values; fall back to none.
        Err(_) => Bytes::from_static(EMPTY_PROPERTIES),
    }
}

fn share(raw: &[u8]) -> Bytes {
    if raw == EMPTY_PROPERTIES {
        Bytes::from_static(EMPTY_PROPERTIES)
    } else {
        Bytes::copy_from_slice(raw)
    }
}

impl Message {
    /// A message from parsed properties (encoded here).
    pub fn new(
        exchange: impl Into<Arc<str>>,
        routing_key: impl Into<Arc<str>>,
        properties: AMQPProperties,
        body: Bytes,
    ) -> Self {
        let raw = encode(&properties);
        Message::build(exchange, routing_key, &properties, raw, body)
    }

    /// A message whose properties arrived encoded as `raw` (and parsed into `properties`).
    /// The bytes are copied: a slice of the connection's read buffer would pin all of it.
    pub fn with_raw(
        exchange: impl Into<Arc<str>>,
        routing_key: impl Into<Arc<str>>,
        properties: &AMQPProperties,
        raw: &[u8],
        body: Bytes,
    ) -> Self {
        Message::build(exchange, routing_key, properties, share(raw), body)
    }

    fn build(
        exchange: impl Into<Arc<str>>,
        routing_key: impl Into<Arc<str>>,
        properties: &AMQPProperties,
        raw: Bytes,
        body: Bytes,
    ) -> Self {
        let expiration_ms = properties
            .expiration()
            .as_ref()
            .and_then(|e| parse_expiration(e.as_str()).ok());
        Message {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            raw_properties: raw,
            delivery_mode: properties.delivery_mode().unwrap_or(0),
            priority: properties.priority().unwrap_or(0),
            body,
            store_id: 0,
            store_refs: AtomicU32::new(0),
            store_state: AtomicU8::new(0),
            expiration_ms,
        }
    }

    /// A message from encoded properties only (a stored record); None if they do not parse.
    pub fn from_raw(
        exchange: impl Into<Arc<str>>,
        routing_key: impl Into<Arc<str>>,
        raw: &[u8],
        body: Bytes,
    ) -> Option<Self> {
        let properties = match parse_properties(raw) {
            Ok((&[], p)) => p,
            _ => return None,
        };
        Some(Message::with_raw(
            exchange,
            routing_key,
            &properties,
            raw,
            body,
        ))
    }

    pub fn raw_properties(&self) -> &[u8] {
        &self.raw_properties
    }

    /// The properties, parsed (allocates: for the paths that need more than the cached fields).
    pub fn properties(&self) -> AMQPProperties {
        match parse_properties(&self.raw_properties[..]) {
            Ok((_, p)) => p,
            Err(_) => AMQPProperties::default(),
        }
    }

    pub fn headers(&self) -> Option<FieldTable> {
        // Bit 13 of the property flags (the third-highest of the first byte) marks headers.
        if self.raw_properties.first().is_some_and(|f| f & 0x20 == 0) {
            return None;
        }
        self.properties().headers().clone()
    }

    /// delivery_mode 2.
    pub fn persistent(&self) -> bool {
        self.delivery_mode == 2
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Drop one durable queue's hold on the record; true when that was the last one.
    pub fn release_store_ref(&self) -> bool {
        self.store_id != 0 && self.store_refs.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// A copy sharing body and properties, not stored (for paths that need their own `Arc`:
    /// direct reply-to, delayed messages coming due).
    pub fn shallow_clone(&self) -> Message {
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            raw_properties: self.raw_properties.clone(),
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            body: self.body.clone(),
            store_id: 0,
            store_refs: AtomicU32::new(0),
            store_state: AtomicU8::new(0),
            expiration_ms: self.expiration_ms,
        }
    }
}

/// Sender-selected distribution: the routing keys listed in a `CC` or `BCC` header (an array
/// of strings), which RabbitMQ routes with in addition to the routing key.
pub fn listed_keys(headers: &FieldTable, name: &str) -> Vec<String> {
    match headers.inner().get(name) {
        Some(amq_protocol::types::AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(crate::args::as_str)
            .collect(),
        Some(v) => crate::args::as_str(v).into_iter().collect(),
        None => Vec::new(),
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

/// The digest of a message's `x-deduplication-header` (deduplicating exchanges and queues
/// remember values as 128-bit digests, so a long header costs no more than a short one).
pub fn dedup_key(m: &Message) -> Option<u128> {
    let headers = m.headers()?;
    let value = headers.inner().get("x-deduplication-header")?;
    Some(digest128(&crate::args::render(value)))
}

fn digest128(value: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        value.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    #[test]
    fn raw_properties_round_trip_and_cache() {
        let mut h = FieldTable::default();
        h.insert("k".into(), AMQPValue::LongString("v".into()));
        let p = AMQPProperties::default()
            .with_delivery_mode(2)
            .with_priority(7)
            .with_expiration("100".into())
            .with_headers(h.clone());
        let m = Message::new("x", "rk", p.clone(), Bytes::new());
        assert_eq!(m.properties(), p);
        assert!(m.persistent());
        assert_eq!((m.priority(), m.expiration_ms), (7, Some(100)));
        assert_eq!(m.headers(), Some(h));
        let plain = Message::new("x", "rk", AMQPProperties::default(), Bytes::new());
        assert_eq!(plain.raw_properties(), EMPTY_PROPERTIES);
        assert_eq!(plain.headers(), None);
        let again = Message::from_raw("x", "rk", m.raw_properties(), Bytes::new()).expect("parses");
        assert_eq!(again.properties(), p);
    }
}
