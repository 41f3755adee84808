//! The consistent-hash exchange, with the interface of RabbitMQ's
//! rabbitmq_consistent_hash_exchange plugin: type `x-consistent-hash`, binding keys are weights
//! (positive integers), and each message goes to exactly one destination, chosen by a jump
//! consistent hash (Lamping & Veach) of its routing key over buckets that each binding owns
//! weight-many of. The `hash-header` or `hash-property` (message_id, correlation_id,
//! timestamp) argument hashes that value instead. The same key always reaches the same
//! destination while the bindings stay; adding one moves only the keys it takes over.

use super::Binding;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use amq_protocol::types::{AMQPValue, FieldTable};

/// What a message is hashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    RoutingKey,
    Header(String),
    MessageId,
    CorrelationId,
    Timestamp,
}

/// The exchange's arguments, checked at declare with the plugin's texts.
pub fn hash_on(arguments: &FieldTable) -> AmqpResult<HashOn> {
    let header = arguments.inner().get("hash-header");
    let property = arguments.inner().get("hash-property");
    let text = |v: &AMQPValue, what: &str| -> AmqpResult<String> {
        crate::args::as_str(v)
            .ok_or_else(|| AmqpError::precondition_failed(format!("{what} must be a string")))
    };
    match (header, property) {
        (Some(_), Some(_)) => Err(AmqpError::precondition_failed(
            "hash-header and hash-property are mutually exclusive",
        )),
        (Some(h), None) => Ok(HashOn::Header(text(h, "hash-header")?)),
        (None, Some(p)) => match text(p, "hash-property")?.as_str() {
            "message_id" => Ok(HashOn::MessageId),
            "correlation_id" => Ok(HashOn::CorrelationId),
            "timestamp" => Ok(HashOn::Timestamp),
            other => Err(AmqpError::precondition_failed(format!(
                "Unsupported property: {other}"
            ))),
        },
        (None, None) => Ok(HashOn::RoutingKey),
    }
}

/// A binding key as a weight, checked at bind with the plugin's texts.
pub fn weight(key: &str) -> AmqpResult<u32> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmqpError::precondition_failed(format!(
            "The binding key must be an integer: <<\"{key}\">>"
        )));
    }
    match key.parse::<i64>() {
        Ok(w) if w > 0 => u32::try_from(w).map_err(|_| {
            AmqpError::precondition_failed(format!("The binding key is too large: {key}"))
        }),
        Ok(_) => Err(AmqpError::precondition_failed(
            "The binding key must be greater than 0",
        )),
        Err(_) => Err(AmqpError::precondition_failed(format!(
            "The binding key is too large: {key}"
        ))),
    }
}

/// The bytes a message is hashed on (a missing header or property hashes as empty, so such
/// messages still go somewhere, always to the same place, as with the plugin).
fn input(on: &HashOn, routing_key: &str, message: &Message) -> Vec<u8> {
    let props = || message.properties();
    match on {
        HashOn::RoutingKey => routing_key.as_bytes().to_vec(),
        HashOn::Header(h) => message
            .headers()
            .and_then(|t| t.inner().get(h.as_str()).map(crate::args::render))
            .unwrap_or_default()
            .into_bytes(),
        HashOn::MessageId => props()
            .message_id()
            .as_ref()
            .map(|s| s.as_str().as_bytes().to_vec())
            .unwrap_or_default(),
        HashOn::CorrelationId => props()
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str().as_bytes().to_vec())
            .unwrap_or_default(),
        HashOn::Timestamp => props()
            .timestamp()
            .map(|t| t.to_be_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// FNV-1a, finished with splitmix64's mixer so that jump hashing sees well-spread keys.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Lamping & Veach's jump consistent hash: a bucket in 0..buckets.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    u32::try_from(b).unwrap_or(0)
}

/// The binding a message goes to: buckets are laid out binding by binding, weight-many each.
pub fn pick<'a>(
    on: &HashOn,
    bindings: &'a [Binding],
    routing_key: &str,
    message: &Message,
) -> Option<&'a Binding> {
    let weights = || bindings.iter().map(|b| weight(&b.routing_key).unwrap_or(0));
    let total: u32 = weights().fold(0u32, u32::saturating_add);
    if total == 0 {
        return None;
    }
    let mut bucket = jump(hash(&input(on, routing_key, message)), total);
    for (b, w) in bindings.iter().zip(weights()) {
        if bucket < w {
            return Some(b);
        }
        bucket -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_as_the_plugin_checks_them() {
        assert_eq!(weight("3").expect("ok"), 3);
        for bad in ["abc", "", "1.5", "-"] {
            let e = weight(bad).unwrap_err();
            assert!(e.explanation.contains("must be an integer"), "{bad}");
        }
        for bad in ["0", "-1"] {
            let e = weight(bad).unwrap_err();
            assert!(e.explanation.contains("greater than 0"), "{bad}");
        }
    }

    #[test]
    fn jump_is_stable_and_spreads() {
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            let b = jump(hash(&i.to_be_bytes()), 4);
            counts[b as usize] += 1;
            assert_eq!(b, jump(hash(&i.to_be_bytes()), 4));
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        // Growing from 4 to 5 buckets moves only keys into the new bucket.
        for i in 0..10_000u32 {
            let (a, b) = (
                jump(hash(&i.to_be_bytes()), 4),
                jump(hash(&i.to_be_bytes()), 5),
            );
            assert!(a == b || b == 4);
        }
    }
}
