//! A virtual host: its exchanges, queues and bindings, and routing of published messages.
//!
//! Registries are `RwLock`ed maps read in short sections on the publish path; topology changes
//! are serialized by one `topology` mutex that publishing never takes.

mod definitions;
mod delayed;
pub mod policy;
mod publish;
mod routing;
mod topology;
mod trace;

use crate::args;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::message::Message;
use crate::queue::{Effects, Outbound, Outbox, Queue, QueueArgs, QueueConfig, Sink};
use crate::store::{Committer, Definition, Op, Store};
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

pub use policy::{ApplyTo, Policy};
pub use publish::Outcome;
pub use trace::{TraceOrigin, TRACE_EXCHANGE};

/// The pseudo-queue of direct reply-to.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

#[derive(Debug, Clone)]
pub struct ExchangeDecl {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone)]
pub struct QueueDecl {
    pub name: String,
    /// Named by the server (amq.gen-…), so exempt from the reserved-prefix check.
    pub server_named: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// Where a publish went.
#[derive(Debug, Default)]
pub struct Routed {
    pub queues: Vec<Arc<Queue>>,
    /// Delivered straight to a direct reply-to consumer.
    pub replied: bool,
    /// Held by a delayed exchange until this time (ms since the epoch).
    pub delayed: Option<(Arc<Exchange>, u64)>,
    /// The exchange published to (None: the default exchange), for its message_stats.
    pub exchange: Option<Arc<Exchange>>,
}

impl Routed {
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() && !self.replied && self.delayed.is_none()
    }
}

fn builtin_exchanges() -> HashMap<String, Arc<Exchange>> {
    [
        ("", ExchangeKind::Direct),
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
        (trace::TRACE_EXCHANGE, ExchangeKind::Topic),
    ]
    .into_iter()
    .map(|(n, k)| {
        // The firehose's exchange is internal: only the broker publishes to it.
        let internal = n == trace::TRACE_EXCHANGE;
        (
            n.to_string(),
            Exchange::new(n, k, true, false, internal, FieldTable::default()),
        )
    })
    .collect()
}

/// What an operator says about a vhost: description, tags, limits (`max-connections`,
/// `max-queues`; negative means none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VHostMeta {
    pub description: String,
    pub tags: Vec<String>,
    pub limits: std::collections::BTreeMap<String, i64>,
}

impl VHostMeta {
    /// A limit that applies (set and not negative).
    pub fn limit(&self, name: &str) -> Option<u64> {
        self.limits.get(name).and_then(|v| u64::try_from(*v).ok())
    }
}

#[derive(Debug)]
pub struct VHost {
    /// Handed (weakly) to queues as their `Sink`.
    me: Weak<VHost>,
    pub name: String,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Direct reply-to consumers: opaque key → (channel, connection inbox).
    reply_consumers: Mutex<HashMap<String, (u16, Outbox)>>,
    topology: Mutex<()>,
    meta: RwLock<VHostMeta>,
    /// Policies and operator policies, by name.
    policies: RwLock<Vec<Arc<Policy>>>,
    /// The broker's clock (TTL, x-expires, x-delay).
    pub clock: Arc<crate::clock::Clock>,
    /// message_stats of the default exchange, which routing never looks up.
    pub default_exchange_stats: crate::stats::SharedCounters,
    /// Firehose tracing on (`trace`).
    tracing: std::sync::atomic::AtomicBool,
    /// Set by `destroy`: the vhost was deleted and takes no more topology changes.
    deleted: std::sync::atomic::AtomicBool,
    /// Where durable definitions go (None: nothing is kept across restarts).
    store: Option<Arc<dyn Store>>,
    /// Where message writes go, once per connection read burst.
    pub committer: Option<Arc<Committer>>,
    /// How much of each durable queue stays in memory.
    paging: crate::queue::Paging,
    /// Where stream queues keep their logs (None: in memory).
    streams_dir: Option<std::path::PathBuf>,
    /// Where queues spill what has no record under memory pressure (None: nothing on disk).
    spill: Option<crate::queue::SpillTo>,
    /// queue.declare calls (not passive), queues created and deleted, since boot (Prometheus'
    /// rabbitmq_queues_declared_total and friends).
    pub queue_counts: [std::sync::atomic::AtomicU64; 3],
}

