//! Queue arguments: validated once at declare time, with RabbitMQ 3.10's error texts, into the
//! typed settings the queue runs on.

use crate::args::{as_i64, as_str, get, type_name};
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue, FieldTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    /// Single-node quorum queue: durable only, delivery counting and limits.
    Quorum,
    /// An append-only log read from offsets (`queue::stream`, `store::log`).
    Stream,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueArgs {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    pub queue_type: QueueType,
    pub delivery_limit: Option<u64>,
    /// x-consumer-timeout (ms): overrides the broker's consumer_timeout for this queue.
    pub consumer_timeout: Option<u64>,
    /// Ready messages this queue keeps in memory before paging (x-max-in-memory-length, or a
    /// small window for x-queue-mode=lazy); None: the broker's `--queue-ram-messages`.
    pub ram_messages: Option<u64>,
    /// The same in body bytes (x-max-in-memory-bytes).
    pub ram_bytes: Option<u64>,
    /// Streams: whole segments older than this (ms) are dropped (x-max-age).
    pub max_age_ms: Option<u64>,
    /// Streams: a segment file's size limit (x-stream-max-segment-size-bytes).
    pub segment_bytes: Option<u64>,
}

/// The window of an `x-queue-mode: lazy` queue: messages go to disk as soon as they may.
pub const LAZY_RAM_MESSAGES: u64 = 128;

/// Declaration facts the arguments are checked against.
pub struct DeclareContext<'a> {
    pub name: &'a str,
    pub vhost: &'a str,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
}

impl QueueArgs {
    /// Parse without validation (for queues restored from the store, validated when declared).
    pub fn parse_lenient(table: &FieldTable) -> QueueArgs {
        let cx = DeclareContext {
            name: "",
            vhost: "",
            durable: true,
            exclusive: false,
            auto_delete: false,
        };
        // No capability check: a queue stored by an older version keeps its arguments.
        QueueArgs::parse_values(table, &cx).unwrap_or_default()
    }

    /// Parse without validation; `fallback` when the table does not parse.
    pub fn parse_lenient_or(table: &FieldTable, fallback: &QueueArgs) -> QueueArgs {
        let cx = DeclareContext {
            name: "",
            vhost: "",
            durable: true,
            exclusive: false,
            auto_delete: false,
        };
        QueueArgs::parse_values(table, &cx).unwrap_or_else(|_| fallback.clone())
    }

    pub fn parse(table: &FieldTable, cx: &DeclareContext<'_>) -> AmqpResult<QueueArgs> {
        check_capabilities(table, cx)?;
        QueueArgs::parse_values(table, cx)
    }

