//! `MemoryStore`: the same contract as the sled store, kept in memory. Used for `--in-memory`
//! runs and embedded test brokers, and as the model the sled store is checked against.

use super::{Batch, Definition, Entry, MessageMeta, QueueKey, Recovered, Store};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

type Indexed = (u64, Option<MessageMeta>, Option<u64>);

#[derive(Debug, Default)]
struct Inner {
    definitions: BTreeMap<Vec<u8>, Definition>,
    /// Per queue: position → (message id, metadata, expiry), as the sled store keeps them.
    queues: BTreeMap<QueueKey, BTreeMap<u64, Indexed>>,
    messages: BTreeMap<u64, Vec<u8>>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn commit(&self, batch: &Batch) -> super::StoreResult<()> {
        let mut s = self.lock();
        for q in &batch.dropped_queues {
            s.queues.remove(q);
        }
        for (key, def) in &batch.definitions {
            match def {
                Some(def) => s.definitions.insert(key.clone(), def.clone()),
                None => s.definitions.remove(key),
            };
        }
        for (id, data) in &batch.messages {
            s.messages.insert(*id, data.clone());
        }
        for ((q, seq), id) in &batch.index_puts {
            let meta = batch.meta.get(id).copied();
            // As stored: an expiry only beside metadata.
            let expiry = meta.and(batch.expiry.get(&(q.clone(), *seq)).copied());
            s.queues
                .entry(q.clone())
                .or_default()
                .insert(*seq, (*id, meta, expiry));
        }
        for (q, seq) in &batch.index_removes {
            if let Some(entries) = s.queues.get_mut(q) {
                entries.remove(seq);
            }
        }
        for (q, from, to) in &batch.range_removes {
            if let Some(entries) = s.queues.get_mut(q) {
                entries.retain(|seq, _| seq < from || seq > to);
            }
        }
        for id in &batch.message_deletes {
            s.messages.remove(id);
        }
        Ok(())
    }

    fn index_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> super::StoreResult<Vec<Entry>> {
        let s = self.lock();
        Ok(s.queues.get(q).map_or_else(Vec::new, |e| {
            e.range(from..=to)
                .take(limit)
                .map(|(seq, (id, meta, expires_at))| Entry {
                    seq: *seq,
                    id: *id,
                    meta: *meta,
                    expires_at: *expires_at,
                    loc: 0,
                })
                .collect()
        }))
    }

    fn read_record(&self, id: u64) -> super::StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().messages.get(&id).cloned())
    }

    fn recover(&self) -> super::StoreResult<Recovered> {
        let mut s = self.lock();
        let referenced: std::collections::HashSet<u64> = s
            .queues
            .values()
            .flat_map(|e| e.values().map(|(id, _, _)| *id))
            .collect();
        s.messages.retain(|id, _| referenced.contains(id));
        let Inner {
            queues, messages, ..
        } = &mut *s;
        for entries in queues.values_mut() {
            entries.retain(|_, (id, _, _)| messages.contains_key(id));
        }
        queues.retain(|_, e| !e.is_empty());
        let mut loaded = BTreeMap::new();
        // QueueKey's interior flag is not part of its order (clippy::mutable_key_type).
        #[allow(clippy::mutable_key_type)]
        let queues: BTreeMap<QueueKey, Vec<Entry>> = queues
            .iter()
            .map(|(q, e)| {
                let entries = e
                    .iter()
                    .map(|(seq, (id, meta, expires_at))| {
                        if meta.is_none() {
                            if let Some(data) = messages.get(id) {
                                loaded.insert(*id, data.clone());
                            }
                        }
                        Entry {
                            seq: *seq,
                            id: *id,
                            meta: *meta,
                            expires_at: *expires_at,
                            loc: 0,
                        }
                    })
                    .collect();
                (q.clone(), entries)
            })
            .collect();
        Ok(Recovered {
            definitions: s.definitions.values().cloned().collect(),
            queues,
            messages: loaded,
            lazy: false,
        })
    }
}
