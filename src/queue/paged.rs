//! Paging: the part of a deep durable queue that lives only on disk.
//!
//! A persistent message in a durable queue is in the store already (its record and this
//! queue's index entry), so keeping it in memory as well only costs RAM. Once a queue holds more
//! than its window (`Paging`), the messages between the head (next to deliver) and the tail (just
//! published) leave memory: a `Region` per priority level remembers only the range of positions
//! they occupy, how many there are and their body bytes, whatever their number. When the head
//! runs low, the next batch is read back from the store in position order (the index range, then
//! each record).
//!
//! What may leave memory: a message whose record is durable (`store::committer::DURABLE`: a read
//! finds it), that no other queue holds (`store_refs` 1: a message read back is a new `Message`,
//! and reference counts must stay in one place; with the file store, which writes a copy of the
//! record with each queue's entry, shared ones too) and that was not returned unacknowledged before
//! (the flags that would be lost). Its expiry, if any, is in its index entry and comes back with
//! it (TTL is checked at the head). Anything else stops paging at that point until it has left
//! the tail, unless it may spill (`spill`).

use super::QueuedMessage;
use crate::message::Message;
use crate::store::{committer::DURABLE, QueueKey, Store};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

/// How much of one queue stays in memory (per priority level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Ready messages kept in memory before the middle of the queue pages out.
    pub ram_messages: usize,
    /// Body bytes kept in memory before the middle of the queue pages out.
    pub ram_bytes: u64,
    /// The queue asked for this window (lazy mode, x-max-in-memory-*): what has no record
    /// spills to scratch files even without memory pressure (`spill`).
    pub explicit: bool,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            ram_messages: 8192,
            ram_bytes: 16 * 1024 * 1024,
            explicit: false,
        }
    }
}

impl Paging {
    /// The window of a queue with `args` (its in-memory limits, or lazy mode), this being the
    /// broker's default.
    pub fn for_args(&self, args: &super::args::QueueArgs) -> Paging {
        Paging {
            ram_messages: args.ram_messages.map_or(self.ram_messages, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            ram_bytes: args.ram_bytes.unwrap_or(self.ram_bytes),
            explicit: args.ram_messages.is_some() || args.ram_bytes.is_some(),
        }
    }

    /// The head keeps about half the window; the tail a quarter before it pages out.
    pub(super) fn head_messages(&self) -> usize {
        (self.ram_messages / 2).max(1)
    }

    pub(super) fn tail_messages(&self) -> usize {
        (self.ram_messages / 4).max(1)
    }

    /// Body bytes read back at once.
    pub(super) fn read_bytes(&self) -> u64 {
        (self.ram_bytes / 4).max(1)
    }

    /// Messages read back at once (one sequential pass over the index).
    pub(super) fn batch(&self) -> usize {
        (self.ram_messages / 4).clamp(1, 4096)
    }

    /// The head is refilled when it falls below this.
    pub(super) fn low_water(&self) -> usize {
        (self.ram_messages / 8).max(1)
    }
}

/// Where queues page to, and their window (a queue adds its own index key).
#[derive(Debug, Clone)]
pub struct PageTo {
    /// The store, for a queue whose persistent messages are stored (durable).
    pub store: Option<Arc<dyn Store>>,
    pub paging: Paging,
    /// Scratch files for what has no record (None: nothing on disk).
    pub spill: Option<super::spill::SpillTo>,
}

/// Where a queue pages its persistent messages to: its store and its index there.
#[derive(Debug, Clone)]
pub struct Pager {
    pub store: Arc<dyn Store>,
    /// The store keeps a record with each queue's entry (`Store::shares_records` is false):
    /// a message other queues hold too may page out, since what this queue reads back is its
    /// own copy.
    pub own_records: bool,
    pub key: QueueKey,
}

/// The paged-out messages of one priority level: every index entry of this queue with a
/// position in `first..=last` that belongs to this level.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Region {
    pub first: u64,
    pub last: u64,
    pub count: usize,
    pub bytes: u64,
}

impl Region {
    pub fn add(&mut self, seq: u64, bytes: u64) {
        if self.count == 0 {
            self.first = seq;
        }
        self.last = seq;
        self.count += 1;
        self.bytes += bytes;
    }
}

/// With several priority levels, one level's region shares its range of positions with the
/// others': this says which entries are its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct LevelFilter {
    pub level: usize,
    pub levels: usize,
}

