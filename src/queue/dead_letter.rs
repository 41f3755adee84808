//! Dead-lettering: the `x-death` bookkeeping RabbitMQ 3.10 does (rabbit_dead_letter), and its
//! cycle rule.

use crate::message::Message;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message on its way from a queue to its dead-letter exchange.
#[derive(Debug)]
pub struct DeadLetter {
    pub exchange: String,
    pub routing_key: String,
    /// Without x-dead-letter-routing-key, the message's CC keys route too (all its original
    /// keys, as in RabbitMQ).
    pub extra_keys: Vec<String>,
    pub reason: Reason,
    /// The new message: same body and properties, x-death updated, expiration removed.
    pub message: Message,
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn entry_str(t: &FieldTable, k: &str) -> Option<String> {
    crate::args::get(t, k).and_then(crate::args::as_str)
}

fn deaths(headers: Option<&FieldTable>) -> Vec<FieldTable> {
    match headers.and_then(|h| crate::args::get(h, "x-death")) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(|v| match v {
                AMQPValue::FieldTable(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Build the dead-lettered copy of `m` leaving `queue` for `reason`.
pub fn dead_letter(
    m: &Arc<Message>,
    queue: &str,
    reason: Reason,
    dlx: &str,
    dlrk: Option<&str>,
    now_secs: u64,
) -> DeadLetter {
    let mut props = m.properties();
    let mut headers = props.headers().clone().unwrap_or_default();
    let cc = crate::message::listed_keys(&headers, "CC");
    let mut list = deaths(Some(&headers));
    let pos = list.iter().position(|t| {
        entry_str(t, "queue").as_deref() == Some(queue)
            && entry_str(t, "reason").as_deref() == Some(reason.as_str())
    });
    let entry = match pos {
        Some(i) => {
            // Same queue and reason again: count it, keep the first death's details, move it
            // to the front.
            let mut t = list.remove(i);
            let count = match crate::args::get(&t, "count") {
                Some(v) => crate::args::as_i64(v).unwrap_or(0),
                None => 0,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            t
        }
        None => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), lstr(reason.as_str()));
            t.insert("queue".into(), lstr(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now_secs));
            t.insert("exchange".into(), lstr(&m.exchange));
            let keys: Vec<AMQPValue> = std::iter::once(&*m.routing_key)
                .chain(cc.iter().map(String::as_str))
                .map(lstr)
                .collect();
            t.insert(
                "routing-keys".into(),
                AMQPValue::FieldArray(FieldArray::from(keys)),
            );
            if let Some(exp) = props.expiration() {
                t.insert("original-expiration".into(), lstr(exp.as_str()));
            }
            t
        }
    };
    list.insert(0, entry);
    if !headers.contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), lstr(reason.as_str()));
        headers.insert("x-first-death-queue".into(), lstr(queue));
        headers.insert("x-first-death-exchange".into(), lstr(&m.exchange));
    }
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(
            list.into_iter()
                .map(AMQPValue::FieldTable)
                .collect::<Vec<_>>(),
        )),
    );
    props = without_expiration(props).with_headers(headers);
    let routing_key = dlrk.unwrap_or(&m.routing_key).to_string();
    DeadLetter {
        exchange: dlx.to_string(),
        routing_key: routing_key.clone(),
        extra_keys: if dlrk.is_some() { Vec::new() } else { cc },
        reason,
        message: Message::new(dlx.to_string(), routing_key, props, m.body.clone()),
    }
}

/// AMQPProperties has no way to clear a field: rebuild without `expiration`.
fn without_expiration(
    p: amq_protocol::protocol::BasicProperties,
) -> amq_protocol::protocol::BasicProperties {
    let mut q = amq_protocol::protocol::BasicProperties::default();
    macro_rules! copy {
        ($get:ident, $set:ident) => {
            if let Some(v) = p.$get().clone() {
                q = q.$set(v);
            }
        };
    }
    copy!(content_type, with_content_type);
    copy!(content_encoding, with_content_encoding);
    copy!(headers, with_headers);
    copy!(delivery_mode, with_delivery_mode);
    copy!(priority, with_priority);
    copy!(correlation_id, with_correlation_id);
    copy!(reply_to, with_reply_to);
    copy!(message_id, with_message_id);
    copy!(timestamp, with_timestamp);
    copy!(kind, with_type);
    copy!(user_id, with_user_id);
    copy!(app_id, with_app_id);
    copy!(cluster_id, with_cluster_id);
    q
}

/// rabbit_dead_letter's cycle rule: dead-lettering (other than by rejection) back into a queue
/// already in the message's x-death is a cycle unless a rejection happened on the way.
pub fn is_cycle(message: &Message, reason: Reason, target_queue: &str) -> bool {
    if reason == Reason::Rejected {
        return false;
    }
    let list = deaths(message.headers().as_ref());
    // The new death is already at the front of the list; the cycle runs from there to the
    // earlier death in `target_queue`.
    let Some(pos) = list
        .iter()
        .position(|t| entry_str(t, "queue").as_deref() == Some(target_queue))
    else {
        return false;
    };
    list[..=pos]
        .iter()
        .all(|t| entry_str(t, "reason").as_deref() != Some("rejected"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;

    fn msg(props: BasicProperties) -> Arc<Message> {
        Arc::new(Message::new(
            "ex",
            "rk",
            props,
            bytes::Bytes::from_static(b"b"),
        ))
    }

    #[test]
    fn x_death_counts_and_first_death_headers() {
        let m = msg(BasicProperties::default().with_expiration("100".into()));
        let d1 = dead_letter(&m, "q1", Reason::Expired, "dlx", None, 10);
        assert!(d1.message.properties().expiration().is_none());
        let h = d1.message.properties().headers().clone().expect("headers");
        assert_eq!(
            crate::args::get(&h, "x-first-death-reason"),
            Some(&lstr("expired"))
        );
        let list = deaths(Some(&h));
        assert_eq!(list.len(), 1);
        assert_eq!(
            crate::args::get(&list[0], "original-expiration"),
            Some(&lstr("100"))
        );
        assert_eq!(d1.routing_key, "rk");
        let m2 = Arc::new(d1.message);
        let d2 = dead_letter(&m2, "q2", Reason::Rejected, "dlx2", Some("k2"), 11);
        let m3 = Arc::new(d2.message);
        let d3 = dead_letter(&m3, "q1", Reason::Expired, "dlx", None, 12);
        let list = deaths(d3.message.headers().as_ref());
        assert_eq!(list.len(), 2);
        assert_eq!(entry_str(&list[0], "queue").as_deref(), Some("q1"));
        assert_eq!(
            crate::args::get(&list[0], "count"),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(d2.routing_key, "k2");
        // q1 → (rejected in q2) → q1: not a cycle; expiry-only loops are.
        // Back into q1 by expiry right after dying there is a cycle; a loop through q2, where
        // it was rejected, is not.
        assert!(is_cycle(&d3.message, Reason::Expired, "q1"));
        assert!(!is_cycle(&d3.message, Reason::Expired, "q2"));
        let e1 = Arc::new(
            dead_letter(
                &msg(BasicProperties::default()),
                "a",
                Reason::Expired,
                "x",
                None,
                1,
            )
            .message,
        );
        assert!(is_cycle(&e1, Reason::Expired, "a"));
        assert!(!is_cycle(&e1, Reason::Rejected, "a"));
        assert!(!is_cycle(&e1, Reason::Expired, "b"));
    }
}
