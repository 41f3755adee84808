//! Exchanges, their bindings, and routing by exchange type.

pub mod consistent_hash;
pub mod dedup;
pub mod delayed;
pub mod federation_upstream;
pub mod headers;
pub mod topic;

use crate::queue::Queue;
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use topic::TopicTrie;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// x-consistent-hash: one destination per message, by hash (see `consistent_hash`).
    ConsistentHash,
    /// x-message-deduplication: a fanout that drops repeats (see `dedup`).
    Deduplication,
    /// x-federation-upstream: a fanout that drops what has crossed enough links (see
    /// `federation_upstream`).
    FederationUpstream,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            "x-consistent-hash" => Some(Self::ConsistentHash),
            dedup::TYPE => Some(Self::Deduplication),
            federation_upstream::TYPE => Some(Self::FederationUpstream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
            Self::ConsistentHash => "x-consistent-hash",
            Self::Deduplication => dedup::TYPE,
            Self::FederationUpstream => federation_upstream::TYPE,
        }
    }
}

/// The delayed-message exchange type (RabbitMQ plugin name).
pub const DELAYED_TYPE: &str = "x-delayed-message";

/// Resolve a declared type and its arguments: (routing kind, delayed?). None if unknown.
pub fn resolve_type(kind: &str, arguments: &FieldTable) -> Option<(ExchangeKind, bool)> {
    if kind == DELAYED_TYPE {
        let inner = crate::args::get(arguments, "x-delayed-type").and_then(crate::args::as_str)?;
        return ExchangeKind::parse(&inner).map(|k| (k, true));
    }
    ExchangeKind::parse(kind).map(|k| (k, false))
}

#[derive(Debug, Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => q.name(),
            Destination::Exchange(e) => e,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Destination::Queue(_))
    }

    fn same(&self, other: &Destination) -> bool {
        self.is_queue() == other.is_queue() && self.name() == other.name()
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, other: &Binding) -> bool {
        self.destination.same(&other.destination)
            && self.routing_key == other.routing_key
            && self.arguments == other.arguments
    }
}

#[derive(Debug, Default)]
struct Bindings {
    /// Direct: routing key → bindings.
    direct: HashMap<String, Vec<Binding>>,
    topic: TopicTrie<Binding>,
    /// Fanout and headers keep a plain list.
    list: Vec<Binding>,
    count: usize,
}

#[derive(Debug)]
pub struct Exchange {
    pub name: String,
    /// How bindings route (for x-delayed-message: its x-delayed-type).
    pub kind: ExchangeKind,
    /// Set for x-delayed-message exchanges: the messages they hold.
    pub delayed: Option<delayed::Delayed>,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    bindings: RwLock<Bindings>,
    /// The policy that applies (its name) and the alternate exchange it names, if any.
    policy: RwLock<(Option<String>, Option<String>)>,
    /// publish_in / publish_out.
    pub stats: crate::stats::SharedCounters,
    /// x-consistent-hash: what messages are hashed on (its arguments, checked at declare).
    hash_on: consistent_hash::HashOn,
    /// x-message-deduplication: its settings and the values it has seen.
    dedup: Option<(dedup::Settings, dedup::Cache)>,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Arc<Self> {
        let flags = (durable, auto_delete, internal);
        Exchange::build(name, kind, None, flags, arguments)
    }

    /// An x-delayed-message exchange routing as `kind` once messages are due.
    pub fn new_delayed(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Arc<Self> {
        let flags = (durable, auto_delete, internal);
        Exchange::build(
            name,
            kind,
            Some(delayed::Delayed::default()),
            flags,
            arguments,
        )
    }

    fn build(
        name: &str,
        kind: ExchangeKind,
        delayed: Option<delayed::Delayed>,
        (durable, auto_delete, internal): (bool, bool, bool),
        arguments: FieldTable,
    ) -> Arc<Self> {
        Arc::new(Exchange {
            name: name.to_string(),
            kind,
            delayed,
            durable,
            auto_delete,
            internal,
            bindings: RwLock::new(Bindings::default()),
            policy: RwLock::new((None, None)),
            stats: Default::default(),
            dedup: (kind == ExchangeKind::Deduplication).then(|| {
                // Checked at declare; a stored one was checked when it was declared.
                let s = dedup::settings(&arguments).unwrap_or(dedup::Settings {
                    size: 1_000,
                    ttl_ms: None,
                });
                (s, dedup::Cache::default())
            }),
            hash_on: if kind == ExchangeKind::ConsistentHash {
                consistent_hash::hash_on(&arguments).unwrap_or(consistent_hash::HashOn::RoutingKey)
            } else {
                consistent_hash::HashOn::RoutingKey
            },
            arguments,
        })
    }

    /// The type as declared.
    pub fn type_name(&self) -> &'static str {
        if self.delayed.is_some() {
            DELAYED_TYPE
        } else {
            self.kind.as_str()
        }
    }

    /// The alternate exchange: the `alternate-exchange` argument, else a policy's.
    pub fn alternate(&self) -> Option<String> {
        use amq_protocol::types::AMQPValue;
        match self.arguments.inner().get("alternate-exchange") {
            Some(AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
            _ => self
                .policy
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .clone(),
        }
    }

    /// A policy (by name) now applies, with this alternate exchange; or none does.
    pub fn apply_policy(&self, name: Option<String>, alternate: Option<String>) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = (name, alternate);
    }

