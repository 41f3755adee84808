//! Model test: random batches of puts (with records), requeues to the back (records written
//! again), acks, purges of ranges and queue drops on the file store, with reopens in the middle, against a plain
//! map of what each queue holds. Every recovered entry must carry its own record and expiry.

// QueueKey's interior flag is not part of its order.
#![allow(clippy::mutable_key_type)]

use crate::common::reopen_in_process;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;
use warren::store::files::FileStore;
use warren::store::{queue_key, Batch, MessageMeta, QueueKey, Store};

/// (queue, position) → (message id, record, expiry).
type Model = BTreeMap<(QueueKey, u64), (u64, Vec<u8>, Option<u64>)>;

fn reopen(dir: &std::path::Path, sync: bool) -> FileStore {
    reopen_in_process(|| FileStore::open(dir, sync))
}

fn step(rng: &mut StdRng, next_id: &mut u64, queues: &[QueueKey], model: &mut Model) -> Batch {
    let mut b = Batch::default();
    for _ in 0..rng.gen_range(1..30) {
        let q = queues[rng.gen_range(0..queues.len())].clone();
        // Positions mostly grow, as a queue allocates them, across several segments.
        let seq = rng.gen_range(0..12_000);
        match rng.gen_range(0..10) {
            0..=4 if !b.index_puts.contains_key(&(q.clone(), seq)) => {
                *next_id += 1;
                let size = if rng.gen_ratio(1, 30) {
                    100_000
                } else {
                    rng.gen_range(0..200)
                };
                let data: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
                let expiry = rng.gen_ratio(1, 3).then(|| rng.gen_range(0..u64::MAX - 1));
                b.messages.insert(*next_id, data.clone());
                b.index_puts.insert((q.clone(), seq), *next_id);
                b.meta.insert(*next_id, MessageMeta::default());
                if let Some(t) = expiry {
                    b.expiry.insert((q.clone(), seq), t);
                }
                model.insert((q, seq), (*next_id, data, expiry));
            }
            5 => {
                // A requeue to the back: a live entry moves to a new position, its record
                // written again from memory.
                let live: Vec<_> = model
                    .range((q.clone(), 0)..(q.clone(), u64::MAX))
                    .map(|(k, v)| (k.1, v.clone()))
                    .take(5)
                    .collect();
                let Some((old, (id, data, _))) = live.first().cloned() else {
                    continue;
                };
                let new = 12_000 + rng.gen_range(0..4_000);
                if b.index_puts.contains_key(&(q.clone(), new))
                    || b.index_puts.contains_key(&(q.clone(), old))
                    || b.messages.contains_key(&id)
                {
                    continue;
                }
                b.index_removes.push((q.clone(), old));
                b.index_puts.insert((q.clone(), new), id);
                b.meta.insert(id, MessageMeta::default());
                b.rewrites.insert(id, data.clone());
                model.remove(&(q.clone(), old));
                model.insert((q, new), (id, data, None));
            }
            6..=8 if !b.index_puts.contains_key(&(q.clone(), seq)) => {
                // An ack of a live entry, or of nothing there (harmless).
                let target = model
                    .range((q.clone(), seq)..(q.clone(), u64::MAX))
                    .next()
                    .map(|(k, _)| k.1)
                    .unwrap_or(seq);
                if b.index_puts.contains_key(&(q.clone(), target)) {
                    continue;
                }
                b.index_removes.push((q.clone(), target));
                model.remove(&(q, target));
            }
            9 if rng.gen_ratio(1, 2) && b.index_puts.is_empty() => {
                // A purge of a stretch: everything of this queue in a range of positions.
                let from = rng.gen_range(0..12_000);
                let to = from + rng.gen_range(0..9_000);
                b.range_removes.push((q.clone(), from, to));
                model.retain(|(k, seq), _| *k != q || *seq < from || *seq > to);
            }
            9 if rng.gen_ratio(1, 8) && b.index_puts.is_empty() && b.index_removes.is_empty() => {
                b.dropped_queues.push(q.clone());
                model.retain(|(k, _), _| *k != q);
            }
            _ => {}
        }
    }
    b
}

fn check(store: &FileStore, model: &Model, what: &str) {
    let mut rec = store.recover().expect("recover");
    assert!(rec.lazy);
    for (q, entries) in rec.queues.iter_mut() {
        store
            .replay_entries(q, &mut |b| {
                entries.extend_from_slice(b);
                Ok(())
            })
            .expect("replay");
    }
    let mut got: Model = BTreeMap::new();
    for (q, entries) in &rec.queues {
        for e in entries {
            let record = store.read_entry(q, e).expect("read").expect("record");
            got.insert((q.clone(), e.seq), (e.id, record, e.expires_at));
        }
    }
    assert_eq!(got.len(), model.len(), "{what}: entry count");
    assert!(
        got == *model,
        "{what}: recovered state differs from the model"
    );
    // Reading back by range agrees with recovery.
    for (q, entries) in &rec.queues {
        let read = store
            .read_range(q, 0, u64::MAX, usize::MAX, u64::MAX)
            .expect("range");
        assert_eq!(read.len(), entries.len(), "{what}: range of {q:?}");
        assert!(read.windows(2).all(|w| w[0].0.seq < w[1].0.seq));
    }
}

#[test]
fn file_store_keeps_what_the_model_keeps_across_reopens() {
    let dir =
        std::env::temp_dir().join(format!("warren-fmodel-{}", warren::names::random_token(8)));
    let queues: Vec<QueueKey> = (0..3).map(|i| queue_key("/", &format!("q{i}"))).collect();
    for seed in 0..3u64 {
        let _ = std::fs::remove_dir_all(&dir);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::new();
        let mut store = reopen(&dir, false);
        store.recover().expect("recover");
        let mut next_id = 0;
        for n in 0..400 {
            if n % 100 == 99 {
                store.close();
                drop(store);
                store = reopen(&dir, true);
                check(&store, &model, &format!("seed {seed}, step {n}"));
            }
            let batch = step(&mut rng, &mut next_id, &queues, &mut model);
            store.commit(&batch).expect("commit");
        }
        assert!(
            !model.is_empty(),
            "seed {seed}: the model exercised nothing"
        );
        check(&store, &model, &format!("seed {seed}: final"));
        store.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
