//! `MemoryStore`: the same contract as the sled store, kept in memory. Used for `--in-memory`
//! runs and embedded test brokers, and as the model the sled store is checked against.

use super::{Batch, Definition, QueueKey, Recovered, Store};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    definitions: BTreeMap<Vec<u8>, Definition>,
    queues: BTreeMap<QueueKey, BTreeMap<u64, u64>>,
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
            s.queues.entry(q.clone()).or_default().insert(*seq, *id);
        }
        for (q, seq) in &batch.index_removes {
            if let Some(entries) = s.queues.get_mut(q) {
                entries.remove(seq);
            }
        }
        for id in &batch.message_deletes {
            s.messages.remove(id);
        }
        Ok(())
    }

    fn reads_back(&self) -> bool {
        true
    }

    fn index_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> super::StoreResult<Vec<(u64, u64)>> {
        let s = self.lock();
        Ok(s.queues.get(q).map_or_else(Vec::new, |e| {
            e.range(from..=to)
                .take(limit)
                .map(|(a, b)| (*a, *b))
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
            .flat_map(|e| e.values().copied())
            .collect();
        s.messages.retain(|id, _| referenced.contains(id));
        let messages = s.messages.clone();
        for entries in s.queues.values_mut() {
            entries.retain(|_, id| messages.contains_key(id));
        }
        s.queues.retain(|_, e| !e.is_empty());
        Ok(Recovered {
            definitions: s.definitions.values().cloned().collect(),
            queues: s
                .queues
                .iter()
                .map(|(q, e)| (q.clone(), e.iter().map(|(a, b)| (*a, *b)).collect()))
                .collect(),
            messages,
        })
    }
}
