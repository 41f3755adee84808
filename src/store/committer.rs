//! The group committer: one thread that puts every storage op in one order, makes batches
//! durable, and then tells each submitter how far its submissions are durable.
//!
//! Ordering. Ops come from many connections, each at the end of its own read burst, so an op
//! caused by a later event can arrive first: a consumer on another connection acks a message
//! whose publisher has not submitted its write yet; a queue is deleted while a publish routed to
//! it is still on its way. These rules make such a late op harmless, whichever batch it lands in:
//! - A message's record and all its index entries come in one submission (its publisher's).
//!   `Message::store_state` says whether the committer has taken that submission: a delete
//!   before it cancels the record (the write is then skipped), an unindex before it leaves a
//!   tombstone that skips the matching index entry.
//! - A queue deletion is submitted at once, under the vhost's topology lock, so it precedes
//!   every op of a namesake declared after it; it marks its `QueueKey` incarnation dropped, and
//!   any later index write or removal for that incarnation is skipped.
//! - Once its batch is committed a record is `DURABLE`: only then may a queue page the message
//!   out and read it back later. Removing a durable message (`Op::UnindexDurable`,
//!   `Op::DeleteDurable`, `Op::ForgetPaged`) needs no rule, and names it by id and position
//!   only, so an ack waiting for the committer does not hold the message's body.
//!
//! Back-pressure. Record bytes submitted and not yet durable are counted; above the limit (or
//! while the store fails) the committer is congested, and connections with writes in flight
//! stop reading their sockets until those writes are durable (see `connection`).
//!
//! Failure. A commit that fails is retried with back-off, merged with whatever arrives
//! meanwhile, until it succeeds; each failed attempt tells the waiting submitters
//! (`Outbound::StoreFailed`: publishers get nacks, a held declare-ok becomes 541), and nothing
//! of the batch is dropped, so acks are never lost and records never half-forgotten.

use super::{Batch, QueueKey, Store};
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;

/// `Message::store_state`: the publisher's submission has not reached the committer yet.
pub const PENDING: u8 = 0;
/// The record is in a batch (or on disk): later removals apply to it.
pub const WRITTEN: u8 = 1;
/// Deleted before its write arrived: the write is skipped.
pub const CANCELLED: u8 = 2;
/// The record's batch is committed: it can be read back (a queue may page the message out).
pub const DURABLE: u8 = 3;

/// A record counts this much beyond its bytes against the backlog (the bookkeeping is not
/// free).
const OP_COST: u64 = 256;

/// One storage operation, in the order its producer meant it.
#[derive(Debug)]
pub enum Op {
    /// The message and its encoded record.
    PutMessage(Arc<Message>, Vec<u8>),
    /// The message at a position of a queue, and when it expires there (if it does).
    Index(QueueKey, u64, Arc<Message>, Option<u64>),
    Unindex(QueueKey, u64, Arc<Message>),
    DeleteMessage(Arc<Message>),
    /// A durable message's index entry goes: by position alone, so that an ack does not keep
    /// the message in memory until the committer gets to it.
    UnindexDurable(QueueKey, u64),
    /// A durable message's record goes (its last holder let go).
    DeleteDurable(u64),
    /// Messages a queue paged out (durable, held by it alone) leave it: their records go, and
    /// their index entries unless `queue` is None (the whole index went with the queue).
    ForgetPaged {
        queue: Option<QueueKey>,
        entries: Vec<(u64, u64)>,
    },
    DropQueue(QueueKey),
    /// Every entry of the queue at a position in `from..=to` goes (a purge of a paged-out
    /// stretch; only for stores that do not share records, so no record needs deleting).
    ForgetRange {
        queue: QueueKey,
        from: u64,
        to: u64,
    },
    /// A stream's log has records appended (this many bytes): write and sync them with the
    /// batch.
    StreamFlush(Arc<super::log::Log>, u64),
    PutDefinition(super::Definition),
    DeleteDefinition(super::Definition),
}

/// Where a connection hears how far its submissions are durable (its inbox, in practice).
pub trait DurableSink: Send + Sync + std::fmt::Debug {
    /// Everything up to `ticket` is durable.
    fn durable(&self, ticket: u64);
    /// The commit holding submissions up to `ticket` failed (it is being retried).
    fn failed(&self, ticket: u64);
}

