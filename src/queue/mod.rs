//! A queue: ready messages in order, its consumers, and delivery to them.
//!
//! State sits behind one short-held mutex per queue (never a global lock, never held across an
//! `.await`): the publishing connection enqueues and dispatches in one call chain, as LavinMQ
//! does, with no task hop per message. Deliveries go up through each consumer's `Outbox`.

pub mod consumers;
pub mod delivery;

pub use consumers::{Consumer, Credit};
pub use delivery::{Delivery, Outbound, Outbox};

use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::store::{Op, QueueKey};
use amq_protocol::types::FieldTable;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// A message sitting in (or out on delivery from) one queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Position in the queue; a requeued message goes back to its original place by it.
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// Connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// Set for durable queues when the broker has a store: persistent messages are indexed
    /// under this key.
    pub store_key: Option<QueueKey>,
}

#[derive(Debug)]
pub struct Queue {
    pub config: QueueConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<QueuedMessage>,
    next_seq: u64,
    consumers: Vec<Consumer>,
    /// Round-robin position in `consumers`.
    cursor: usize,
    had_consumers: bool,
    deleted: bool,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Arc<Self> {
        Arc::new(Queue {
            config,
            state: Mutex::new(State::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_exclusive_to_other(&self, conn_id: u64) -> bool {
        matches!(self.config.exclusive_owner, Some(owner) if owner != conn_id)
    }

    /// RabbitMQ checks exclusivity before anything else (errata §8).
    pub fn check_access(&self, conn_id: u64) -> AmqpResult<()> {
        if self.is_exclusive_to_other(conn_id) {
            return Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                self.config.name, self.config.vhost
            )));
        }
        Ok(())
    }

    pub fn message_count(&self) -> u32 {
        u32::try_from(self.lock().ready.len()).unwrap_or(u32::MAX)
    }

    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    pub fn is_deleted(&self) -> bool {
        self.lock().deleted
    }

    /// Enqueue a batch of messages and hand what consumers can take to them. Stored messages
    /// get an index entry in `ops`.
    pub fn publish(
        self: &Arc<Self>,
        messages: impl IntoIterator<Item = Arc<Message>>,
        ops: &mut Vec<Op>,
    ) {
        let mut st = self.lock();
        if st.deleted {
            for m in messages {
                if m.release_store_ref() {
                    ops.push(Op::DeleteMessage(m.store_id));
                }
            }
            return;
        }
        for message in messages {
            let seq = st.next_seq;
            st.next_seq += 1;
            if let (Some(key), true) = (&self.config.store_key, message.store_id != 0) {
                ops.push(Op::Index(key.clone(), seq, message.store_id));
            }
            st.ready.push_back(QueuedMessage {
                seq,
                message,
                redelivered: false,
            });
        }
        self.dispatch(&mut st);
    }

    /// Put unacknowledged messages back in their original positions, marked redelivered.
    pub fn requeue(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = QueuedMessage>,
        ops: &mut Vec<Op>,
    ) {
        let mut st = self.lock();
        if st.deleted {
            for e in entries {
                self.forget(&e, true, ops);
            }
            return;
        }
        for mut entry in entries {
            entry.redelivered = true;
            // Most requeues land at or near the head; search from there.
            let pos = st.ready.partition_point(|m| m.seq < entry.seq);
            st.ready.insert(pos, entry);
        }
        self.dispatch(&mut st);
    }

    /// Deliver again after consumers regained credit.
    pub fn kick(self: &Arc<Self>) {
        let mut st = self.lock();
        self.dispatch(&mut st);
    }

    fn dispatch(self: &Arc<Self>, st: &mut State) {
        while !st.ready.is_empty() && !st.consumers.is_empty() {
            let n = st.consumers.len();
            let start = st.cursor % n;
            let Some(idx) = (0..n)
                .map(|i| (start + i) % n)
                .find(|&i| st.consumers[i].try_acquire())
            else {
                return;
            };
            let Some(entry) = st.ready.pop_front() else {
                st.consumers[idx].release();
                return;
            };
            let c = &st.consumers[idx];
            let delivery = Delivery {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
                queue: self.clone(),
                entry,
                no_ack: c.no_ack,
                credit: c.credit.clone(),
            };
            match c.outbox.send(Outbound::Deliver(delivery)) {
                Ok(()) => st.cursor = idx + 1,
                Err(err) => {
                    // The consumer's connection is gone: take the message back and drop it.
                    if let Outbound::Deliver(d) = err.0 {
                        st.ready.push_front(d.entry);
                    }
                    st.consumers.remove(idx);
                }
            }
        }
    }

    /// Restore recovered messages (in position order) at boot, marked redelivered: they may
    /// have been delivered before the restart.
    pub fn restore(&self, entries: impl IntoIterator<Item = (u64, Arc<Message>)>) {
        let mut st = self.lock();
        for (seq, message) in entries {
            st.ready.push_back(QueuedMessage {
                seq,
                message,
                redelivered: true,
            });
            st.next_seq = st.next_seq.max(seq + 1);
        }
    }

    /// Messages that left the queue for good (acked, rejected without requeue, auto-acked):
    /// remove their index entries and, with the last reference, their records.
    pub fn settle(&self, entries: impl IntoIterator<Item = QueuedMessage>, ops: &mut Vec<Op>) {
        if self.config.store_key.is_none() {
            return;
        }
        let deleted = self.lock().deleted;
        for e in entries {
            self.forget(&e, deleted, ops);
        }
    }

    fn forget(&self, e: &QueuedMessage, queue_deleted: bool, ops: &mut Vec<Op>) {
        let Some(key) = &self.config.store_key else {
            return;
        };
        if e.message.store_id == 0 {
            return;
        }
        if !queue_deleted {
            ops.push(Op::Unindex(key.clone(), e.seq));
        }
        if e.message.release_store_ref() {
            ops.push(Op::DeleteMessage(e.message.store_id));
        }
    }

    /// basic.get: the head message and how many remain ready.
    pub fn get(&self) -> Option<(QueuedMessage, u32)> {
        let mut st = self.lock();
        let entry = st.ready.pop_front()?;
        let left = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        Some((entry, left))
    }

    /// Drop every ready message; unacknowledged ones are not touched (as in RabbitMQ).
    pub fn purge(&self, ops: &mut Vec<Op>) -> u32 {
        let mut st = self.lock();
        let n = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        for e in std::mem::take(&mut st.ready) {
            self.forget(&e, false, ops);
        }
        n
    }

    pub fn add_consumer(self: &Arc<Self>, consumer: Consumer) -> AmqpResult<()> {
        let mut st = self.lock();
        if st.deleted {
            return Err(AmqpError::no_queue(&self.config.name, &self.config.vhost));
        }
        let exclusive_in_use = st.consumers.iter().any(|c| c.exclusive);
        if exclusive_in_use || (consumer.exclusive && !st.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.config.name, self.config.vhost
            )));
        }
        st.consumers.push(consumer);
        st.had_consumers = true;
        self.dispatch(&mut st);
        Ok(())
    }

    /// Remove one consumer; returns true when an auto-delete queue just lost its last one.
    pub fn remove_consumer(&self, conn_id: u64, channel: u16, tag: &str) -> bool {
        let mut st = self.lock();
        let before = st.consumers.len();
        st.consumers
            .retain(|c| !(c.conn_id == conn_id && c.channel == channel && &*c.tag == tag));
        let removed = st.consumers.len() != before;
        removed && self.config.auto_delete && st.consumers.is_empty() && st.had_consumers
    }

    /// Mark deleted: returns how many ready messages went with it and tells every consumer.
    pub fn mark_deleted(&self, ops: &mut Vec<Op>) -> u32 {
        let mut st = self.lock();
        if st.deleted {
            return 0;
        }
        st.deleted = true;
        let n = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        if let Some(key) = &self.config.store_key {
            ops.push(Op::DropQueue(key.clone()));
        }
        for e in std::mem::take(&mut st.ready) {
            self.forget(&e, true, ops);
        }
        for c in st.consumers.drain(..) {
            let _ = c.outbox.send(Outbound::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn msg(n: u8) -> Arc<Message> {
        Arc::new(Message::new(
            String::new(),
            "q".into(),
            Default::default(),
            bytes::Bytes::from(vec![n]),
        ))
    }

    fn queue() -> Arc<Queue> {
        Queue::new(QueueConfig {
            name: "q".into(),
            vhost: "/".into(),
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: Default::default(),
            store_key: None,
        })
    }

    #[test]
    fn requeue_restores_original_order() {
        let q = queue();
        q.publish((0..4).map(msg), &mut Vec::new());
        let a = q.get().expect("a").0;
        let b = q.get().expect("b").0;
        q.requeue([b, a], &mut Vec::new());
        let order: Vec<u8> =
            std::iter::from_fn(|| q.get().map(|(m, _)| m.message.body[0])).collect();
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn round_robin_respects_prefetch() {
        let q = queue();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for tag in ["a", "b"] {
            q.add_consumer(Consumer {
                tag: tag.into(),
                conn_id: 1,
                channel: 1,
                outbox: tx.clone(),
                no_ack: false,
                exclusive: false,
                credit: Credit::new(2),
                channel_credit: None,
            })
            .expect("consumer");
        }
        q.publish((0..6).map(msg), &mut Vec::new());
        let mut tags = Vec::new();
        while let Ok(Outbound::Deliver(d)) = rx.try_recv() {
            tags.push(d.consumer_tag.to_string());
        }
        assert_eq!(tags, vec!["a", "b", "a", "b"]);
        assert_eq!(q.message_count(), 2);
    }
}