    fn parse_values(table: &FieldTable, cx: &DeclareContext<'_>) -> AmqpResult<QueueArgs> {
        let invalid = |key: &str, why: String| {
            AmqpError::precondition_failed(format!(
                "invalid arg '{key}' for queue '{}' in vhost '{}': {why}",
                cx.name, cx.vhost
            ))
        };
        let int = |key: &str, allow_zero: bool, max: Option<i64>| -> AmqpResult<Option<u64>> {
            let Some(v) = get(table, key) else {
                return Ok(None);
            };
            let Some(n) = as_i64(v) else {
                return Err(invalid(
                    key,
                    format!("\"expected integer, got {}\"", type_name(v)),
                ));
            };
            if n < 0 {
                return Err(invalid(key, format!("{{value_negative,{n}}}")));
            }
            if n == 0 && !allow_zero {
                return Err(invalid(key, format!("{{value_zero,{n}}}")));
            }
            if let Some(m) = max {
                if n > m {
                    return Err(invalid(key, format!("{{max_value_exceeded,{n}}}")));
                }
            }
            Ok(u64::try_from(n).ok())
        };
        let string = |key: &str| -> AmqpResult<Option<String>> {
            match get(table, key) {
                None => Ok(None),
                Some(v) => as_str(v).map(Some).ok_or_else(|| {
                    AmqpError::precondition_failed(format!(
                        "invalid type '{}' for arg '{key}' in queue '{}' in vhost '{}'",
                        type_name(v),
                        cx.name,
                        cx.vhost
                    ))
                }),
            }
        };
        let mut a = QueueArgs {
            expires: int("x-expires", false, None)?,
            message_ttl: int("x-message-ttl", true, None)?,
            dead_letter_exchange: string("x-dead-letter-exchange")?,
            dead_letter_routing_key: string("x-dead-letter-routing-key")?,
            max_length: int("x-max-length", true, None)?,
            max_length_bytes: int("x-max-length-bytes", true, None)?,
            max_priority: int("x-max-priority", true, Some(255))?
                .and_then(|p| u8::try_from(p).ok()),
            consumer_timeout: int("x-consumer-timeout", true, None)?,
            ..Default::default()
        };
        // Both end up in shortstr fields (a dead letter's exchange and routing key, as
        // basic.deliver carries them): refuse what cannot be represented there.
        for (key, v) in [
            ("x-dead-letter-exchange", &a.dead_letter_exchange),
            ("x-dead-letter-routing-key", &a.dead_letter_routing_key),
        ] {
            if let Some(v) = v.as_ref().filter(|v| v.len() > 255) {
                return Err(invalid(key, format!("{{value_too_long,{}}}", v.len())));
            }
        }
        if a.dead_letter_routing_key.is_some() && a.dead_letter_exchange.is_none() {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "routing_key_but_no_dlx_defined".into(),
            ));
        }
        if let Some(v) = get(table, "x-overflow") {
            a.overflow = match as_str(v).as_deref() {
                Some("drop-head") => Overflow::DropHead,
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                Some(_) => return Err(invalid("x-overflow", "invalid_overflow".into())),
                None => {
                    return Err(invalid(
                        "x-overflow",
                        format!("{{unacceptable_type,{}}}", type_name(v)),
                    ))
                }
            };
        }
        let mut lazy = false;
        if let Some(v) = get(table, "x-queue-mode") {
            match as_str(v).as_deref() {
                // A lazy queue pages with a small window (`queue::paged`).
                Some("default") => {}
                Some("lazy") => lazy = true,
                Some(other) => {
                    return Err(invalid(
                        "x-queue-mode",
                        format!("\"unsupported queue mode '{other}'\""),
                    ))
                }
                None => {
                    return Err(invalid(
                        "x-queue-mode",
                        format!("{{unacceptable_type,{}}}", type_name(v)),
                    ))
                }
            }
        }
        if let Some(v) = get(table, "x-single-active-consumer") {
            match v {
                AMQPValue::Boolean(b) => a.single_active_consumer = *b,
                other => {
                    return Err(invalid(
                        "x-single-active-consumer",
                        format!("{{unacceptable_type,{}}}", type_name(other)),
                    ))
                }
            }
        }
        if let Some(v) = get(table, "x-queue-type") {
            a.queue_type = match as_str(v).as_deref() {
                Some("classic") => QueueType::Classic,
                Some("quorum") => QueueType::Quorum,
                Some("stream") => QueueType::Stream,
                Some(other) => {
                    return Err(invalid(
                        "x-queue-type",
                        format!("\"unsupported queue type '{other}'\""),
                    ))
                }
                None => {
                    return Err(invalid(
                        "x-queue-type",
                        format!("{{unacceptable_type,{}}}", type_name(v)),
                    ))
                }
            };
        }
        // The in-memory limits set the queue's paging window (at least one message or byte:
        // the head being delivered is in memory).
        a.ram_messages = int("x-max-in-memory-length", true, None)?
            .map(|n| n.max(1))
            .or(lazy.then_some(LAZY_RAM_MESSAGES));
        a.ram_bytes = int("x-max-in-memory-bytes", true, None)?.map(|n| n.max(1));
        // Accepted for compatibility (README lists it), its value checked as RabbitMQ does.
        int("x-quorum-initial-group-size", true, None)?;
        let one_of = |key: &str, allowed: &[&str], why: &str| -> AmqpResult<()> {
            match get(table, key) {
                None => Ok(()),
                Some(v) => match as_str(v) {
                    Some(s) if allowed.contains(&s.as_str()) => Ok(()),
                    Some(_) => Err(invalid(key, why.to_string())),
                    None => Err(invalid(
                        key,
                        format!("{{unacceptable_type,{}}}", type_name(v)),
                    )),
                },
            }
        };
        one_of(
            "x-dead-letter-strategy",
            &["at-most-once", "at-least-once"],
            "invalid_dlx_strategy",
        )?;
        one_of(
            "x-queue-leader-locator",
            &["client-local", "balanced"],
            "invalid_queue_leader_locator",
        )?;
        // RabbitMQ 3.10.8 answers a bad one with 541 (a crash); a 406 is the clear answer.
        one_of(
            "x-queue-master-locator",
            &["min-masters", "client-local", "random"],
            "invalid_queue_master_locator",
        )?;
        if let Some(v) = get(table, "x-queue-version") {
            if !matches!(as_i64(v), Some(1 | 2)) {
                return Err(invalid("x-queue-version", "invalid_queue_version".into()));
            }
        }
        if let Some(v) = get(table, "x-max-age") {
            let Some(s) = as_str(v) else {
                return Err(invalid(
                    "x-max-age",
                    format!("{{unacceptable_type,{}}}", type_name(v)),
                ));
            };
            a.max_age_ms =
                Some(parse_age(&s).ok_or_else(|| invalid("x-max-age", "invalid_max_age".into()))?);
        }
        a.segment_bytes = int("x-stream-max-segment-size-bytes", true, None)?;
        if a.queue_type != QueueType::Classic {
            let property = |p: &str| {
                AmqpError::precondition_failed(format!(
                    "invalid property '{p}' for queue '{}' in vhost '{}'",
                    cx.name, cx.vhost
                ))
            };
            if !cx.durable {
                return Err(property("non-durable"));
            }
            if cx.exclusive {
                return Err(property("exclusive-owner"));
            }
            if cx.auto_delete {
                return Err(property("auto-delete"));
            }
            if a.max_priority.is_some() && a.queue_type == QueueType::Quorum {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid arg 'x-max-priority' for queue '{}' in vhost '{}' of queue type rabbit_quorum_queue",
                    cx.name, cx.vhost
                )));
            }
        }
        if a.queue_type == QueueType::Quorum {
            // RabbitMQ 3.10 ignores a delivery limit that is not an integer.
            a.delivery_limit = get(table, "x-delivery-limit")
                .and_then(as_i64)
                .and_then(|n| u64::try_from(n).ok());
        }
        Ok(a)
    }
}

