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
}

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
        QueueArgs::parse(table, &cx).unwrap_or_default()
    }

    pub fn parse(table: &FieldTable, cx: &DeclareContext<'_>) -> AmqpResult<QueueArgs> {
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
        if let Some(v) = get(table, "x-queue-mode") {
            match as_str(v).as_deref() {
                // Every Warren queue keeps messages in memory; lazy is accepted (RabbitMQ 3.12+
                // ignores it too) because it changes no observable behaviour.
                Some("default") | Some("lazy") => {}
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
                Some("stream") => {
                    return Err(invalid(
                        "x-queue-type",
                        "\"stream queues are not supported by Warren yet\"".into(),
                    ))
                }
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
        if a.queue_type == QueueType::Quorum {
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
            if a.max_priority.is_some() {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid arg 'x-max-priority' for queue '{}' in vhost '{}' of queue type rabbit_quorum_queue",
                    cx.name, cx.vhost
                )));
            }
            // RabbitMQ 3.10 ignores a delivery limit that is not an integer.
            a.delivery_limit = get(table, "x-delivery-limit")
                .and_then(as_i64)
                .and_then(|n| u64::try_from(n).ok());
        }
        Ok(a)
    }
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
        let err =
            |pairs: &[(&str, AMQPValue)]| QueueArgs::parse(&t(pairs), &cx()).unwrap_err().text;
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
