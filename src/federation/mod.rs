//! Federation, as RabbitMQ's federation plugin does it: a policy with `federation-upstream`,
//! `federation-upstream-set` or `federation-upstream-pattern` on an exchange or a queue starts
//! one link per upstream (`federation-upstream` runtime parameters, RabbitMQ's keys and
//! validation texts).
//!
//! An exchange link (`link`) declares on the upstream broker a queue and an internal exchange
//! of type `x-federation-upstream`, binds that exchange to the upstream exchange with the
//! downstream exchange's binding keys (kept in step as they change), and republishes what
//! arrives into the downstream exchange, adding an `x-received-from` hop, acking upstream once
//! the local publish is confirmed. A queue link (`queue_link`) consumes from the upstream
//! queue of the same name, at priority -1, only while the downstream queue is empty and has a
//! consumer, and republishes into it.
//!
//! This module knows nothing of the broker it runs in: the broker keeps the parameters, works
//! out which links policies ask for (`broker::federation`) and hands each one here.

mod link;
mod queue_link;

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::shovel::AckMode;

/// One upstream's settings (a `federation-upstream` value, with a set element's overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub uris: Vec<String>,
    /// The upstream exchange (default: the downstream exchange's name).
    pub exchange: Option<String>,
    /// The upstream queue (default: the downstream queue's name).
    pub queue: Option<String>,
    /// A queue link's consumer tag (default: "federation-link-" and the upstream's name).
    pub consumer_tag: Option<String>,
    pub prefetch: u16,
    pub reconnect_delay_ms: u64,
    pub max_hops: i64,
    pub expires: Option<i64>,
    pub message_ttl: Option<i64>,
    pub trust_user_id: bool,
    pub ack_mode: AckMode,
    /// `resource-cleanup-mode: never`: the upstream queue and exchange stay when the link stops.
    pub keep_resources: bool,
}

fn invalid(why: impl std::fmt::Display) -> String {
    format!("Validation failed\n\n{why}\n")
}

/// Keys a set element may override (all but `uri`).
const SHARED: [&str; 13] = [
    "exchange",
    "queue",
    "consumer-tag",
    "prefetch-count",
    "reconnect-delay",
    "max-hops",
    "expires",
    "message-ttl",
    "trust-user-id",
    "ack-mode",
    "resource-cleanup-mode",
    "ha-policy",
    "bind-nowait",
];

/// Check the shared keys of `m` (RabbitMQ's `rabbit_parameter_validation` texts).
fn check_shared(m: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in m {
        let ok = match k.as_str() {
            "exchange" | "queue" | "consumer-tag" | "ha-policy" => {
                v.is_string().then_some(()).ok_or("should be binary")
            }
            "prefetch-count" | "reconnect-delay" | "max-hops" | "expires" | "message-ttl" => {
                v.is_number().then_some(()).ok_or("should be a number")
            }
            "trust-user-id" | "bind-nowait" => {
                v.is_boolean().then_some(()).ok_or("should be boolean")
            }
            "ack-mode" => enumerated(k, v, &["no-ack", "on-publish", "on-confirm"])?,
            "resource-cleanup-mode" => enumerated(k, v, &["default", "never"])?,
            "channel-use-mode" => enumerated(k, v, &["multiple", "single"])?,
            _ => Ok(()),
        };
        if let Err(what) = ok {
            return Err(invalid(format!("{k} {what}, actually was {v}")));
        }
    }
    Ok(())
}

fn enumerated(k: &str, v: &Value, options: &[&str]) -> Result<Result<(), &'static str>, String> {
    match v.as_str() {
        None => Ok(Err("should be binary")),
        Some(s) if options.contains(&s) => Ok(Ok(())),
        Some(s) => {
            let list: Vec<String> = options.iter().map(|o| format!("<<\"{o}\">>")).collect();
            Err(invalid(format!(
                "{k} should be one of [{}], actually was <<\"{s}\">>",
                list.join(",")
            )))
        }
    }
}

fn unrecognised(m: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    let extra: Vec<String> = m
        .iter()
        .filter(|(k, _)| !allowed.contains(&k.as_str()))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{v}}}"))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(invalid(format!(
            "Unrecognised terms [{}] in {what}",
            extra.join(",")
        )))
    }
}