impl VHost {
    pub fn new(
        name: &str,
        store: Option<Arc<dyn Store>>,
        committer: Option<Arc<Committer>>,
        clock: Arc<crate::clock::Clock>,
        paging: crate::queue::Paging,
        streams_dir: Option<std::path::PathBuf>,
        spill: Option<crate::queue::SpillTo>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| VHost {
            clock,
            paging,
            streams_dir,
            spill,
            queue_counts: Default::default(),
            default_exchange_stats: Default::default(),
            me: me.clone(),
            name: name.to_string(),
            queues: RwLock::new(HashMap::new()),
            reply_consumers: Mutex::new(HashMap::new()),
            topology: Mutex::new(()),
            meta: RwLock::new(VHostMeta::default()),
            policies: RwLock::new(Vec::new()),
            deleted: Default::default(),
            tracing: Default::default(),
            store,
            committer,
            exchanges: RwLock::new(builtin_exchanges()),
        })
    }

    /// Where a queue pages: the store for its persistent messages (`stored`: a durable
    /// queue), scratch files for the rest.
    pub(crate) fn page_to(&self, stored: bool) -> Option<crate::queue::PageTo> {
        let store = self.store.clone().filter(|_| stored);
        (store.is_some() || self.spill.is_some()).then(|| crate::queue::PageTo {
            store,
            paging: self.paging,
            spill: self.spill.clone(),
        })
    }

    /// A stream queue's log: in its own directory under the data directory (named by a hash
    /// of vhost and queue, which any name fits), or in memory. None for other queue types.
    pub(crate) fn stream_log(
        &self,
        name: &str,
        args: &QueueArgs,
    ) -> std::io::Result<Option<Arc<crate::store::log::Log>>> {
        if args.queue_type != crate::queue::QueueType::Stream {
            return Ok(None);
        }
        use sha2::Digest;
        let dir = self.streams_dir.as_ref().map(|d| {
            let hash = sha2::Sha256::digest(format!("{}\0{name}", self.name).as_bytes());
            let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
            d.join(hex)
        });
        crate::store::log::Log::open(dir, crate::queue::stream::limits(args)).map(Some)
    }

    pub fn meta(&self) -> VHostMeta {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_meta(&self, meta: VHostMeta) {
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = meta;
    }

    pub(super) fn exchanges_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Exchange>>> {
        self.exchanges.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn queues_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Queue>>> {
        self.queues.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn serialize(&self) -> std::sync::MutexGuard<'_, ()> {
        self.topology.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A queue the connection may use (404 if missing, 405 if another's exclusive queue).
    pub fn queue_for(&self, name: &str, conn_id: u64) -> AmqpResult<Arc<Queue>> {
        let q = self
            .queue(name)
            .ok_or_else(|| AmqpError::no_queue(name, &self.name))?;
        q.check_access(conn_id)?;
        Ok(q)
    }

    pub fn exchange_for(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        self.exchange(name)
            .ok_or_else(|| AmqpError::no_exchange(name, &self.name))
    }

    /// Register a direct reply-to consumer; returns the opaque key for reply_to rewriting.
    pub fn add_reply_consumer(&self, channel: u16, outbox: Outbox) -> String {
        let key = crate::names::random_token(24);
        self.reply_consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (channel, outbox));
        key
    }

    pub fn remove_reply_consumer(&self, key: &str) {
        self.reply_consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    pub(super) fn sink(&self) -> Weak<dyn Sink> {
        let me: Weak<dyn Sink> = self.me.clone();
        me
    }
}
