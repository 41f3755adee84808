//! Dynamic shovels: RabbitMQ's `shovel` runtime parameter, with its JSON keys. A shovel moves
//! messages from a queue (or an exchange) on one broker to a queue or exchange on another,
//! over AMQP 0-9-1 on both sides through lapin (`run`), acking the source only once the
//! destination confirmed (`ack-mode: on-confirm`, the default), so an outage duplicates at most
//! what was in flight and loses nothing.
//!
//! This module knows nothing of the broker it runs in: the broker keeps the parameters durable
//! and hands each one here (`Registry::start`), with the URI that "amqp://" (the local broker)
//! stands for.

pub mod connect;
mod run;

pub(crate) use run::settle;

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How the source is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    OnConfirm,
    OnPublish,
    NoAck,
}

/// When a shovel stops by itself and removes its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAfter {
    Never,
    /// The source queue's length when the shovel started.
    QueueLength,
    Count(u64),
}

/// One shovel's definition, as RabbitMQ's `shovel` parameter spells it.
#[derive(Debug, Clone)]
pub struct Definition {
    /// `amqp091`, or `local` (this broker: the same client path to it, as "amqp://").
    pub src_protocol: &'static str,
    pub dest_protocol: &'static str,
    pub src_uris: Vec<String>,
    pub src_queue: Option<String>,
    pub src_queue_args: Map<String, Value>,
    pub src_exchange: Option<String>,
    pub src_exchange_key: String,
    pub src_predeclared: bool,
    pub src_prefetch: u16,
    pub src_consumer_args: Map<String, Value>,
    pub src_delete_after: DeleteAfter,
    pub dest_uris: Vec<String>,
    pub dest_queue: Option<String>,
    pub dest_queue_args: Map<String, Value>,
    pub dest_exchange: Option<String>,
    pub dest_exchange_key: Option<String>,
    pub dest_predeclared: bool,
    pub dest_publish_properties: Map<String, Value>,
    pub dest_add_forward_headers: bool,
    pub dest_add_timestamp_header: bool,
    pub ack_mode: AckMode,
    pub reconnect_delay_ms: u64,
}

fn invalid(why: impl std::fmt::Display) -> String {
    format!("Validation failed\n\n{why}\n")
}

fn uris(v: Option<&Value>, key: &str, name: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|u| u.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(format!("{key} must be a string or a list of strings")))?,
        _ => return Err(invalid(format!("Key \"{key}\" not found in {name}"))),
    };
    if list.is_empty() {
        return Err(invalid(format!("{key} must not be empty")));
    }
    for u in &list {
        let scheme = u.split_once("://").map_or("", |(s, _)| s);
        if scheme != "amqp" && scheme != "amqps" {
            return Err(invalid(format!(
                "\"{u}\" not a valid URI: {{{{unexpected_uri_scheme,\"{scheme}\"}},\"{u}\"}}"
            )));
        }
    }
    Ok(list)
}

