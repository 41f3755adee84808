//! Storage: durable definitions and persistent messages, behind `trait Store`.
//!
//! Nothing writes to disk itself: queues, channels and the vhost append `Op`s, which reach the
//! one `Committer` once per connection read burst (topology changes at once, under the vhost's
//! topology lock). The committer thread puts every op in one order (see `committer` for the
//! ordering rules that make a late write harmless), gathers everything submitted while its
//! previous commit ran, cancels writes already undone, commits the batch durably in one go, and
//! then tells each submitter how far its submissions are durable, so confirms and declare-oks go
//! out only for what is on disk.

pub mod committer;
pub mod error;
pub mod files;
pub mod log;
pub mod memory;
pub mod record;
pub mod sled;

pub use committer::{Committer, DurableSink, Notify, Op, Submission, Submitter};
pub use error::{StoreError, StoreErrorKind, StoreResult};

use amq_protocol::types::FieldTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stored index of one durable queue (or delayed exchange): its name in storage, `vhost`
/// NUL `name`, and which incarnation it is. Maps compare and sort keys by name; the committer
/// also tells incarnations apart (`same`), so that a write still on its way for a deleted
/// queue is dropped instead of landing in a namesake declared after it.
#[derive(Clone)]
pub struct QueueKey(Arc<KeyInner>);

struct KeyInner {
    name: Box<str>,
    /// Set by the committer thread when it takes this incarnation's DropQueue.
    dropped: AtomicBool,
}

