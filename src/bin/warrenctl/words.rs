//! rabbitmqctl/rabbitmqadmin-style arguments: key=value words, durations, path encoding.

use crate::Res;
use serde_json::{Map, Value};

/// key=value words → JSON values: true/false and numbers as such, {..}/[..] parsed as JSON.
pub(crate) fn pairs(words: &[&str]) -> Res<Map<String, Value>> {
    let mut m = Map::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got '{w}'"))?;
        let value = if v.starts_with('{') || v.starts_with('[') {
            serde_json::from_str(v).map_err(|e| format!("{k}: not JSON: {e}"))?
        } else if k == "payload" || k == "routing_key" || k == "name" {
            Value::String(v.to_string())
        } else if let Ok(b) = v.parse::<bool>() {
            Value::Bool(b)
        } else if let Ok(n) = v.parse::<i64>() {
            n.into()
        } else {
            Value::String(v.to_string())
        };
        m.insert(k.to_string(), value);
    }
    Ok(m)
}

pub(crate) fn need(m: &Map<String, Value>, key: &str) -> Res<String> {
    m.get(key)
        .map(s)
        .ok_or_else(|| format!("missing {key}=..."))
}

pub(crate) fn pick(m: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| m.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

pub(crate) fn dest_type(m: &Map<String, Value>) -> Res<&'static str> {
    match m.get("destination_type").map(s).as_deref() {
        None | Some("queue") => Ok("q"),
        Some("exchange") => Ok("e"),
        Some(other) => Err(format!(
            "destination_type must be queue or exchange, not {other}"
        )),
    }
}

pub(crate) fn query(m: &Map<String, Value>, flags: &[&str]) -> String {
    let set: Vec<String> = flags
        .iter()
        .filter(|f| m.get(**f) == Some(&Value::Bool(true)))
        .map(|f| format!("{}=true", f.replace('_', "-")))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Percent-encode a path segment (so "/" becomes %2F, as the API expects for vhosts).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// "5s", "250ms", "2m", or a number of seconds, in milliseconds.
pub(crate) fn millis(t: &str) -> Res<u64> {
    let bad = || format!("bad duration '{t}' (5s, 250ms, 2m)");
    let (n, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(n),
        "s" => Ok(n * 1000),
        "m" => Ok(n * 60_000),
        _ => Err(bad()),
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}
