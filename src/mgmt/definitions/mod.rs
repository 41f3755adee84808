//! Definitions import: RabbitMQ's export format (users, vhosts, permissions, topic
//! permissions, vhost limits, exchanges, queues, bindings; as written by `rabbitmqadmin
//! export` or GET /api/definitions), applied through the same broker and vhost calls as the
//! API and the AMQP methods. Used by POST /api/definitions, `warrenctl import` and
//! `warren --definitions`.

use super::json::to_table;
use crate::broker::Broker;
use crate::queue::Effects;
use crate::vhost::{ExchangeDecl, QueueDecl};
use serde_json::Value;

mod access;
use access::Access;

/// What an import declared.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub users: usize,
    pub vhosts: usize,
    pub permissions: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
}

/// Apply `defs`. The whole file is checked first, so a file with a bad entry changes nothing
/// and the error names that entry: names, exchange types, queue arguments, and that every
/// binding's ends exist (on the broker or in the file). An exchange or queue that already
/// exists is left as it is, even if the file describes it differently (RabbitMQ 3.10's import
/// does the same). Users keep their password hashes (sha256, sha512 or md5), so they log in
/// with their original passwords. Policies apply to what the file declares. Parameters of
/// components Warren does not have are ignored (reported in the log).
pub fn import(broker: &Broker, defs: &Value) -> Result<Imported, String> {
    let list = |key: &str| -> Vec<&Value> {
        defs.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    if !defs.is_object() {
        return Err("definitions must be a JSON object".into());
    }
    let (exchanges, queues, bindings) = (list("exchanges"), list("queues"), list("bindings"));
    let access = Access::check(broker, defs)?;
    for item in exchanges.iter().chain(&queues).chain(&bindings) {
        let v = str_of(item, "vhost").unwrap_or("/");
        if broker.vhost(v).is_none() && !access.has_vhost(v) {
            return Err(format!("vhost '{v}' does not exist"));
        }
    }
    check(broker, &access, &exchanges, &queues, &bindings)?;
    let mut done = access.apply(broker);
    let explain = |what: &str, name: &str, e: crate::error::AmqpError| {
        format!("{what} '{name}': {}", e.explanation)
    };
    for x in exchanges {
        let name = short_ok(str_of(x, "name").ok_or("an exchange without a name")?)?;
        if name.is_empty() || name.starts_with("amq.") {
            continue;
        }
        let vh = vhost_of(broker, x)?;
        if vh.exchange(name).is_some() {
            continue;
        }
        let decl = ExchangeDecl {
            name: name.to_string(),
            kind: str_of(x, "type").unwrap_or("direct").to_string(),
            durable: bool_of(x, "durable", true),
            auto_delete: bool_of(x, "auto_delete", false),
            internal: bool_of(x, "internal", false),
            arguments: to_table(x.get("arguments").unwrap_or(&Value::Null))?,
        };
        vh.declare_exchange(&decl, false, &mut Effects::default())
            .map_err(|e| explain("exchange", name, e))?;
        done.exchanges += 1;
    }
    for q in queues {
        let name = short_ok(str_of(q, "name").ok_or("a queue without a name")?)?;
        let vh = vhost_of(broker, q)?;
        if vh.queue(name).is_some() {
            continue;
        }
        let decl = QueueDecl {
            name: name.to_string(),
            server_named: false,
            durable: bool_of(q, "durable", true),
            exclusive: false,
            auto_delete: bool_of(q, "auto_delete", false),
            arguments: to_table(q.get("arguments").unwrap_or(&Value::Null))?,
        };
        vh.declare_queue(&decl, false, 0, &mut Effects::default())
            .map_err(|e| explain("queue", name, e))?;
        done.queues += 1;
    }
    for b in bindings {
        let source = str_of(b, "source").ok_or("a binding without a source")?;
        let dest = str_of(b, "destination").ok_or("a binding without a destination")?;
        if source.is_empty() {
            continue; // the default exchange's bindings are implicit
        }
        let vh = vhost_of(broker, b)?;
        let key = short_ok(str_of(b, "routing_key").unwrap_or(""))?;
        let args = to_table(b.get("arguments").unwrap_or(&Value::Null))?;
        let r = match str_of(b, "destination_type").unwrap_or("queue") {
            "exchange" => vh.bind_exchange(dest, source, key, &args, &mut Effects::default()),
            _ => vh.bind_queue(dest, source, key, &args, 0, &mut Effects::default()),
        };
        r.map_err(|e| explain("binding from", source, e))?;
        done.bindings += 1;
    }
    Ok(done)
}

/// Everything `import` would refuse, found before anything is applied.
fn check(
    broker: &Broker,
    access: &Access,
    exchanges: &[&Value],
    queues: &[&Value],
    bindings: &[&Value],
) -> Result<(), String> {
    let vhost = |v: &Value| str_of(v, "vhost").unwrap_or("/").to_string();
    let mut new_exchanges = std::collections::HashSet::new();
    for x in exchanges {
        let name = short_ok(str_of(x, "name").ok_or("an exchange without a name")?)?;
        let vh = planned(broker, access, x)?;
        if name.is_empty()
            || name.starts_with("amq.")
            || vh.as_ref().is_some_and(|vh| vh.exchange(name).is_some())
        {
            continue;
        }
        let kind = str_of(x, "type").unwrap_or("direct");
        let args = to_table(x.get("arguments").unwrap_or(&Value::Null))
            .map_err(|e| format!("exchange '{name}': {e}"))?;
        if crate::exchange::resolve_type(kind, &args).is_none() {
            return Err(format!("exchange '{name}': unknown exchange type '{kind}'"));
        }
        new_exchanges.insert((vhost(x), name.to_string()));
    }
    let mut new_queues = std::collections::HashSet::new();
    for q in queues {
        let name = short_ok(str_of(q, "name").ok_or("a queue without a name")?)?;
        let vh = planned(broker, access, q)?;
        if vh.as_ref().is_some_and(|vh| vh.queue(name).is_some()) {
            continue;
        }
        if name.starts_with("amq.") {
            return Err(format!(
                "queue '{name}': queue name '{name}' contains reserved prefix 'amq.*'"
            ));
        }
        let args = to_table(q.get("arguments").unwrap_or(&Value::Null))
            .map_err(|e| format!("queue '{name}': {e}"))?;
        let cx = crate::queue::args::DeclareContext {
            name,
            vhost: &vhost(q),
            durable: bool_of(q, "durable", true),
            exclusive: false,
            auto_delete: bool_of(q, "auto_delete", false),
        };
        crate::queue::QueueArgs::parse(&args, &cx)
            .map_err(|e| format!("queue '{name}': {}", e.explanation))?;
        new_queues.insert((vhost(q), name.to_string()));
    }
    for b in bindings {
        let source = short_ok(str_of(b, "source").ok_or("a binding without a source")?)?;
        let dest = short_ok(str_of(b, "destination").ok_or("a binding without a destination")?)?;
        if source.is_empty() {
            continue;
        }
        let vh = planned(broker, access, b)?;
        let v = vhost(b);
        short_ok(str_of(b, "routing_key").unwrap_or(""))?;
        to_table(b.get("arguments").unwrap_or(&Value::Null))
            .map_err(|e| format!("binding from '{source}' to '{dest}': {e}"))?;
        let exchange_known = |n: &str| {
            vh.as_ref().is_some_and(|vh| vh.exchange(n).is_some())
                || new_exchanges.contains(&(v.clone(), n.to_string()))
        };
        let to_queue = str_of(b, "destination_type").unwrap_or("queue") != "exchange";
        let missing = if !exchange_known(source) {
            Some(format!("no exchange '{source}' in vhost '{v}'"))
        } else if to_queue
            && vh.as_ref().is_none_or(|vh| vh.queue(dest).is_none())
            && !new_queues.contains(&(v.clone(), dest.to_string()))
        {
            Some(format!("no queue '{dest}' in vhost '{v}'"))
        } else if !to_queue && !exchange_known(dest) {
            Some(format!("no exchange '{dest}' in vhost '{v}'"))
        } else {
            None
        };
        if let Some(why) = missing {
            let kind = if to_queue { "queue" } else { "exchange" };
            return Err(format!("binding from '{source}' to {kind} '{dest}': {why}"));
        }
    }
    Ok(())
}

/// Names and keys are shortstrs over AMQP: refuse what cannot be one.
fn short_ok(s: &str) -> Result<&str, String> {
    if s.len() > 255 {
        return Err(format!(
            "'{}...' is longer than 255 bytes",
            &s[..crate::names::fit(s, 40)]
        ));
    }
    Ok(s)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn bool_of(v: &Value, key: &str, default: bool) -> bool {
    match v.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => default,
    }
}

/// The vhost an entry lives in: Some when it exists, None when the file creates it.
fn planned(
    broker: &Broker,
    access: &Access,
    v: &Value,
) -> Result<Option<std::sync::Arc<crate::vhost::VHost>>, String> {
    let name = str_of(v, "vhost").unwrap_or("/");
    match broker.vhost(name) {
        Some(vh) => Ok(Some(vh)),
        None if access.has_vhost(name) => Ok(None),
        None => Err(format!("vhost '{name}' does not exist")),
    }
}

fn vhost_of(broker: &Broker, v: &Value) -> Result<std::sync::Arc<crate::vhost::VHost>, String> {
    let name = str_of(v, "vhost").unwrap_or("/");
    broker
        .vhost(name)
        .ok_or_else(|| format!("vhost '{name}' does not exist"))
}
