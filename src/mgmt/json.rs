//! AMQP field tables to and from JSON, the way RabbitMQ's management API shows and accepts
//! arguments, headers and client properties.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

pub fn from_table(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.to_string(), from_value(v)))
            .collect(),
    )
}

pub fn from_value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let v = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(from_value).collect()),
        AMQPValue::FieldTable(t) => from_table(t),
        AMQPValue::Void => Value::Null,
    }
}

/// JSON object → field table. Numbers become longs (or doubles), as in RabbitMQ's management.
pub fn to_table(v: &Value) -> Result<FieldTable, String> {
    match v {
        Value::Null => Ok(FieldTable::default()),
        Value::Object(m) => table_of(m, 1),
        _ => Err("arguments must be a JSON object".into()),
    }
}

/// The same limits as tables that arrive over AMQP: shortstr keys, bounded nesting.
fn table_of(m: &Map<String, Value>, depth: usize) -> Result<FieldTable, String> {
    let mut t = FieldTable::default();
    for (k, v) in m {
        let key = ShortString::try_new(k.as_str()).map_err(|_| {
            format!(
                "field name longer than 255 bytes: {}",
                &k[..crate::names::fit(k, 40)]
            )
        })?;
        t.insert(key, to_value(v, depth)?);
    }
    Ok(t)
}

fn to_value(v: &Value, depth: usize) -> Result<AMQPValue, String> {
    if matches!(v, Value::Array(_) | Value::Object(_)) && depth >= crate::codec::nesting::MAX_DEPTH
    {
        return Err(format!(
            "field table nested deeper than {} levels",
            crate::codec::nesting::MAX_DEPTH
        ));
    }
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(a) => {
            let mut arr = FieldArray::default();
            for x in a {
                arr.push(to_value(x, depth + 1)?);
            }
            AMQPValue::FieldArray(arr)
        }
        Value::Object(m) => AMQPValue::FieldTable(table_of(m, depth + 1)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = serde_json::json!({"x-max-length": 10, "x-dead-letter-exchange": "dlx",
            "ratio": 0.5, "flag": true, "list": [1, "a"], "nested": {"k": "v"}});
        let t = to_table(&v).expect("table");
        assert_eq!(
            t.inner().get("x-max-length"),
            Some(&AMQPValue::LongLongInt(10))
        );
        assert_eq!(from_table(&t), v);
        assert!(to_table(&serde_json::json!([1])).is_err());
    }
}