impl Definition {
    /// Parse and check the value of the `shovel` parameter `name` (RabbitMQ's keys and
    /// validation texts; `amqp091` and `local`).
    pub fn parse(v: &Value, name: &str) -> Result<Definition, String> {
        let Some(m) = v.as_object() else {
            return Err(invalid("the shovel must be a JSON object"));
        };
        let mut protocols = ["amqp091"; 2];
        for (i, side) in ["src-protocol", "dest-protocol"].iter().enumerate() {
            protocols[i] = match m.get(*side).and_then(Value::as_str) {
                None | Some("amqp091") => "amqp091",
                Some("local") => "local",
                Some(other) => {
                    return Err(invalid(format!(
                        "{side} {other} is not supported by Warren (amqp091 and local only)"
                    )))
                }
            };
        }
        for (protocol, key) in [(protocols[0], "src-uri"), (protocols[1], "dest-uri")] {
            let local = |u: &Value| {
                u.as_str()
                    .is_some_and(|u| u.starts_with("amqp:///") || u == "amqp://")
            };
            let all_local = match m.get(key) {
                Some(Value::Array(a)) => a.iter().all(local),
                Some(u) => local(u),
                None => true,
            };
            if protocol == "local" && !all_local {
                return Err(invalid(format!(
                    "{key} of a local shovel must name this broker (amqp:// or amqp:///vhost)"
                )));
            }
        }
        let string = |k: &str| m.get(k).and_then(Value::as_str).map(String::from);
        let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
        let table = |k: &str| {
            m.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let src_uris = uris(m.get("src-uri"), "src-uri", name)?;
        let dest_uris = uris(m.get("dest-uri"), "dest-uri", name)?;
        let (src_queue, src_exchange) = (string("src-queue"), string("src-exchange"));
        match (&src_queue, &src_exchange) {
            (Some(_), Some(_)) => {
                return Err(invalid("Cannot specify 'src-exchange' and 'src-queue'"))
            }
            (None, None) => return Err(invalid("Must specify 'src-exchange' or 'src-queue'")),
            _ => {}
        }
        let (dest_queue, dest_exchange) = (string("dest-queue"), string("dest-exchange"));
        if dest_queue.is_some() && dest_exchange.is_some() {
            return Err(invalid("Cannot specify 'dest-exchange' and 'dest-queue'"));
        }
        let ack_mode = match m.get("ack-mode") {
            None => AckMode::OnConfirm,
            Some(v) => match v.as_str() {
                Some("on-confirm") => AckMode::OnConfirm,
                Some("on-publish") => AckMode::OnPublish,
                Some("no-ack") => AckMode::NoAck,
                _ => {
                    let shown = v
                        .as_str()
                        .map_or_else(|| v.to_string(), |s| format!("<<\"{s}\">>"));
                    return Err(invalid(format!(
                        "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was {shown}"
                    )));
                }
            },
        };
        let src_delete_after = match m.get("src-delete-after") {
            None => DeleteAfter::Never,
            Some(Value::String(s)) if s == "never" => DeleteAfter::Never,
            Some(Value::String(s)) if s == "queue-length" => DeleteAfter::QueueLength,
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                DeleteAfter::Count(n.as_u64().unwrap_or(0))
            }
            Some(other) => return Err(invalid(format!("src-delete-after {other} is not valid"))),
        };
        let prefetch = match m.get("src-prefetch-count") {
            None => 1000,
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid(format!("src-prefetch-count {v} is not valid")))?,
        };
        let reconnect_delay_ms = match m.get("reconnect-delay") {
            None => 5000,
            Some(v) => v
                .as_f64()
                .filter(|s| *s >= 0.0 && *s <= 86_400.0)
                .map(|s| (s * 1000.0) as u64)
                .ok_or_else(|| invalid(format!("reconnect-delay {v} is not valid")))?,
        };
        Ok(Definition {
            src_protocol: protocols[0],
            dest_protocol: protocols[1],
            src_uris,
            src_queue,
            src_queue_args: table("src-queue-args"),
            src_exchange,
            src_exchange_key: string("src-exchange-key").unwrap_or_else(|| "#".into()),
            src_predeclared: flag("src-predeclared"),
            src_prefetch: prefetch,
            src_consumer_args: table("src-consumer-args"),
            src_delete_after,
            dest_uris,
            dest_queue,
            dest_queue_args: table("dest-queue-args"),
            dest_exchange,
            dest_exchange_key: string("dest-exchange-key"),
            dest_predeclared: flag("dest-predeclared"),
            dest_publish_properties: table("dest-publish-properties"),
            dest_add_forward_headers: flag("dest-add-forward-headers"),
            dest_add_timestamp_header: flag("dest-add-timestamp-header"),
            ack_mode,
            reconnect_delay_ms,
        })
    }
}

/// What `GET /api/shovels` shows of one shovel.
#[derive(Debug, Default)]
pub struct Status {
    /// "starting", "running" or "terminated".
    pub state: Mutex<(&'static str, Option<String>)>,
    pub transferred: std::sync::atomic::AtomicU64,
    /// When the state last changed (ms since the epoch).
    since: std::sync::atomic::AtomicU64,
}

impl Status {
    fn set(&self, state: &'static str, reason: Option<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (state, reason);
        self.since.store(
            crate::clock::system_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// RabbitMQ's `timestamp`: "2026-11-30 8:39:55" (UTC).
    fn timestamp(&self) -> String {
        crate::clock::format_status_time(self.since.load(std::sync::atomic::Ordering::Relaxed))
    }
}

struct Running {
    definition: Definition,
    status: Arc<Status>,
    task: tokio::task::AbortHandle,
}

/// A shovel finished by itself (src-delete-after): its parameter should go.
pub type OnDone = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The shovels running in this broker, by (vhost, name).
#[derive(Default)]
pub struct Registry {
    running: Mutex<BTreeMap<(String, String), Running>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} shovels)", self.lock().len())
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start (or restart with a new definition) a shovel. `local` is the URI "amqp://"
    /// stands for; `done` is called when it finishes by itself.
    pub fn start(&self, vhost: &str, name: &str, def: Definition, local: String, done: OnDone) {
        let status = Arc::new(Status::default());
        status.set("starting", None);
        let task = tokio::spawn(run::run(
            def.clone(),
            local,
            status.clone(),
            (vhost.to_string(), name.to_string()),
            done,
        ))
        .abort_handle();
        let old = self.lock().insert(
            (vhost.to_string(), name.to_string()),
            Running {
                definition: def,
                status,
                task,
            },
        );
        if let Some(old) = old {
            old.task.abort();
        }
    }