impl Upstream {
    /// Parse and check the value of the `federation-upstream` parameter `name`.
    pub fn parse(v: &Value, name: &str) -> Result<Upstream, String> {
        let Some(m) = v.as_object() else {
            return Err(invalid(format!("{name} not a list {v}")));
        };
        let uris = match m.get("uri") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|u| u.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(format!("uri should be binary, actually was {v}")))?,
            Some(other) => {
                return Err(invalid(format!("uri should be list, actually was {other}")))
            }
            None => return Err(invalid(format!("Key \"uri\" not found in {name}"))),
        };
        if uris.is_empty() {
            return Err(invalid("uri should be list, actually was []"));
        }
        for u in &uris {
            let scheme = u.split_once("://").map_or("", |(s, _)| s);
            if scheme != "amqp" && scheme != "amqps" {
                return Err(invalid(format!(
                    "\"{u}\" not a valid URI: {{unexpected_uri_scheme,\"{scheme}\"}}"
                )));
            }
        }
        let mut allowed = SHARED.to_vec();
        allowed.extend(["uri", "channel-use-mode"]);
        unrecognised(m, &allowed, name)?;
        check_shared(m)?;
        let mut u = Upstream {
            uris,
            exchange: None,
            queue: None,
            consumer_tag: None,
            prefetch: 1000,
            reconnect_delay_ms: 5000,
            max_hops: 1,
            expires: None,
            message_ttl: None,
            trust_user_id: false,
            ack_mode: AckMode::OnConfirm,
            keep_resources: false,
        };
        u.apply(m);
        Ok(u)
    }

    /// Take the keys `m` sets (checked already).
    fn apply(&mut self, m: &Map<String, Value>) {
        let int = |k: &str| m.get(k).and_then(Value::as_f64).map(|f| f as i64);
        if let Some(x) = m.get("exchange").and_then(Value::as_str) {
            self.exchange = Some(x.to_string());
        }
        if let Some(q) = m.get("queue").and_then(Value::as_str) {
            self.queue = Some(q.to_string());
        }
        if let Some(t) = m.get("consumer-tag").and_then(Value::as_str) {
            self.consumer_tag = Some(t.to_string());
        }
        if let Some(n) = int("prefetch-count") {
            self.prefetch = u16::try_from(n.max(1)).unwrap_or(u16::MAX);
        }
        if let Some(f) = m.get("reconnect-delay").and_then(Value::as_f64) {
            self.reconnect_delay_ms = (f.max(0.0) * 1000.0).min(3.6e6) as u64;
        }
        if let Some(n) = int("max-hops") {
            self.max_hops = n;
        }
        if let Some(n) = int("expires") {
            self.expires = Some(n);
        }
        if let Some(n) = int("message-ttl") {
            self.message_ttl = Some(n);
        }
        if let Some(b) = m.get("trust-user-id").and_then(Value::as_bool) {
            self.trust_user_id = b;
        }
        match m.get("ack-mode").and_then(Value::as_str) {
            Some("no-ack") => self.ack_mode = AckMode::NoAck,
            Some("on-publish") => self.ack_mode = AckMode::OnPublish,
            Some("on-confirm") => self.ack_mode = AckMode::OnConfirm,
            _ => {}
        }
        if let Some(s) = m.get("resource-cleanup-mode").and_then(Value::as_str) {
            self.keep_resources = s == "never";
        }
    }

    /// This upstream with a set element's overrides.
    pub fn with_overrides(&self, element: &Map<String, Value>) -> Upstream {
        let mut u = self.clone();
        u.apply(element);
        u
    }
}

/// Check the value of a `federation-upstream-set` parameter: a list of objects naming an
/// `upstream`, with overrides of the shared keys.
pub fn validate_set(v: &Value, name: &str) -> Result<(), String> {
    let Some(list) = v.as_array() else {
        return Err(invalid(format!("{name} not a list {v}")));
    };
    for element in list {
        let Some(m) = element.as_object() else {
            return Err(invalid(format!(
                "upstream set element not a list {element}"
            )));
        };
        match m.get("upstream") {
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "upstream should be binary, actually was {other}"
                )))
            }
            None => return Err(invalid("Key \"upstream\" not found in upstream-set")),
        }
        let mut allowed = SHARED.to_vec();
        allowed.extend(["upstream", "channel-use-mode"]);
        unrecognised(m, &allowed, "upstream-set")?;
        check_shared(m)?;
    }
    Ok(())
}

/// Reads an exchange's bindings: (routing key, arguments) each; None once it is gone.
pub type BindingsOf =
    Arc<dyn Fn() -> Option<Vec<(String, amq_protocol::types::FieldTable)>> + Send + Sync>;

