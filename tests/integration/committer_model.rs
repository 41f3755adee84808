//! Model test of the committer's ordering: several submitters (connections) each gather ops and
//! submit them at random times, as connections do at the end of their read bursts, while the
//! events behind the ops happen in one true order: a message is published (record + index
//! entries, on the publisher's connection), delivered and acked on any connection (unindex +
//! delete, possibly submitted before the publisher's write), a queue is deleted (submitted at
//! once, as under the vhost's topology lock) and declared again under the same name. After a
//! final sync the store must hold exactly what the model holds: no acked message resurrected,
//! no entry of a deleted queue in its namesake, nothing live lost.

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use warren::message::Message;
use warren::store::memory::MemoryStore;
use warren::store::{queue_key, Committer, Op, QueueKey, Store};

/// One live index entry in the model.
struct Entry {
    queue: usize,
    seq: u64,
    message: Arc<Message>,
}

struct Queue {
    key: QueueKey,
    next_seq: u64,
}

fn message(id: u64, refs: u32) -> Arc<Message> {
    let mut m = Message::new(
        "",
        "k",
        Default::default(),
        Bytes::from(id.to_be_bytes().to_vec()),
    );
    m.store_id = id;
    m.store_refs = AtomicU32::new(refs);
    Arc::new(m)
}

fn run_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let store = Arc::new(MemoryStore::default());
    let committer = Committer::start(store.clone(), u64::MAX).expect("committer");
    let mut queues: Vec<Queue> = (0..3)
        .map(|i| Queue {
            key: queue_key("/", &format!("q{i}")),
            next_seq: 0,
        })
        .collect();
    let mut pending: Vec<Vec<Op>> = (0..3).map(|_| Vec::new()).collect();
    let mut live: Vec<Entry> = Vec::new();
    let mut next_id = 0u64;
    for _ in 0..rng.gen_range(20..200) {
        let conn = rng.gen_range(0..pending.len());
        match rng.gen_range(0..20) {
            // Publish to one or more queues.
            0..=6 => {
                next_id += 1;
                let targets: BTreeSet<usize> = (0..rng.gen_range(1..=3))
                    .map(|_| rng.gen_range(0..queues.len()))
                    .collect();
                let m = message(next_id, targets.len() as u32);
                pending[conn].push(Op::PutMessage(m.clone(), m.body.to_vec()));
                for &q in &targets {
                    let seq = queues[q].next_seq;
                    queues[q].next_seq += 1;
                    pending[conn].push(Op::Index(
                        queues[q].key.clone(),
                        seq,
                        m.clone(),
                        rng.gen_ratio(1, 3).then(|| rng.gen()),
                    ));
                    live.push(Entry {
                        queue: q,
                        seq,
                        message: m.clone(),
                    });
                }
            }
            // Ack any delivered entry, on any connection.
            7..=12 if !live.is_empty() => {
                let e = live.swap_remove(rng.gen_range(0..live.len()));
                let key = queues[e.queue].key.clone();
                pending[conn].push(Op::Unindex(key, e.seq, e.message.clone()));
                if e.message.release_store_ref() {
                    pending[conn].push(Op::DeleteMessage(e.message));
                }
            }
            // Delete a queue: its drop and its released records go at once, together with
            // what the deleting connection had gathered; then a namesake is declared.
            13 => {
                let q = rng.gen_range(0..queues.len());
                let mut ops = std::mem::take(&mut pending[conn]);
                ops.push(Op::DropQueue(queues[q].key.clone()));
                let (gone, kept): (Vec<Entry>, Vec<Entry>) =
                    live.drain(..).partition(|e| e.queue == q);
                live = kept;
                for e in gone {
                    if e.message.release_store_ref() {
                        ops.push(Op::DeleteMessage(e.message));
                    }
                }
                committer.submit(ops, None);
                queues[q] = Queue {
                    key: queue_key("/", &format!("q{q}")),
                    next_seq: 0,
                };
            }
            // End of a read burst on this connection.
            _ => {
                let ops = std::mem::take(&mut pending[conn]);
                committer.submit(ops, None);
            }
        }
    }
    // Submitters flush in a random order at the end, too.
    while !pending.is_empty() {
        let ops = pending.swap_remove(rng.gen_range(0..pending.len()));
        committer.submit(ops, None);
    }
    committer
        .sync()
        .blocking_recv()
        .expect("committer alive")
        .expect("commit");

    let recovered = store.recover().expect("recover");
    let got: BTreeMap<(String, u64), u64> = recovered
        .queues
        .iter()
        .flat_map(|(k, entries)| {
            entries
                .iter()
                .map(move |e| ((k.as_str().to_string(), e.seq), e.id))
        })
        .collect();
    let want: BTreeMap<(String, u64), u64> = live
        .iter()
        .map(|e| {
            (
                (queues[e.queue].key.as_str().to_string(), e.seq),
                e.message.store_id,
            )
        })
        .collect();
    assert_eq!(got, want, "seed {seed}: index entries");
    // Records are read when wanted (entries carry their metadata): each live one is there.
    let want_ids: BTreeSet<u64> = live.iter().map(|e| e.message.store_id).collect();
    for id in &want_ids {
        assert!(
            store.read_record(*id).expect("read").is_some(),
            "seed {seed}: record {id} missing"
        );
    }
    assert!(
        recovered.messages.keys().all(|id| want_ids.contains(id)),
        "seed {seed}: records of entries with metadata are not loaded at boot"
    );
}

#[test]
fn committer_keeps_one_order_across_submitters() {
    let cases: u64 = std::env::var("WARREN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for seed in 0..cases {
        run_case(seed);
    }
}