impl QueueKey {
    pub fn new(name: impl Into<Box<str>>) -> Self {
        QueueKey(Arc::new(KeyInner {
            name: name.into(),
            dropped: AtomicBool::new(false),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    /// The same incarnation (not merely the same name).
    pub fn same(&self, other: &QueueKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn is_dropped(&self) -> bool {
        self.0.dropped.load(Ordering::Relaxed)
    }

    fn mark_dropped(&self) {
        self.0.dropped.store(true, Ordering::Relaxed);
    }
}

impl From<String> for QueueKey {
    fn from(s: String) -> Self {
        QueueKey::new(s)
    }
}

impl From<&str> for QueueKey {
    fn from(s: &str) -> Self {
        QueueKey::new(s)
    }
}

impl std::fmt::Debug for QueueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq for QueueKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for QueueKey {}

impl PartialOrd for QueueKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QueueKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for QueueKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

pub fn queue_key(vhost: &str, name: &str) -> QueueKey {
    QueueKey::new(format!("{vhost}\0{name}"))
}

/// One durable topology entity, as stored and as replayed at boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Definition {
    Exchange {
        vhost: String,
        name: String,
        kind: String,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    },
    Queue {
        vhost: String,
        name: String,
        auto_delete: bool,
        arguments: FieldTable,
    },
    Binding {
        vhost: String,
        source: String,
        /// "queue" or "exchange".
        destination_kind: String,
        destination: String,
        routing_key: String,
        arguments: FieldTable,
    },
    VHost {
        name: String,
        description: String,
        tags: Vec<String>,
        /// RabbitMQ's vhost limits (`max-connections`, `max-queues`).
        limits: BTreeMap<String, i64>,
    },
    User {
        name: String,
        /// base64, as in RabbitMQ's definitions (empty: no password).
        password_hash: String,
        hashing_algorithm: String,
        tags: Vec<String>,
        limits: BTreeMap<String, i64>,
    },
    Permission {
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    TopicPermission {
        vhost: String,
        user: String,
        exchange: String,
        write: String,
        read: String,
    },
    Policy {
        vhost: String,
        name: String,
        pattern: String,
        apply_to: String,
        priority: i64,
        /// The definition as JSON text.
        definition: String,
        /// An operator policy.
        operator: bool,
    },
    /// A global runtime parameter (cluster_name, internal_cluster_id, ...): JSON text.
    GlobalParameter { name: String, value: String },
    /// A vhost's runtime parameter of a component Warren runs (`shovel`): JSON text.
    Parameter {
        component: String,
        vhost: String,
        name: String,
        value: String,
    },
    /// The default user and vhost were created once; a directory that has this is not fresh
    /// (deleting guest stays deleted across restarts).
    Seeded,
}

impl Definition {
    /// The vhost an exchange, queue or binding lives in.
    pub fn topology_vhost(&self) -> Option<&str> {
        match self {
            Definition::Exchange { vhost, .. }
            | Definition::Queue { vhost, .. }
            | Definition::Binding { vhost, .. } => Some(vhost),
            _ => None,
        }
    }

    /// Storage key; sorts access control and vhosts before exchanges before queues before
    /// bindings, which is also replay order.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::new();
        let mut push = |s: &str| {
            k.extend_from_slice(s.as_bytes());
            k.push(0);
        };
        match self {
            Definition::Exchange { vhost, name, .. } => {
                push("1x");
                push(vhost);
                push(name);
            }
            Definition::Queue { vhost, name, .. } => {
                push("2q");
                push(vhost);
                push(name);
            }
            Definition::Binding {
                vhost,
                source,
                destination_kind,
                destination,
                routing_key,
                arguments,
            } => {
                push("3b");
                push(vhost);
                push(source);
                push(destination_kind);
                push(destination);
                push(routing_key);
                push(&serde_json::to_string(arguments).unwrap_or_default());
            }
            Definition::Seeded => push("0a"),
            Definition::GlobalParameter { name, .. } => {
                push("0g");
                push(name);
            }
            Definition::Parameter {
                component,
                vhost,
                name,
                ..
            } => {
                // After vhosts ("0v"): replay checks that the parameter's vhost exists.
                push("0z");
                push(component);
                push(vhost);
                push(name);
            }
            Definition::User { name, .. } => {
                push("0u");
                push(name);
            }
            Definition::VHost { name, .. } => {
                push("0v");
                push(name);
            }
            Definition::Permission { vhost, user, .. } => {
                push("0w");
                push(vhost);
                push(user);
            }
            Definition::Policy {
                vhost,
                name,
                operator,
                ..
            } => {
                push("0x");
                push(if *operator { "o" } else { "p" });
                push(vhost);
                push(name);
            }
            Definition::TopicPermission {
                vhost,
                user,
                exchange,
                ..
            } => {
                push("0y");
                push(vhost);
                push(user);
                push(exchange);
            }
        }
        k
    }
}

/// What a queue needs to know of a stored message without reading its record, kept in each
/// index entry beside the message id: its body size, priority, and whether it carries a
/// per-message expiration. At boot it lets a deep queue page without reading its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageMeta {
    pub size: u32,
    pub priority: u8,
    pub expiring: bool,
}

impl MessageMeta {
    pub fn of(m: &crate::message::Message) -> Self {
        MessageMeta {
            size: u32::try_from(m.body.len()).unwrap_or(u32::MAX),
            priority: m.priority(),
            expiring: m.expiration_ms.is_some(),
        }
    }

    /// The index value: the id, then (when known) the metadata, then the entry's expiry (ms
    /// since the epoch on the broker's clock) if it has one. Entries written before the
    /// metadata existed are the id alone.
    pub fn encode(id: u64, meta: Option<&MessageMeta>, expires_at: Option<u64>) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        if let Some(m) = meta {
            v.extend_from_slice(&m.size.to_be_bytes());
            v.push(m.priority);
            v.push(u8::from(m.expiring));
            if let Some(t) = expires_at {
                v.extend_from_slice(&t.to_be_bytes());
            }
        }
        v
    }

    /// An index value back as an entry at `seq`; None if damaged.
    pub fn decode(seq: u64, v: &[u8]) -> Option<Entry> {
        let id = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let meta = || {
            Some(MessageMeta {
                size: u32::from_be_bytes(v.get(8..12)?.try_into().ok()?),
                priority: *v.get(12)?,
                expiring: *v.get(13)? != 0,
            })
        };
        let (meta, expires_at) = match v.len() {
            8 => (None, None),
            14 => (meta(), None),
            22 => (
                meta(),
                Some(u64::from_be_bytes(v.get(14..22)?.try_into().ok()?)),
            ),
            _ => return None,
        };
        if v.len() > 8 && meta.is_none() {
            return None;
        }
        Some(Entry {
            seq,
            id,
            meta,
            expires_at,
            loc: 0,
        })
    }
}

/// One recovered index entry of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub id: u64,
    pub meta: Option<MessageMeta>,
    /// When the message expires in this queue (entries with metadata only).
    pub expires_at: Option<u64>,
    /// Where the store keeps the entry (its own business; 0 for stores that find records by
    /// id).
    pub loc: u64,
}

/// What a commit writes, already stripped of writes that were undone before they happened.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Definitions to write (Some) or delete (None), by `Definition::key`; the last op wins.
    pub definitions: BTreeMap<Vec<u8>, Option<Definition>>,
    /// Message records (see `record`), by message id.
    pub messages: BTreeMap<u64, Vec<u8>>,
    /// Records of messages indexed again in this batch whose record an earlier batch wrote
    /// (a requeue to the back): a store that keeps records with their entries needs them.
    pub rewrites: BTreeMap<u64, Vec<u8>>,
    /// Queue index entries: (queue, position) → message id.
    pub index_puts: BTreeMap<(QueueKey, u64), u64>,
    /// What index entries record beside the id, by message id (entries without it are the id
    /// alone).
    pub meta: BTreeMap<u64, MessageMeta>,
    /// The expiry of index entries that have one.
    pub expiry: BTreeMap<(QueueKey, u64), u64>,
    pub index_removes: Vec<(QueueKey, u64)>,
    /// Every index entry of a queue with a position in `from..=to` goes (a purge of a
    /// paged-out stretch, sent only to stores that do not share records).
    pub range_removes: Vec<(QueueKey, u64, u64)>,
    pub message_deletes: Vec<u64>,
    pub dropped_queues: Vec<QueueKey>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.definitions.is_empty()
            && self.index_puts.is_empty()
            && self.index_removes.is_empty()
            && self.range_removes.is_empty()
            && self.message_deletes.is_empty()
            && self.dropped_queues.is_empty()
    }
}