/// A queue's state as a queue link reads it: (ready messages, whether it has a consumer of
/// priority 0 or more); None once it is gone.
pub type QueueStateOf = Arc<dyn Fn() -> Option<(u32, bool)> + Send + Sync>;

/// What is federated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Exchange,
    Queue,
}

/// What a link needs from the broker it runs in.
#[derive(Clone)]
pub struct LinkSpec {
    pub kind: Kind,
    pub vhost: String,
    /// The downstream exchange or queue.
    pub name: String,
    pub upstream_name: String,
    pub upstream: Upstream,
    /// This broker as an AMQP URI, in the link's vhost.
    pub local_uri: String,
    /// This broker's cluster_name (names the upstream queue; stops cycles).
    pub cluster_name: String,
    /// The downstream exchange's (or queue's) type, flags and arguments, to declare it
    /// upstream if missing.
    pub exchange_type: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: amq_protocol::types::FieldTable,
    /// The downstream exchange's bindings now: (routing key, arguments); None once it is gone.
    pub bindings: BindingsOf,
    /// A queue link's view of its downstream queue.
    pub queue_state: Option<QueueStateOf>,
}

impl std::fmt::Debug for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LinkSpec({}/{} <- {})",
            self.vhost, self.name, self.upstream_name
        )
    }
}

/// A link's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkKey {
    pub vhost: String,
    pub kind: Kind,
    pub name: String,
    pub upstream: String,
}

impl LinkSpec {
    pub fn key(&self) -> LinkKey {
        LinkKey {
            vhost: self.vhost.clone(),
            kind: self.kind,
            name: self.name.clone(),
            upstream: self.upstream_name.clone(),
        }
    }
}

/// A link's state as the status API shows it.
#[derive(Debug, Default)]
pub struct Status {
    state: Mutex<(&'static str, Option<String>)>,
    since: AtomicU64,
    /// The URI in use, without credentials.
    uri: Mutex<String>,
}

impl Status {
    fn set(&self, state: &'static str, error: Option<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (state, error);
        self.since
            .store(crate::clock::system_ms(), Ordering::Relaxed);
    }

    fn timestamp(&self) -> String {
        crate::clock::format_status_time(self.since.load(Ordering::Relaxed))
    }
}

struct Running {
    /// What the link was started with (a change restarts it).
    upstream: Upstream,
    status: Arc<Status>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::AbortHandle,
}

/// The links running in this broker.
#[derive(Default)]
pub struct Registry {
    running: Mutex<BTreeMap<LinkKey, Running>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} federation links)", self.lock().len())
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<LinkKey, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The links started, with what they were started with and whether their task ended
    /// (it ends only when stopped, so an ended one has failed unexpectedly).
    pub fn keys(&self) -> Vec<(LinkKey, Upstream, bool)> {
        self.lock()
            .iter()
            .map(|(k, r)| (k.clone(), r.upstream.clone(), r.task.is_finished()))
            .collect()
    }

    /// Start a link (replacing one with the same key).
    pub fn start(&self, spec: LinkSpec) {
        let key = spec.key();
        let status = Arc::new(Status::default());
        status.set("starting", None);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let upstream = spec.upstream.clone();
        let task = tokio::spawn(run(spec, status.clone(), stopped)).abort_handle();
        let old = self.lock().insert(
            key,
            Running {
                upstream,
                status,
                stop,
                task,
            },
        );
        if let Some(old) = old {
            old.task.abort();
        }
    }

    /// Stop a link: it removes what it declared upstream (unless told to keep it), then ends.
    pub fn stop(&self, key: &LinkKey) -> bool {
        match self.lock().remove(key) {
            Some(r) => {
                if r.stop.send(true).is_err() {
                    r.task.abort();
                }
                true
            }
            None => false,
        }
    }

    /// The broker is stopping: links end where they are.
    pub fn stop_all(&self) {
        for (_, r) in std::mem::take(&mut *self.lock()) {
            r.task.abort();
        }
    }

    /// `GET /api/federation-links`: RabbitMQ's fields for exchange and queue links.
    pub fn statuses(&self, node: &str) -> Vec<Value> {
        self.lock()
            .iter()
            .map(|(key, r)| {
                let (vhost, name, upstream) = (&key.vhost, &key.name, &key.upstream);
                let (state, error) = r
                    .status
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let uri = r
                    .status
                    .uri
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let u = &r.upstream;
                let mut v = match key.kind {
                    Kind::Exchange => json!({
                        "node": node, "exchange": name,
                        "upstream_exchange": u.exchange.clone().unwrap_or_else(|| name.clone()),
                        "type": "exchange",
                    }),
                    Kind::Queue => json!({
                        "node": node, "queue": name,
                        "upstream_queue": u.queue.clone().unwrap_or_else(|| name.clone()),
                        "consumer_tag": queue_link::consumer_tag(upstream, u),
                        "type": "queue",
                    }),
                };
                v["vhost"] = Value::from(vhost.as_str());
                v["upstream"] = Value::from(upstream.as_str());
                v["id"] = Value::from(link_id(key));
                v["status"] = Value::from(state);
                v["uri"] = Value::from(uri);
                v["timestamp"] = Value::from(r.status.timestamp());
                if state == "running" {
                    v["local_connection"] = Value::from(link::connection_name(upstream));
                }
                if let Some(e) = error {
                    v["error"] = Value::from(e);
                }
                v
            })
            .collect()
    }

    /// Restart the link with this status id; false if there is none.
    pub fn restart(
        &self,
        vhost: &str,
        id: &str,
        spec: impl Fn(&LinkKey) -> Option<LinkSpec>,
    ) -> bool {
        let key = self
            .lock()
            .keys()
            .find(|k| k.vhost == vhost && link_id(k) == id)
            .cloned();
        match key.and_then(|k| spec(&k)) {
            Some(s) => {
                self.start(s);
                true
            }
            None => false,
        }
    }
}

