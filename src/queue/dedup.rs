//! Queue-level deduplication, as the community plugin rabbitmq-message-deduplication offers it:
//! a classic queue declared with `x-message-deduplication: true` does not enqueue a message
//! whose `x-deduplication-header` value is already in the queue (ready or unacknowledged);
//! the value is free again once that message leaves (acked, rejected, expired, dropped,
//! purged). Kept under its own lock, taken after the queue's state lock, never before it.

use crate::message::Message;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Dedup(Mutex<HashMap<u128, u32>>);

impl Dedup {
    /// Whether the queue's arguments ask for it (classic queues only, as the plugin).
    pub fn wanted(arguments: &amq_protocol::types::FieldTable, quorum: bool) -> bool {
        !quorum
            && crate::args::get(arguments, "x-message-deduplication").is_some_and(|v| {
                matches!(v, amq_protocol::types::AMQPValue::Boolean(true))
                    || crate::args::as_str(v).is_some_and(|s| s == "true")
            })
    }

    /// Take the message in unless its value is already present.
    pub fn admit(&self, m: &Message) -> bool {
        let Some(k) = crate::message::dedup_key(m) else {
            return true;
        };
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&k) {
            return false;
        }
        seen.insert(k, 1);
        true
    }

    /// The message left the queue for good.
    pub fn release(&self, m: &Message) {
        let Some(k) = crate::message::dedup_key(m) else {
            return;
        };
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = seen.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                seen.remove(&k);
            }
        }
    }
}
