//! Exchange-level message deduplication, with the interface of the community plugin
//! rabbitmq-message-deduplication: an exchange of type `x-message-deduplication` routes as a
//! fanout, but a message whose `x-deduplication-header` value it has seen within the cache's
//! TTL goes nowhere (as an unroutable message: mandatory returns it, an alternate exchange
//! takes it). `x-cache-size` (required) bounds the remembered values, the oldest going first;
//! `x-cache-ttl` (ms, exchange argument or per-message header) bounds how long one is
//! remembered. The cache lives in memory; TTLs read the broker's clock (so a test clock moves
//! them).

use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use amq_protocol::types::{AMQPValue, FieldTable};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub const TYPE: &str = "x-message-deduplication";

/// The most values one exchange remembers, whatever `x-cache-size` asks (about 60 MB).
pub const MAX_CACHE: usize = 1_000_000;

/// The exchange's settings, from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub size: usize,
    pub ttl_ms: Option<u64>,
}

fn positive(v: &AMQPValue) -> Option<u64> {
    // The plugin's documentation declares the size as a string ("5"); numbers work too.
    crate::args::as_i64(v)
        .or_else(|| crate::args::as_str(v).and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// Check the arguments at declare.
pub fn settings(arguments: &FieldTable) -> AmqpResult<Settings> {
    let get = |k: &str| arguments.inner().get(k);
    let size = get("x-cache-size").and_then(positive).ok_or_else(|| {
        AmqpError::precondition_failed(
            "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0",
        )
    })?;
    let ttl_ms = match get("x-cache-ttl") {
        None => None,
        Some(v) => Some(positive(v).ok_or_else(|| {
            AmqpError::precondition_failed(
                "Invalid argument, 'x-cache-ttl' must be an integer greater than 0",
            )
        })?),
    };
    if let Some(p) = get("x-cache-persistence").map(crate::args::render) {
        if p != "memory" && p != "disk" {
            return Err(AmqpError::precondition_failed(
                "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'",
            ));
        }
    }
    Ok(Settings {
        // Bounded whatever a peer asks for: an entry is a digest and a deadline, about 60 bytes.
        size: usize::try_from(size).unwrap_or(usize::MAX).min(MAX_CACHE),
        ttl_ms,
    })
}

/// Values seen, with their deadlines, oldest first for eviction.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

/// Values are kept as 128-bit digests: an entry costs the same whatever the header's size
/// (a peer's values may be long; `x-cache-size` alone then bounds the memory).
#[derive(Debug, Default)]
struct Inner {
    until: HashMap<u128, Option<u64>>,
    order: VecDeque<u128>,
}

impl Cache {
    /// Whether `message` repeats a value seen within its TTL; remembers it if not.
    pub fn is_duplicate(&self, settings: Settings, message: &Message, now: u64) -> bool {
        let Some(key) = crate::message::dedup_key(message) else {
            return false;
        };
        let ttl = message
            .headers()
            .and_then(|h| h.inner().get("x-cache-ttl").and_then(positive))
            .or(settings.ttl_ms);
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = c.until.get(&key) {
            if until.is_none_or(|t| now < t) {
                return true;
            }
        }
        if !c.until.contains_key(&key) {
            while c.order.len() >= settings.size.max(1) {
                match c.order.pop_front() {
                    Some(old) => {
                        c.until.remove(&old);
                    }
                    None => break,
                }
            }
            c.order.push_back(key);
        }
        c.until.insert(key, ttl.map(|t| now.saturating_add(t)));
        false
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