/// What a store holds, as loaded at boot: definitions, every queue's index, and the records
/// of the entries that have no metadata (older ones); the rest are read when wanted
/// (`read_record`), so boot does not hold a deep backlog in memory.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub definitions: Vec<Definition>,
    /// Per queue, its entries in position order (each with a record on disk).
    pub queues: BTreeMap<QueueKey, Vec<Entry>>,
    pub messages: BTreeMap<u64, Vec<u8>>,
    /// The lists in `queues` are empty: read each queue's entries with
    /// `Store::replay_entries`.
    pub lazy: bool,
}

pub trait Store: Send + Sync + std::fmt::Debug {
    /// Write the batch; durable when this returns. Order matters for crash safety: dropped
    /// queues first, then definitions, message records before the index entries that point at
    /// them, index removals before the records. A failed commit may have written part of the
    /// batch; the committer retries the whole of it, so each step must be idempotent.
    fn commit(&self, batch: &Batch) -> StoreResult<()>;
    /// Load definitions and indexes (see `Recovered`), dropping message records no index entry
    /// points at and index entries whose record is gone.
    fn recover(&self) -> StoreResult<Recovered>;
    /// Let go of the files (an embedded broker that stopped, so that another can open the
    /// directory in the same process); commits after it fail with `StoreErrorKind::Closed`.
    fn close(&self) {}
    /// Up to `limit` index entries of queue `q` with positions in `from..=to`, in position
    /// order (a deep queue reading back what it paged out).
    fn index_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreResult<Vec<Entry>>;
    /// The record of message `id` (None: there is none).
    fn read_record(&self, id: u64) -> StoreResult<Option<Vec<u8>>>;
    /// The record of an entry of queue `q` (as `index_range` or `recover` gave it).
    fn read_entry(&self, q: &QueueKey, e: &Entry) -> StoreResult<Option<Vec<u8>>> {
        let _ = q;
        self.read_record(e.id)
    }
    /// `index_range` with each entry's record (a queue reading back a batch), stopping early
    /// once the records add up to `max_bytes` (at least one is returned).
    fn read_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: u64,
    ) -> StoreResult<Vec<(Entry, Option<Vec<u8>>)>> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in self.index_range(q, from, to, limit)? {
            if bytes >= max_bytes && !out.is_empty() {
                break;
            }
            let record = self.read_entry(q, &e)?;
            bytes += record.as_ref().map_or(0, |r| r.len() as u64);
            out.push((e, record));
        }
        Ok(out)
    }
    /// Whether several queues' entries may share one record (boot then counts the holders of
    /// each id). A store that writes a record with each entry says no.
    fn shares_records(&self) -> bool {
        true
    }
    /// For a store whose `recover` leaves queues' entries on disk (`Recovered::lazy`): hand
    /// `q`'s entries to `f` in position order, a batch at a time, so boot never holds a deep
    /// queue's whole index.
    fn replay_entries(
        &self,
        q: &QueueKey,
        f: &mut dyn FnMut(&[Entry]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let _ = (q, f);
        Ok(())
    }
}
