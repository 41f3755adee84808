//! Model test: the same random store operations on SledStore and MemoryStore, with a reopen of
//! the sled store in the middle, leave the same recovered state.

use crate::common::reopen_in_process;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warren::store::memory::MemoryStore;
use warren::store::sled::SledStore;
use warren::store::{queue_key, Batch, Definition, QueueKey, Store};

fn random_batch(rng: &mut StdRng, next_id: &mut u64, queues: &[QueueKey]) -> Batch {
    let mut b = Batch::default();
    for _ in 0..rng.gen_range(1..20) {
        let q = queues[rng.gen_range(0..queues.len())].clone();
        match rng.gen_range(0..10) {
            0..=3 => {
                *next_id += 1;
                let size = if rng.gen_ratio(1, 20) {
                    200_000
                } else {
                    rng.gen_range(0..300)
                };
                let data: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
                b.messages.insert(*next_id, data);
                let seq = rng.gen_range(0..50);
                b.index_puts.insert((q.clone(), seq), *next_id);
                if rng.gen_ratio(1, 3) {
                    b.expiry.insert((q, seq), rng.gen());
                }
                // Entries with metadata (whose records boot leaves on disk), and without
                // (written before it existed: boot loads their records).
                if rng.gen::<bool>() {
                    b.meta.insert(
                        *next_id,
                        warren::store::MessageMeta {
                            size: size as u32,
                            priority: rng.gen_range(0..10),
                            expiring: rng.gen(),
                        },
                    );
                }
            }
            4..=5 => b
                .index_puts
                .insert((q, rng.gen_range(0..50)), rng.gen_range(1..=*next_id + 1))
                .map_or((), |_| ()),
            6..=7 => b.index_removes.push((q, rng.gen_range(0..50))),
            8 => b.message_deletes.push(rng.gen_range(1..=*next_id + 1)),
            _ => {
                if rng.gen_ratio(1, 4) {
                    b.dropped_queues.push(q);
                }
            }
        }
    }
    b
}

fn random_definition(rng: &mut StdRng) -> Definition {
    let name = format!("n{}", rng.gen_range(0..5));
    match rng.gen_range(0..3) {
        0 => Definition::Exchange {
            vhost: "/".into(),
            name,
            kind: "topic".into(),
            auto_delete: rng.gen(),
            internal: false,
            arguments: Default::default(),
        },
        1 => Definition::Queue {
            vhost: "/".into(),
            name,
            auto_delete: false,
            arguments: Default::default(),
        },
        _ => Definition::Binding {
            vhost: "/".into(),
            source: name,
            destination_kind: "queue".into(),
            destination: format!("q{}", rng.gen_range(0..3)),
            routing_key: format!("k{}", rng.gen_range(0..3)),
            arguments: Default::default(),
        },
    }
}

/// Reopen in the same process (see `reopen_in_process`).
fn reopen(dir: &std::path::Path, sync: bool) -> SledStore {
    reopen_in_process(|| SledStore::open(dir, sync))
}

#[test]
fn sled_and_memory_stores_agree_across_reopen() {
    let dir = std::env::temp_dir().join(format!("warren-model-{}", warren::names::random_token(8)));
    let queues: Vec<QueueKey> = (0..4).map(|i| queue_key("/", &format!("q{i}"))).collect();
    for seed in 0..3u64 {
        let _ = std::fs::remove_dir_all(&dir);
        let mut rng = StdRng::seed_from_u64(seed);
        let memory = MemoryStore::default();
        // The previous seed's store may still hold the lock for a tick.
        let mut sled = reopen(&dir, false);
        let mut next_id = 0;
        for step in 0..120 {
            if step == 60 {
                drop(sled);
                sled = reopen(&dir, true);
                assert_eq!(
                    sled.recover().expect("sled"),
                    memory.recover().expect("memory"),
                    "seed {seed}: after reopen"
                );
            }
            let mut batch = random_batch(&mut rng, &mut next_id, &queues);
            if rng.gen_ratio(1, 4) {
                let def = random_definition(&mut rng);
                let keep = rng.gen::<bool>().then(|| def.clone());
                batch.definitions.insert(def.key(), keep);
            }
            sled.commit(&batch).expect("sled commit");
            memory.commit(&batch).expect("memory commit");
        }
        let (a, b) = (
            sled.recover().expect("sled"),
            memory.recover().expect("memory"),
        );
        assert!(
            !a.messages.is_empty() || !a.queues.is_empty(),
            "seed {seed}: the model exercised nothing"
        );
        assert_eq!(a, b, "seed {seed}: final state");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
