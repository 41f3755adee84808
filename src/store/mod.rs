//! Storage: durable definitions and persistent messages, behind `trait Store`.
//!
//! Queues and channels do not write to disk themselves: they append `Op`s, which the connection
//! hands to the one `Committer` once per read burst. The committer thread gathers everything
//! submitted while its previous flush ran, cancels writes already undone (a message acked before
//! it was written is never written, as RabbitMQ does), commits the batch durably in one go, and
//! then tells each connection how far its submissions are durable, so confirms go out only for
//! what is on disk.

mod committer;
pub mod memory;
pub mod record;
pub mod sled;

pub use committer::{Committer, Op, Submission};

use amq_protocol::types::FieldTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// Name of a durable queue in storage: `vhost` NUL `name`.
pub type QueueKey = std::sync::Arc<str>;

pub fn queue_key(vhost: &str, name: &str) -> QueueKey {
    format!("{vhost}\0{name}").into()
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
}

impl Definition {
    /// Storage key; sorts exchanges before queues before bindings, which is also replay order.
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
        }
        k
    }
}

/// What a commit writes, already stripped of writes that were undone before they happened.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Message records (see `record`), by message id.
    pub messages: BTreeMap<u64, Vec<u8>>,
    /// Queue index entries: (queue, position) → message id.
    pub index_puts: BTreeMap<(QueueKey, u64), u64>,
    pub index_removes: Vec<(QueueKey, u64)>,
    pub message_deletes: Vec<u64>,
    pub dropped_queues: Vec<QueueKey>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.index_puts.is_empty()
            && self.index_removes.is_empty()
            && self.message_deletes.is_empty()
            && self.dropped_queues.is_empty()
    }
}

/// Everything a store holds, as loaded at boot.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub definitions: Vec<Definition>,
    /// Per queue, its (position, message id) entries in position order.
    pub queues: BTreeMap<QueueKey, Vec<(u64, u64)>>,
    pub messages: BTreeMap<u64, Vec<u8>>,
}

pub trait Store: Send + Sync + std::fmt::Debug {
    fn put_definition(&self, def: &Definition) -> io::Result<()>;
    fn delete_definition(&self, def: &Definition) -> io::Result<()>;
    /// Write the batch; durable when this returns. Order matters for crash safety: message
    /// records before the index entries that point at them, index removals before the records.
    fn commit(&self, batch: &Batch) -> io::Result<()>;
    /// Load everything, dropping message records no index entry points at.
    fn recover(&self) -> io::Result<Recovered>;
}