impl LevelFilter {
    fn keeps(&self, m: &Message) -> bool {
        usize::from(m.priority()).min(self.levels - 1) == self.level
    }
}

/// Whether `e` may leave memory (see the module's comment). `restored_below`: positions below
/// it were restored at boot, and a read-back marks them redelivered again. `own_records`: see
/// `Pager::own_records`.
pub(super) fn pageable(e: &QueuedMessage, restored_below: u64, own_records: bool) -> bool {
    let m = &e.message;
    m.store_id != 0
        && m.store_state.load(Ordering::Relaxed) == DURABLE
        && (own_records || m.store_refs.load(Ordering::Relaxed) == 1)
        && e.delivery_count == 0
        && e.redelivered == (e.seq < restored_below)
}

/// What one read of a region brought back.
pub(super) struct ReadBack {
    pub messages: Vec<QueuedMessage>,
    /// The position after the last entry looked at.
    pub next: u64,
    /// Entries whose record is gone or damaged.
    pub missing: usize,
}

impl Pager {
    /// Read up to `want` messages of `region` back, in order, starting at its first position.
    /// `level`: with several priority levels, entries of other levels in the range are skipped.
    /// Entries whose record is gone or damaged are counted, not returned.
    pub(super) fn read(
        &self,
        region: &Region,
        want: usize,
        level: Option<LevelFilter>,
        restored_below: u64,
        cap: u64,
    ) -> crate::store::StoreResult<ReadBack> {
        let mut out = Vec::new();
        let mut missing = 0;
        let mut from = region.first;
        // Bounded by bytes (`cap`) too: a batch of large messages must not fill memory.
        let mut bytes = 0u64;
        while out.len() < want && bytes < cap && from <= region.last {
            let entries = self.store.read_range(
                &self.key,
                from,
                region.last,
                want - out.len(),
                cap - bytes,
            )?;
            let Some(last_seen) = entries.last().map(|(e, _)| e.seq) else {
                from = region.last.saturating_add(1);
                break;
            };
            for (e, record) in entries {
                bytes += record.as_ref().map_or(0, |r| r.len() as u64);
                let seq = e.seq;
                let Some(m) = self.decode(e.id, record) else {
                    missing += 1;
                    continue;
                };
                if level.is_some_and(|f| !f.keeps(&m)) {
                    continue;
                }
                out.push(QueuedMessage {
                    seq,
                    message: Arc::new(m),
                    redelivered: seq < restored_below,
                    expires_at: e.expires_at,
                    delivery_count: 0,
                });
            }
            from = last_seen.saturating_add(1);
        }
        Ok(ReadBack {
            messages: out,
            next: from,
            missing,
        })
    }

    /// A message from its record: held by this queue alone, durable.
    fn load(&self, e: &crate::store::Entry) -> crate::store::StoreResult<Option<Message>> {
        Ok(self.decode(e.id, self.store.read_entry(&self.key, e)?))
    }

    fn decode(&self, id: u64, record: Option<Vec<u8>>) -> Option<Message> {
        let Some(data) = record else {
            tracing::error!(id, queue = ?self.key, "paged message has no record; dropped");
            return None;
        };
        let decoded = crate::store::record::decode(&data)
            .and_then(|d| Message::from_raw(d.exchange, d.routing_key, &d.raw_properties, d.body));
        let Some(mut m) = decoded else {
            tracing::error!(id, queue = ?self.key, "paged message is damaged; dropped");
            return None;
        };
        m.store_id = id;
        m.store_refs = AtomicU32::new(1);
        m.store_state = AtomicU8::new(DURABLE);
        Some(m)
    }
}

impl Pager {
    /// Every entry (position, id) of `region`, for a purge or deletion. With several levels
    /// each record is read to tell its level; otherwise only the index is.
    pub(super) fn entries(
        &self,
        region: &Region,
        level: Option<LevelFilter>,
    ) -> crate::store::StoreResult<Vec<(u64, u64)>> {
        let mut out = Vec::with_capacity(region.count);
        let mut from = region.first;
        while from <= region.last {
            let entries = self.store.index_range(&self.key, from, region.last, 4096)?;
            let Some(last_seen) = entries.last().map(|e| e.seq) else {
                break;
            };
            for e in entries {
                if let Some(f) = level {
                    match self.load(&e)? {
                        Some(m) if !f.keeps(&m) => continue,
                        _ => {}
                    }
                }
                out.push((e.seq, e.id));
            }
            from = last_seen.saturating_add(1);
        }
        Ok(out)
    }
}