    /// The name of the policy that applies.
    pub fn policy_name(&self) -> Option<String> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(|p| p.into_inner())
    }

    /// An x-message-deduplication exchange has seen this message's value within its TTL (and
    /// remembers it now if not); false for every other exchange.
    pub fn is_duplicate(&self, message: &crate::message::Message, now: u64) -> bool {
        self.dedup
            .as_ref()
            .is_some_and(|(s, c)| c.is_duplicate(*s, message, now))
    }

    pub fn binding_count(&self) -> usize {
        self.read().count
    }

    /// Add a binding; false if an identical one exists (binding is idempotent).
    pub fn bind(&self, binding: Binding) -> bool {
        let mut b = self.write();
        let exists = match self.kind {
            ExchangeKind::Direct => b
                .direct
                .get(&binding.routing_key)
                .is_some_and(|v| v.iter().any(|x| x.same(&binding))),
            ExchangeKind::Topic => {
                let mut found = false;
                b.topic
                    .matches_exact(&binding.routing_key, &mut |x: &Binding| {
                        found |= x.same(&binding)
                    });
                found
            }
            _ => b.list.iter().any(|x| x.same(&binding)),
        };
        if exists {
            return false;
        }
        b.count += 1;
        match self.kind {
            ExchangeKind::Direct => b
                .direct
                .entry(binding.routing_key.clone())
                .or_default()
                .push(binding),
            ExchangeKind::Topic => {
                let key = binding.routing_key.clone();
                b.topic.insert(&key, binding)
            }
            _ => b.list.push(binding),
        }
        true
    }

    /// Remove one binding; true if it existed.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut b = self.write();
        let removed = match self.kind {
            ExchangeKind::Direct => {
                let mut n = 0;
                if let Some(v) = b.direct.get_mut(&binding.routing_key) {
                    let before = v.len();
                    v.retain(|x| !x.same(binding));
                    n = before - v.len();
                    if v.is_empty() {
                        b.direct.remove(&binding.routing_key);
                    }
                }
                n
            }
            ExchangeKind::Topic => b.topic.remove(&binding.routing_key, |x| x.same(binding)),
            _ => {
                let before = b.list.len();
                b.list.retain(|x| !x.same(binding));
                before - b.list.len()
            }
        };
        b.count -= removed;
        removed > 0
    }

    /// Remove every binding to `dest` (a deleted queue or exchange); returns them.
    pub fn remove_destination(&self, dest: &Destination) -> Vec<Binding> {
        let mut b = self.write();
        let mut removed = Vec::new();
        let mut take = |v: &mut Vec<Binding>| {
            let (gone, keep): (Vec<Binding>, Vec<Binding>) = std::mem::take(v)
                .into_iter()
                .partition(|x| x.destination.same(dest));
            *v = keep;
            removed.extend(gone);
        };
        match self.kind {
            ExchangeKind::Direct => {
                b.direct.retain(|_, v| {
                    take(v);
                    !v.is_empty()
                });
            }
            ExchangeKind::Topic => {
                let gone: Vec<Binding> = b
                    .all_topic()
                    .into_iter()
                    .filter(|x| x.destination.same(dest))
                    .collect();
                for x in &gone {
                    b.topic.remove(&x.routing_key, |y| y.same(x));
                }
                removed.extend(gone);
            }
            _ => take(&mut b.list),
        }
        b.count -= removed.len();
        removed
    }

    /// Snapshot of every binding with this exchange as source.
    pub fn bindings(&self) -> Vec<Binding> {
        let b = self.read();
        match self.kind {
            ExchangeKind::Direct => b.direct.values().flatten().cloned().collect(),
            ExchangeKind::Topic => b.all_topic(),
            _ => b.list.clone(),
        }
    }

    /// Call `f` for each destination the message routes to (possibly more than once).
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        message: &crate::message::Message,
        f: &mut dyn FnMut(&Destination),
    ) {
        let b = self.read();
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(v) = b.direct.get(routing_key) {
                    v.iter().for_each(|x| f(&x.destination));
                }
            }
            ExchangeKind::Fanout | ExchangeKind::Deduplication => {
                b.list.iter().for_each(|x| f(&x.destination))
            }
            ExchangeKind::FederationUpstream => {
                if federation_upstream::forwards(&self.arguments, headers) {
                    b.list.iter().for_each(|x| f(&x.destination))
                }
            }
            ExchangeKind::Topic => b.topic.matches(routing_key, &mut |x| f(&x.destination)),
            ExchangeKind::Headers => b
                .list
                .iter()
                .filter(|x| headers::matches(&x.arguments, headers))
                .for_each(|x| f(&x.destination)),
            ExchangeKind::ConsistentHash => {
                if let Some(x) = consistent_hash::pick(&self.hash_on, &b.list, routing_key, message)
                {
                    f(&x.destination)
                }
            }
        }
    }
}

impl Bindings {
    fn all_topic(&self) -> Vec<Binding> {
        let mut out = Vec::new();
        self.topic.for_each(&mut |x: &Binding| out.push(x.clone()));
        out
    }
}