/// A link's task: a session (`link` or `queue_link`) until told to stop; after a failure, wait
/// `reconnect-delay` and start again (what was not acked upstream is redelivered).
async fn run(spec: LinkSpec, status: Arc<Status>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut attempt = 0usize;
    loop {
        let session = match spec.kind {
            Kind::Exchange => link::session(&spec, &status, attempt, &mut stopped).await,
            Kind::Queue => queue_link::session(&spec, &status, attempt, &mut stopped).await,
        };
        if let Err(why) = session {
            tracing::warn!(vhost = %spec.vhost, kind = ?spec.kind, name = %spec.name, upstream = %spec.upstream_name, error = %why, "federation link failed; reconnecting");
            status.set("error", Some(why));
        } else {
            return;
        }
        let delay = std::time::Duration::from_millis(spec.upstream.reconnect_delay_ms.max(100));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
        attempt += 1;
    }
}

/// A link's id in the status API: 8 hex digits of a hash of its identity (RabbitMQ hashes
/// the same identity with Erlang's phash2, which this does not reproduce).
fn link_id(k: &LinkKey) -> String {
    use sha2::Digest;
    let what = format!("{}\0{:?}\0{}\0{}", k.vhost, k.kind, k.name, k.upstream);
    let h = sha2::Sha256::digest(what.as_bytes());
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A URI without credentials or query, as RabbitMQ shows a link's.
pub fn safe_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_with_rabbitmqs_defaults_and_texts() {
        let u = Upstream::parse(
            &json!({"uri": "amqp://h", "max-hops": 2, "reconnect-delay": 0.5}),
            "u",
        )
        .expect("valid");
        assert_eq!(
            (u.prefetch, u.max_hops, u.reconnect_delay_ms),
            (1000, 2, 500)
        );
        assert_eq!(u.ack_mode, AckMode::OnConfirm);
        assert_eq!(
            Upstream::parse(&json!({"exchange": "x"}), "u").unwrap_err(),
            "Validation failed\n\nKey \"uri\" not found in u\n"
        );
        assert_eq!(
            Upstream::parse(&json!({"uri": "amqp://h", "max-hops": "2"}), "u").unwrap_err(),
            "Validation failed\n\nmax-hops should be a number, actually was \"2\"\n"
        );
        assert!(
            Upstream::parse(&json!({"uri": "amqp://h", "bogus": 1}), "u")
                .unwrap_err()
                .contains("Unrecognised terms")
        );
        assert!(
            Upstream::parse(&json!({"uri": "amqp://h", "ack-mode": "x"}), "u")
                .unwrap_err()
                .contains("ack-mode should be one of")
        );
        assert!(validate_set(&json!([{"upstream": "a", "max-hops": 3}]), "s").is_ok());
        assert!(validate_set(&json!([{"upstream": "a", "uri": "amqp://"}]), "s").is_err());
        assert!(validate_set(&json!([{"max-hops": 3}]), "s").is_err());
        assert_eq!(
            safe_uri("amqp://u:p@h:5672/v?heartbeat=5"),
            "amqp://h:5672/v"
        );
    }
}
