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
            Some(v) => match crate::args::str_bytes(v)? {
                b"all" => Some(MatchKind::All),
                b"any" => Some(MatchKind::Any),
                b"all-with-x" => Some(MatchKind::AllWithX),
                b"any-with-x" => Some(MatchKind::AnyWithX),
                _ => None,
            },
        }
    }
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
            Some(have) => crate::args::equivalent(want, have),
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