/// `x-max-age` and stream offset intervals: a positive number and one of RabbitMQ's units
/// (rabbit_amqqueue:check_max_age), in ms.
pub fn parse_age(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok().filter(|&n| n > 0)?;
    let unit: u64 = match &s[digits..] {
        "Y" => 365 * 86_400_000,
        "M" => 30 * 86_400_000,
        "D" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The x-arguments RabbitMQ 3.10 knows, and which queue types take each
/// (rabbit_classic_queue / rabbit_quorum_queue / rabbit_stream_queue capabilities).
const KNOWN_ARGS: &[(&str, [bool; 3])] = &[
    // (name, [classic, quorum, stream])
    ("x-expires", [true, true, false]),
    ("x-message-ttl", [true, true, false]),
    ("x-dead-letter-exchange", [true, true, false]),
    ("x-dead-letter-routing-key", [true, true, false]),
    ("x-max-length", [true, true, false]),
    ("x-max-length-bytes", [true, true, true]),
    ("x-max-priority", [true, false, false]),
    ("x-overflow", [true, true, false]),
    ("x-queue-mode", [true, false, false]),
    ("x-queue-version", [true, false, false]),
    ("x-queue-master-locator", [true, false, false]),
    ("x-single-active-consumer", [true, true, false]),
    ("x-queue-type", [true, true, true]),
    ("x-max-in-memory-length", [false, true, false]),
    ("x-max-in-memory-bytes", [false, true, false]),
    ("x-dead-letter-strategy", [false, true, false]),
    ("x-quorum-initial-group-size", [false, true, false]),
    ("x-delivery-limit", [false, true, false]),
    ("x-queue-leader-locator", [false, true, true]),
    ("x-max-age", [false, false, true]),
    ("x-stream-max-segment-size-bytes", [false, false, true]),
    ("x-initial-cluster-size", [false, false, true]),
];

/// A known argument the queue's type does not take is refused, as RabbitMQ does before it looks
/// at values; unknown arguments are kept and ignored (applications carry their own).
fn check_capabilities(table: &FieldTable, cx: &DeclareContext<'_>) -> AmqpResult<()> {
    let (column, ty) = match get(table, "x-queue-type").and_then(as_str).as_deref() {
        None | Some("classic") => (0, "rabbit_classic_queue"),
        Some("quorum") => (1, "rabbit_quorum_queue"),
        Some("stream") => (2, "rabbit_stream_queue"),
        // Unknown types are answered by the x-queue-type check.
        Some(_) => return Ok(()),
    };
    for key in table.inner().keys() {
        let Some(&(name, takes)) = KNOWN_ARGS.iter().find(|(n, ..)| *n == key.as_str()) else {
            continue;
        };
        if !takes[column] {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg '{name}' for queue '{}' in vhost '{}' of queue type {ty}",
                cx.name, cx.vhost
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut f = FieldTable::default();
        for (k, v) in pairs {
            f.insert((*k).into(), v.clone());
        }
        f
    }

    fn cx() -> DeclareContext<'static> {
        DeclareContext {
            name: "q",
            vhost: "/",
            durable: false,
            exclusive: false,
            auto_delete: false,
        }
    }

    #[test]
    fn rabbitmq_texts() {
        let err = |pairs: &[(&str, AMQPValue)]| {
            QueueArgs::parse(&t(pairs), &cx()).unwrap_err().reply_text()
        };
        assert_eq!(
            err(&[("x-message-ttl", AMQPValue::LongString("abc".into()))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert!(err(&[("x-expires", AMQPValue::LongInt(0))]).ends_with("{value_zero,0}"));
        assert!(err(&[("x-max-priority", AMQPValue::LongInt(300))])
            .ends_with("{max_value_exceeded,300}"));
        assert!(
            err(&[("x-overflow", AMQPValue::LongString("x".into()))]).ends_with("invalid_overflow")
        );
        assert!(
            err(&[("x-queue-type", AMQPValue::LongString("quorum".into()))])
                .contains("invalid property 'non-durable'")
        );
        let ok = QueueArgs::parse(
            &t(&[
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-message-ttl", AMQPValue::LongLongInt(0)),
            ]),
            &cx(),
        )
        .expect("ok");
        assert_eq!((ok.max_priority, ok.message_ttl), (Some(10), Some(0)));
    }
}
