//! Where a delivered message goes next: settled (acked), discarded or dead-lettered
//! (rejected), requeued (in place, or to the back of a quorum queue), and what the store
//! forgets with it.

use super::*;

impl Queue {
    /// Put unacknowledged messages back in their original positions, marked redelivered.
    /// Quorum queues count the return and dead-letter past x-delivery-limit; without a limit,
    /// what the client itself returns (reject, nack, recover) goes to the back instead, as
    /// RabbitMQ 3.10's quorum queues do, so one poison message cannot hog the head.
    pub fn requeue(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = QueuedMessage>,
        how: Return,
        fx: &mut Effects,
    ) {
        let mut st = self.lock();
        if self.is_stream() {
            // Nothing goes back into a log: the credit is returned, and the consumer reads on.
            self.returned(entries.into_iter().count());
            self.dispatch(&mut st, fx);
            return;
        }
        let to_back =
            how == Return::ByClient && self.is_quorum() && st.args.delivery_limit.is_none();
        let mut moved = Vec::new();
        for mut entry in entries {
            self.returned(1);
            if st.deleted {
                self.forget(&entry, true, fx);
                continue;
            }
            entry.redelivered = true;
            if self.is_quorum() {
                entry.delivery_count += 1;
                if st
                    .args
                    .delivery_limit
                    .is_some_and(|l| u64::from(entry.delivery_count) > l)
                {
                    let args = st.args.clone();
                    self.dead_letter(&args, &entry.message, Reason::DeliveryLimit, fx);
                    self.forget(&entry, false, fx);
                    continue;
                }
            }
            if to_back {
                let seq = st.next_seq;
                st.next_seq += 1;
                if let (Some(key), true) = (&self.config.store_key, entry.message.store_id != 0) {
                    // Moved in the stored index too, so a restart keeps the new order.
                    moved.push(Op::Unindex(key.clone(), entry.seq, entry.message.clone()));
                    moved.push(Op::Index(
                        key.clone(),
                        seq,
                        entry.message.clone(),
                        entry.expires_at,
                    ));
                }
                entry.seq = seq;
                st.ready.push_back(entry);
                continue;
            }
            st.ready.insert_by_seq(entry);
        }
        if !moved.is_empty() {
            // The move reaches the committer before the message can go out again: an ack
            // from a consumer on another connection, submitted before this connection's
            // burst ends, would otherwise remove the new entry before it is written, and the
            // message would come back after a restart.
            match self.sink.as_ref().and_then(Weak::upgrade) {
                Some(sink) => sink.flush(Effects {
                    ops: moved,
                    ..Default::default()
                }),
                None => fx.ops.extend(moved),
            }
        }
        self.dispatch(&mut st, fx);
    }

    /// Messages that left the queue for good (acked, or auto-acked on delivery).
    pub fn settle(&self, entries: impl IntoIterator<Item = QueuedMessage>, fx: &mut Effects) {
        if (self.config.store_key.is_none() && self.dedup.is_none()) || self.is_stream() {
            self.returned(entries.into_iter().count());
            return;
        }
        let deleted = self.lock().deleted;
        for e in entries {
            self.returned(1);
            self.forget(&e, deleted, fx);
        }
    }

    /// Rejected without requeue: dead-letter (reason rejected) and let go.
    pub fn discard(&self, entries: impl IntoIterator<Item = QueuedMessage>, fx: &mut Effects) {
        if self.is_stream() {
            return self.settle(entries, fx);
        }
        let (deleted, args) = {
            let st = self.lock();
            (st.deleted, st.args.clone())
        };
        for e in entries {
            self.returned(1);
            self.dead_letter(&args, &e.message, Reason::Rejected, fx);
            self.forget(&e, deleted, fx);
        }
    }

    /// A message leaves the queue for good.
    pub(super) fn forget(&self, e: &QueuedMessage, queue_deleted: bool, fx: &mut Effects) {
        if let Some(d) = &self.dedup {
            d.release(&e.message);
        }
        self.forget_message(&e.message, queue_deleted, Some(e.seq), fx);
    }

    /// Drop this queue's hold on a stored message: its index entry (unless the whole index
    /// went with the queue) and, with the last reference, the record.
    pub(super) fn forget_message(
        &self,
        m: &Arc<Message>,
        queue_deleted: bool,
        seq: Option<u64>,
        fx: &mut Effects,
    ) {
        let Some(key) = &self.config.store_key else {
            return;
        };
        if m.store_id == 0 {
            return;
        }
        // Once durable, by id and position alone: an ack that waits for the committer then
        // does not keep the body in memory (a drained deep queue would otherwise hold every
        // message it read back until the committer caught up).
        let durable = m.store_state.load(std::sync::atomic::Ordering::Relaxed)
            == crate::store::committer::DURABLE;
        if let (false, Some(seq)) = (queue_deleted, seq) {
            fx.ops.push(if durable {
                Op::UnindexDurable(key.clone(), seq)
            } else {
                Op::Unindex(key.clone(), seq, m.clone())
            });
        }
        if m.release_store_ref() {
            fx.ops.push(if durable {
                Op::DeleteDurable(m.store_id)
            } else {
                Op::DeleteMessage(m.clone())
            });
        }
    }
}
