//! The group committer: one thread that makes batches durable and then releases confirms.

use super::{Batch, QueueKey, Store};
use crate::queue::{Outbound, Outbox};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// One storage operation, in the order its producer meant it.
#[derive(Debug)]
pub enum Op {
    PutMessage(u64, Vec<u8>),
    Index(QueueKey, u64, u64),
    Unindex(QueueKey, u64),
    DeleteMessage(u64),
    DropQueue(QueueKey),
}

/// A connection's operations from one read burst, with the ticket it waits on (if any).
#[derive(Debug)]
pub struct Submission {
    pub ops: Vec<Op>,
    /// Told `Outbound::Durable(ticket)` once every op of this and earlier submissions from the
    /// same connection is durable. Tickets grow per connection; the channel from one sender is
    /// FIFO, so a connection's watermark only moves forward.
    pub notify: Option<(Outbox, u64)>,
}

#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Submission>,
    next_id: AtomicU64,
}

impl Committer {
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Arc<Committer>> {
        let (tx, rx) = mpsc::channel::<Submission>();
        std::thread::Builder::new()
            .name("warren-committer".into())
            .spawn(move || run(store, rx))?;
        Ok(Arc::new(Committer {
            tx,
            next_id: AtomicU64::new(1),
        }))
    }

    /// A fresh id for a message record.
    pub fn next_message_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// After recovery: ids continue above the largest one on disk.
    pub fn reserve_ids_above(&self, max: u64) {
        self.next_id.fetch_max(max + 1, Ordering::Relaxed);
    }

    pub fn submit(&self, submission: Submission) {
        if self.tx.send(submission).is_err() {
            tracing::error!("storage committer is gone; writes are lost");
        }
    }
}

/// Accumulates ops, cancelling those undone within the same batch.
#[derive(Default)]
struct Pending {
    batch: Batch,
}

impl Pending {
    fn add(&mut self, op: Op) {
        let b = &mut self.batch;
        match op {
            Op::PutMessage(id, data) => {
                b.messages.insert(id, data);
            }
            Op::Index(q, seq, id) => {
                b.index_puts.insert((q, seq), id);
            }
            Op::Unindex(q, seq) => {
                if b.index_puts.remove(&(q.clone(), seq)).is_none() {
                    b.index_removes.push((q, seq));
                }
            }
            Op::DeleteMessage(id) => {
                if b.messages.remove(&id).is_none() {
                    b.message_deletes.push(id);
                }
            }
            Op::DropQueue(q) => {
                // Entries queued for the dropped queue belong to it, not to a namesake
                // declared later in the same batch.
                b.index_puts.retain(|(k, _), _| *k != q);
                b.index_removes.retain(|(k, _)| *k != q);
                b.dropped_queues.push(q);
            }
        }
    }
}

fn run(store: Arc<dyn Store>, rx: mpsc::Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut pending = Pending::default();
        let mut notify: Vec<(Outbox, u64)> = Vec::new();
        let mut take = |s: Submission, pending: &mut Pending| {
            for op in s.ops {
                pending.add(op);
            }
            if let Some((outbox, ticket)) = s.notify {
                match notify.iter_mut().find(|(o, _)| o.same_channel(&outbox)) {
                    Some((_, t)) => *t = (*t).max(ticket),
                    None => notify.push((outbox, ticket)),
                }
            }
        };
        take(first, &mut pending);
        // Everything that arrived while the previous commit ran joins this one.
        while let Ok(s) = rx.try_recv() {
            take(s, &mut pending);
        }
        if !pending.batch.is_empty() {
            let mut delay = Duration::from_millis(10);
            while let Err(e) = store.commit(&pending.batch) {
                // A confirm is a promise: never release it for a failed write; retry.
                tracing::error!(error = %e, "storage commit failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        for (outbox, ticket) in notify {
            let _ = outbox.send(Outbound::Durable(ticket));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undone_writes_cancel_out() {
        let q: QueueKey = "/\0q".into();
        let mut p = Pending::default();
        p.add(Op::PutMessage(1, vec![1]));
        p.add(Op::Index(q.clone(), 0, 1));
        p.add(Op::PutMessage(2, vec![2]));
        p.add(Op::Index(q.clone(), 1, 2));
        p.add(Op::Unindex(q.clone(), 0));
        p.add(Op::DeleteMessage(1));
        p.add(Op::Unindex(q.clone(), 7));
        assert_eq!(
            p.batch.messages.keys().copied().collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(p.batch.index_puts.len(), 1);
        assert_eq!(p.batch.index_removes, vec![(q.clone(), 7)]);
        assert!(p.batch.message_deletes.is_empty());
        p.add(Op::DropQueue(q.clone()));
        assert!(p.batch.index_puts.is_empty());
    }
}
