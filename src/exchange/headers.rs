//! Headers-exchange matching, after rabbit_exchange_type_headers.
//!
//! `x-match` = all (default) | any, and Warren's all-with-x / any-with-x (RabbitMQ 3.11+), which
//! also compare `x-` keys. A binding argument of type void matches on the key's presence alone.

use amq_protocol::types::{AMQPValue, FieldTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl MatchKind {
    /// The binding's x-match, or None when it names something else (RabbitMQ refuses those
    /// binds with 406).
    pub fn from_args(args: &FieldTable) -> Option<MatchKind> {
        match args.inner().get("x-match") {
            None => Some(MatchKind::All),
            Some(v) => match str_value(v)? {
                "all" => Some(MatchKind::All),
                "any" => Some(MatchKind::Any),
                "all-with-x" => Some(MatchKind::AllWithX),
                "any-with-x" => Some(MatchKind::AnyWithX),
                _ => None,
            },
        }
    }
}

fn str_value(v: &AMQPValue) -> Option<&str> {
    match v {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

fn as_i128(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => (*x).into(),
        AMQPValue::ShortShortUInt(x) => (*x).into(),
        AMQPValue::ShortInt(x) => (*x).into(),
        AMQPValue::ShortUInt(x) => (*x).into(),
        AMQPValue::LongInt(x) => (*x).into(),
        AMQPValue::LongUInt(x) => (*x).into(),
        AMQPValue::LongLongInt(x) => (*x).into(),
        AMQPValue::Timestamp(x) => (*x).into(),
        _ => return None,
    })
}

fn bytes_value(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// Values compare equal when they are of the same class (integers with integers, strings with
/// strings) and equal in value.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (bytes_value(a), bytes_value(b)) {
        return x == y;
    }
    a == b
}

pub fn matches(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let kind = MatchKind::from_args(binding).unwrap_or(MatchKind::All);
    let with_x = matches!(kind, MatchKind::AllWithX | MatchKind::AnyWithX);
    let all = matches!(kind, MatchKind::All | MatchKind::AllWithX);
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty).inner();
    let mut any_matched = false;
    for (k, want) in binding.inner() {
        if k.as_str() == "x-match" || (!with_x && k.as_str().starts_with("x-")) {
            continue;
        }
        let ok = match headers.get(k.as_str()) {
            None => false,
            Some(_) if matches!(want, AMQPValue::Void) => true,
            Some(have) => values_equal(want, have),
        };
        if all && !ok {
            return false;
        }
        any_matched |= ok;
    }
    all || any_matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn all_and_any() {
        let all = table(&[("a", s("1")), ("b", AMQPValue::LongInt(2))]);
        let any = table(&[("x-match", s("any")), ("a", s("1")), ("b", s("9"))]);
        let h = table(&[("a", s("1")), ("b", AMQPValue::ShortShortUInt(2))]);
        assert!(matches(&all, Some(&h)));
        assert!(matches(&any, Some(&h)));
        let h2 = table(&[("a", s("2"))]);
        assert!(!matches(&all, Some(&h2)));
        assert!(!matches(&any, Some(&h2)));
        assert!(matches(&FieldTable::default(), None));
        let any_empty = table(&[("x-match", s("any"))]);
        assert!(!matches(&any_empty, None));
    }

    #[test]
    fn x_keys_only_with_x() {
        let b = table(&[("x-k", s("v"))]);
        assert!(matches(&b, None));
        let bx = table(&[("x-match", s("all-with-x")), ("x-k", s("v"))]);
        assert!(!matches(&bx, None));
        assert!(matches(&bx, Some(&table(&[("x-k", s("v"))]))));
    }
}
