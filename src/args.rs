//! Field-table helpers: RabbitMQ's type names, value rendering and equivalence checks, as used
//! in `inequivalent arg` and `invalid arg` errors.

use crate::error::AmqpError;
use amq_protocol::types::{AMQPValue, FieldTable};

/// RabbitMQ's name for a field type (rabbit_binary_parser / rabbit_misc).
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

pub fn render(v: &AMQPValue) -> String {
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        other => match as_i64(other) {
            Some(i) => i.to_string(),
            None => format!("{other:?}"),
        },
    }
}

/// An integer argument of any AMQP integer type.
pub fn as_i64(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => (*x).into(),
        AMQPValue::ShortShortUInt(x) => (*x).into(),
        AMQPValue::ShortInt(x) => (*x).into(),
        AMQPValue::ShortUInt(x) => (*x).into(),
        AMQPValue::LongInt(x) => (*x).into(),
        AMQPValue::LongUInt(x) => (*x).into(),
        AMQPValue::LongLongInt(x) => *x,
        AMQPValue::Timestamp(x) => i64::try_from(*x).ok()?,
        _ => return None,
    })
}

/// The bytes of a string value, without copying.
pub fn str_bytes(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

pub fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub fn get<'a>(table: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    table.inner().get(key)
}

/// Equal in RabbitMQ's sense: integers compare by value across widths, strings by bytes.
/// Allocation-free: the headers exchange calls it per binding per message.
pub fn equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i64(a), as_i64(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (str_bytes(a), str_bytes(b)) {
        return x == y;
    }
    a == b
}

fn describe(v: Option<&AMQPValue>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => format!("the value '{}' of type '{}'", render(v), type_name(v)),
    }
}

/// rabbit_misc:assert_args_equivalence over `keys`.
pub fn assert_equivalent(
    received: &FieldTable,
    current: &FieldTable,
    keys: &[&str],
    what: &str,
    name: &str,
    vhost: &str,
) -> Result<(), AmqpError> {
    for key in keys {
        let (r, c) = (get(received, key), get(current, key));
        let same = match (r, c) {
            (None, None) => true,
            (Some(a), Some(b)) => equivalent(a, b),
            _ => false,
        };
        if !same {
            // RabbitMQ 3.10 quotes bare values when both sides have one, and spells out
            // value and type when one side is missing.
            let (received, current) = match (r, c) {
                (Some(a), Some(b)) => (format!("'{}'", render(a)), format!("'{}'", render(b))),
                _ => (describe(r), describe(c)),
            };
            return Err(AmqpError::precondition_failed(format!(
                "inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': received {received} but current is {current}"
            )));
        }
    }
    Ok(())
}

/// A plain property (durable, type …) that differs from the existing entity.
pub fn inequivalent(
    key: &str,
    what: &str,
    name: &str,
    vhost: &str,
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': received '{received}' but current is '{current}'"
    ))
}