    /// Stop a shovel; false if there was none.
    pub fn stop(&self, vhost: &str, name: &str) -> bool {
        match self.lock().remove(&(vhost.to_string(), name.to_string())) {
            Some(r) => {
                r.task.abort();
                true
            }
            None => false,
        }
    }

    /// Stop every shovel (the broker is stopping).
    pub fn stop_all(&self) {
        for (_, r) in std::mem::take(&mut *self.lock()) {
            r.task.abort();
        }
    }

    /// The shovels' statuses as `GET /api/shovels` shows them (RabbitMQ's fields).
    pub fn statuses(&self, node: &str) -> Vec<Value> {
        self.lock()
            .iter()
            .map(|((vhost, name), r)| {
                let (state, reason) = r
                    .status
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let d = &r.definition;
                let mut v = serde_json::json!({
                    "name": name, "vhost": vhost, "type": "dynamic", "node": node,
                    "state": state, "timestamp": r.status.timestamp(),
                    "src_protocol": d.src_protocol, "dest_protocol": d.dest_protocol,
                    "src_uri": redact(&d.src_uris[0]), "dest_uri": redact(&d.dest_uris[0]),
                    "messages_transferred": r.status.transferred.load(std::sync::atomic::Ordering::Relaxed),
                });
                let put = |v: &mut Value, k: &str, x: &Option<String>| {
                    if let Some(x) = x {
                        v[k] = Value::from(x.as_str());
                    }
                };
                put(&mut v, "src_queue", &d.src_queue);
                put(&mut v, "src_exchange", &d.src_exchange);
                put(&mut v, "dest_queue", &d.dest_queue);
                put(&mut v, "dest_exchange", &d.dest_exchange);
                if let Some(r) = reason {
                    v["reason"] = Value::from(r);
                }
                v
            })
            .collect()
    }
}

/// A URI without its password, as RabbitMQ shows it.
fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    match rest.split_once('@') {
        Some((creds, host)) => {
            let user = creds.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rabbitmqs_keys_parse_and_bad_ones_are_refused() {
        let d = Definition::parse(
            &json!({
                "src-uri": "amqp://", "src-queue": "a", "dest-uri": ["amqp://h:1", "amqp://h:2"],
                "dest-queue": "b", "src-delete-after": "queue-length", "reconnect-delay": 0.5
            }),
            "s",
        )
        .expect("valid");
        assert_eq!(d.ack_mode, AckMode::OnConfirm);
        assert_eq!((d.src_prefetch, d.reconnect_delay_ms), (1000, 500));
        assert_eq!(d.src_delete_after, DeleteAfter::QueueLength);
        assert_eq!(d.dest_uris.len(), 2);
        for bad in [
            json!({"src-uri": "amqp://", "dest-uri": "amqp://", "dest-queue": "b"}),
            json!({"src-uri": "http://x", "src-queue": "a", "dest-uri": "amqp://"}),
            json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "ack-mode": "x"}),
            json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-protocol": "amqp10"}),
        ] {
            assert!(Definition::parse(&bad, "s").is_err(), "{bad}");
        }
        assert_eq!(redact("amqp://u:secret@h:5672/v"), "amqp://u@h:5672/v");
        let e = Definition::parse(&json!({"src-uri": "amqp://", "src-queue": "a"}), "bad");
        assert_eq!(
            e.unwrap_err(),
            "Validation failed\n\nKey \"dest-uri\" not found in bad\n"
        );
    }
}