/// Who hears back when a submission is durable (or failed).
#[derive(Debug)]
pub enum Notify {
    /// A connection, with the ticket of this submission. Tickets grow per connection and the
    /// committer takes one submitter's submissions in order, so its watermark only moves up.
    Conn(Arc<dyn DurableSink>, u64),
    /// A one-off waiter (shutdown, management, boot).
    Once(oneshot::Sender<super::StoreResult<()>>),
}

/// A batch of ops from one submitter.
#[derive(Debug)]
pub struct Submission {
    pub ops: Vec<Op>,
    pub notify: Option<Notify>,
    /// Bytes counted against the backlog until the batch is durable.
    cost: u64,
}

#[derive(Debug)]
struct Shared {
    backlog: AtomicU64,
    limit: u64,
    failing: AtomicBool,
    /// The store was closed (the broker stopped) and the thread ended.
    closed: AtomicBool,
}

#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Submission>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
}

impl Committer {
    /// Start the committer thread. `backlog_limit`: record bytes that may wait for it before
    /// publishers are held back.
    pub fn start(store: Arc<dyn Store>, backlog_limit: u64) -> std::io::Result<Arc<Committer>> {
        let (tx, rx) = mpsc::channel::<Submission>();
        let shared = Arc::new(Shared {
            backlog: AtomicU64::new(0),
            limit: backlog_limit,
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("warren-committer".into())
            .spawn(move || run(store, rx, &s))?;
        Ok(Arc::new(Committer {
            tx,
            next_id: AtomicU64::new(1),
            shared,
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

    /// Hand ops over; returns the bytes they count against the backlog.
    pub fn submit(&self, ops: Vec<Op>, notify: Option<Notify>) -> u64 {
        // Only records count: a connection that only acks or declares has nothing in
        // flight, so consumers keep flowing while publishers wait.
        let cost = ops
            .iter()
            .map(|op| match op {
                Op::PutMessage(_, data) => OP_COST + data.len() as u64,
                Op::StreamFlush(_, bytes) => *bytes,
                _ => 0,
            })
            .sum();
        self.shared.backlog.fetch_add(cost, Ordering::Relaxed);
        if self.tx.send(Submission { ops, notify, cost }).is_err() {
            if self.shared.closed.load(Ordering::Relaxed) {
                tracing::debug!("write after the broker stopped; dropped");
            } else {
                tracing::error!("storage committer is gone; writes are lost");
            }
        }
        cost
    }

    /// Resolves once everything submitted before this call is durable (Err: the store failed
    /// on the way; the committer keeps retrying).
    pub fn sync(&self) -> oneshot::Receiver<super::StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        self.submit(Vec::new(), Some(Notify::Once(tx)));
        rx
    }

    /// Publishers with writes in flight should wait: the backlog is over its limit, or the
    /// store is failing.
    pub fn congested(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
            || self.shared.backlog.load(Ordering::Relaxed) > self.shared.limit
    }

    /// Record bytes submitted and not yet durable.
    pub fn backlog_bytes(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// The last commit failed (and is being retried).
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }
}

/// A connection's side of the committer: its tickets and what it has in flight.
#[derive(Debug)]
pub struct Submitter {
    sink: Arc<dyn DurableSink>,
    next_ticket: u64,
    /// (ticket, cost) of submissions not yet reported durable, oldest first.
    inflight: VecDeque<(u64, u64)>,
    inflight_bytes: u64,
}

impl Submitter {
    pub fn new(sink: Arc<dyn DurableSink>) -> Self {
        Submitter {
            sink,
            next_ticket: 1,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// The ticket the next submission will carry (what a confirm of a publish made now waits
    /// for).
    pub fn ticket(&self) -> u64 {
        self.next_ticket
    }

    /// Submit ops; returns their ticket.
    pub fn submit(&mut self, committer: &Committer, ops: Vec<Op>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let cost = committer.submit(ops, Some(Notify::Conn(self.sink.clone(), ticket)));
        self.inflight.push_back((ticket, cost));
        self.inflight_bytes += cost;
        ticket
    }

    /// The committer reported everything up to `ticket` durable.
    pub fn durable(&mut self, ticket: u64) {
        while let Some(&(t, cost)) = self.inflight.front() {
            if t > ticket {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= cost;
        }
    }

    /// Bytes of this connection's submissions not yet durable.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }
}

/// Accumulates ops in committer order, applying the ordering rules and cancelling writes
/// undone within the same batch.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) batch: Batch,
    /// Unindexes that arrived before their message's write: id → (queue, position).
    early: HashMap<u64, Vec<(QueueKey, u64)>>,
    /// Messages written by the submission being taken (their tombstones end with it).
    written_now: Vec<u64>,
    /// Messages whose records are in `batch`: DURABLE once it is committed.
    written: Vec<Arc<Message>>,
    /// Backlog bytes of the ops in `batch`.
    cost: u64,
    /// Stream logs with records to write and sync with the batch.
    logs: Vec<Arc<super::log::Log>>,
}

fn state(m: &Message) -> u8 {
    m.store_state.load(Ordering::Relaxed)
}

fn set_state(m: &Message, s: u8) {
    m.store_state.store(s, Ordering::Relaxed);
}

impl Pending {
    pub(crate) fn add(&mut self, op: Op) {
        let b = &mut self.batch;
        match op {
            Op::PutMessage(m, data) => {
                if state(&m) == CANCELLED {
                    self.early.remove(&m.store_id);
                    return;
                }
                set_state(&m, WRITTEN);
                self.written_now.push(m.store_id);
                b.messages.insert(m.store_id, data);
                self.written.push(m);
            }
            Op::Index(q, seq, m, expires_at) => {
                if q.is_dropped() || state(&m) == CANCELLED {
                    return;
                }
                if let Some(early) = self.early.get_mut(&m.store_id) {
                    if let Some(i) = early.iter().position(|(k, s)| k.same(&q) && *s == seq) {
                        early.swap_remove(i);
                        if early.is_empty() {
                            self.early.remove(&m.store_id);
                        }
                        return;
                    }
                }
                b.meta.insert(m.store_id, super::MessageMeta::of(&m));
                if !b.messages.contains_key(&m.store_id) {
                    // Indexed again (a requeue to the back): its record went in an earlier
                    // batch; a store that keeps records with their entries writes it again.
                    b.rewrites
                        .entry(m.store_id)
                        .or_insert_with(|| super::record::encode(&m));
                }
                match expires_at {
                    Some(t) => {
                        b.expiry.insert((q.clone(), seq), t);
                    }
                    // A position written again (a requeue to the back reuses none, but a
                    // late write for a namesake could): no stale expiry.
                    None if !b.expiry.is_empty() => {
                        b.expiry.remove(&(q.clone(), seq));
                    }
                    None => {}
                }
                b.index_puts.insert((q, seq), m.store_id);
            }
            Op::Unindex(q, seq, m) => {
                if q.is_dropped() {
                    return;
                }
                if state(&m) == PENDING {
                    self.early.entry(m.store_id).or_default().push((q, seq));
                    return;
                }
                if b.index_puts.remove(&(q.clone(), seq)).is_none() {
                    b.index_removes.push((q, seq));
                }
            }
            Op::DeleteMessage(m) => {
                let st = state(&m);
                if st == PENDING {
                    set_state(&m, CANCELLED);
                } else if (st == WRITTEN || st == DURABLE)
                    && b.messages.remove(&m.store_id).is_none()
                {
                    b.message_deletes.push(m.store_id);
                }
            }
            Op::UnindexDurable(q, seq) => {
                if !q.is_dropped() && b.index_puts.remove(&(q.clone(), seq)).is_none() {
                    b.index_removes.push((q, seq));
                }
            }
            Op::DeleteDurable(id) => {
                if b.messages.remove(&id).is_none() {
                    b.message_deletes.push(id);
                }
            }
            Op::ForgetPaged { queue, entries } => {
                // Paged-out messages are durable and held by this queue alone.
                for (seq, id) in entries {
                    if let Some(q) = queue.as_ref().filter(|q| !q.is_dropped()) {
                        if b.index_puts.remove(&(q.clone(), seq)).is_none() {
                            b.index_removes.push((q.clone(), seq));
                        }
                    }
                    if b.messages.remove(&id).is_none() {
                        b.message_deletes.push(id);
                    }
                }
            }
            Op::ForgetRange { queue, from, to } => {
                if !queue.is_dropped() {
                    b.range_removes.push((queue, from, to));
                }
            }
            Op::DropQueue(q) => {
                q.mark_dropped();
                // Entries queued for the dropped queue belong to it; a namesake's can only
                // come after this op (deletion is submitted under the topology lock).
                b.index_puts.retain(|(k, _), _| *k != q);
                b.index_removes.retain(|(k, _)| *k != q);
                b.range_removes.retain(|(k, _, _)| *k != q);
                b.dropped_queues.push(q);
            }
            Op::StreamFlush(log, _) => {
                if !self.logs.iter().any(|l| Arc::ptr_eq(l, &log)) {
                    self.logs.push(log);
                }
            }
            Op::PutDefinition(d) => {
                b.definitions.insert(d.key(), Some(d));
            }
            Op::DeleteDefinition(d) => {
                b.definitions.insert(d.key(), None);
            }
        }
    }

    /// A submission was taken whole: tombstones of the messages it wrote are used up.
    pub(crate) fn end_submission(&mut self) {
        for id in self.written_now.drain(..) {
            if self.early.remove(&id).is_some() {
                tracing::warn!(id, "unindex without a matching index write");
            }
        }
    }
}

/// Waiting submitters of the batch being built, one entry per connection.
#[derive(Default)]
struct Waiters {
    conns: Vec<(Arc<dyn DurableSink>, u64)>,
    once: Vec<oneshot::Sender<super::StoreResult<()>>>,
}

impl Waiters {
    fn add(&mut self, n: Notify) {
        match n {
            Notify::Conn(sink, ticket) => {
                match self.conns.iter_mut().find(|(s, _)| same(s, &sink)) {
                    Some((_, t)) => *t = (*t).max(ticket),
                    None => self.conns.push((sink, ticket)),
                }
            }
            Notify::Once(tx) => self.once.push(tx),
        }
    }

    fn durable(&mut self) {
        for (sink, ticket) in self.conns.drain(..) {
            sink.durable(ticket);
        }
        for tx in self.once.drain(..) {
            let _ = tx.send(Ok(()));
        }
    }

    /// Tell everyone waiting that this attempt failed; connections stay on the list, so they
    /// also hear when the retry succeeds.
    fn failed(&mut self, reason: &super::StoreError) {
        for (sink, ticket) in &self.conns {
            sink.failed(*ticket);
        }
        for tx in self.once.drain(..) {
            let _ = tx.send(Err(reason.clone()));
        }
    }
}

/// The same submitter (the same allocation; the vtable does not matter).
fn same(a: &Arc<dyn DurableSink>, b: &Arc<dyn DurableSink>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// Write and sync the streams' appended records; a log that fails stays for the retry.
fn flush_logs(logs: &mut Vec<Arc<super::log::Log>>) -> super::StoreResult<()> {
    let mut first_error = None;
    logs.retain(|log| match log.flush() {
        Ok(()) => false,
        Err(e) => {
            first_error.get_or_insert(e);
            true
        }
    });
    match first_error {
        None => Ok(()),
        Some(e) => Err(super::StoreError::new(
            super::StoreErrorKind::Io,
            format!("writing a stream segment: {e}"),
        )),
    }
}

fn run(store: Arc<dyn Store>, rx: mpsc::Receiver<Submission>, shared: &Shared) {
    let mut pending = Pending::default();
    let mut waiters = Waiters::default();
    let mut delay = Duration::from_millis(10);
    let take = |s: Submission, pending: &mut Pending, waiters: &mut Waiters| {
        for op in s.ops {
            pending.add(op);
        }
        pending.end_submission();
        pending.cost += s.cost;
        if let Some(n) = s.notify {
            waiters.add(n);
        }
    };
    loop {
        let retrying = shared.failing.load(Ordering::Relaxed);
        if retrying {
            // A failed batch waits for its retry; take what arrives meanwhile into it.
            match rx.recv_timeout(delay) {
                Ok(s) => take(s, &mut pending, &mut waiters),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if store.commit(&pending.batch).is_err()
                        || flush_logs(&mut pending.logs).is_err()
                    {
                        tracing::error!("storage still failing at shutdown; last writes lost");
                    }
                    return;
                }
            }
        } else {
            match rx.recv() {
                Ok(s) => take(s, &mut pending, &mut waiters),
                Err(_) => return,
            }
        }
        // Everything that arrived while the previous commit ran joins this one.
        while let Ok(s) = rx.try_recv() {
            take(s, &mut pending, &mut waiters);
        }
        let result = if pending.batch.is_empty() {
            Ok(())
        } else {
            store.commit(&pending.batch)
        }
        .and_then(|()| flush_logs(&mut pending.logs));
        match result {
            Ok(()) => {
                if retrying {
                    tracing::info!("storage writes succeed again");
                }
                shared.failing.store(false, Ordering::Relaxed);
                shared.backlog.fetch_sub(pending.cost, Ordering::Relaxed);
                pending.cost = 0;
                for m in pending.written.drain(..) {
                    // Only a record still in the state its write left it: a later delete
                    // leaves the state alone and nothing reads it back.
                    let _ = m.store_state.compare_exchange(
                        WRITTEN,
                        DURABLE,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                pending.batch = Batch::default();
                delay = Duration::from_millis(10);
                waiters.durable();
            }
            Err(e) if e.kind == super::StoreErrorKind::Closed => {
                // The broker stopped and let go of its files: what comes after the stop's
                // final sync cannot be made durable; stop here instead of retrying forever.
                tracing::debug!(error = %e, "store closed; the committer stops");
                shared.closed.store(true, Ordering::Relaxed);
                waiters.failed(&e);
                return;
            }
            Err(e) => {
                // A confirm is a promise: never release it for a failed write. Keep the
                // batch (acks in it must not be lost) and retry it with what comes next.
                tracing::error!(error = %e, retry_ms = delay.as_millis() as u64, "storage commit failed");
                shared.failing.store(true, Ordering::Relaxed);
                waiters.failed(&e);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(id: u64) -> Arc<Message> {
        let mut m = Message::new("", "q", Default::default(), Bytes::from_static(b"x"));
        m.store_id = id;
        Arc::new(m)
    }

    #[test]
    fn undone_writes_cancel_out() {
        let q = QueueKey::from("/\0q");
        let (m1, m2) = (message(1), message(2));
        let mut p = Pending::default();
        p.add(Op::PutMessage(m1.clone(), vec![1]));
        p.add(Op::Index(q.clone(), 0, m1.clone(), None));
        p.add(Op::PutMessage(m2.clone(), vec![2]));
        p.add(Op::Index(q.clone(), 1, m2.clone(), None));
        p.end_submission();
        p.add(Op::Unindex(q.clone(), 0, m1.clone()));
        p.add(Op::DeleteMessage(m1.clone()));
        p.add(Op::Unindex(q.clone(), 7, m2.clone()));
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

    #[test]
    fn an_ack_that_overtakes_the_write_cancels_it() {
        let q = QueueKey::from("/\0q");
        let m = message(5);
        let mut p = Pending::default();
        // The consumer's connection submits first...
        p.add(Op::Unindex(q.clone(), 3, m.clone()));
        p.add(Op::DeleteMessage(m.clone()));
        p.end_submission();
        // ...then the publisher's write arrives, in a later batch.
        p.batch = Batch::default();
        p.add(Op::PutMessage(m.clone(), vec![1]));
        p.add(Op::Index(q.clone(), 3, m.clone(), None));
        p.end_submission();
        assert!(p.batch.is_empty(), "{:?}", p.batch);
        assert!(p.early.is_empty());
    }

    #[test]
    fn a_late_write_for_a_dropped_queue_is_skipped() {
        let old = QueueKey::from("/\0q");
        let new = QueueKey::from("/\0q");
        let other = QueueKey::from("/\0other");
        let m = message(9);
        let mut p = Pending::default();
        p.add(Op::DropQueue(old.clone()));
        p.batch = Batch::default();
        p.add(Op::Index(new.clone(), 0, message(10), None));
        p.add(Op::PutMessage(m.clone(), vec![1]));
        p.add(Op::Index(old.clone(), 4, m.clone(), None));
        p.add(Op::Index(other.clone(), 4, m.clone(), None));
        p.add(Op::Unindex(old.clone(), 0, message(11)));
        p.end_submission();
        let puts: Vec<_> = p.batch.index_puts.keys().cloned().collect();
        assert_eq!(puts, vec![(other, 4), (new, 0)]);
        assert!(p.batch.index_removes.is_empty());
    }
}
