//! Handing ready messages to consumers: who gets the next one (priority, round robin,
//! single active consumer), credit, and consumers coming and going.

use super::*;
use crate::stats::Stat;

impl Queue {
    /// Deliver again after consumers regained credit.
    pub fn kick(self: &Arc<Self>, fx: &mut Effects) {
        let mut st = self.lock();
        self.dispatch(&mut st, fx);
    }

    /// The consumer that gets the next message: highest priority first, round robin among
    /// equals; with single-active-consumer only the earliest registered one.
    pub(super) fn pick_consumer(st: &State, sac: bool) -> Option<usize> {
        let n = st.consumers.len();
        if sac {
            return (n > 0 && st.consumers[0].try_acquire()).then_some(0);
        }
        let start = st.cursor % n.max(1);
        // Walk the priority levels from the top without allocating: this runs once per
        // publish, and almost always over a single level.
        let mut level = st.consumers.iter().map(|c| c.priority).max()?;
        loop {
            let found = (0..n)
                .map(|i| (start + i) % n)
                .find(|&i| st.consumers[i].priority == level && st.consumers[i].try_acquire());
            if found.is_some() {
                return found;
            }
            level = st
                .consumers
                .iter()
                .map(|c| c.priority)
                .filter(|&p| p < level)
                .max()?;
        }
    }

    /// Hand ready messages to consumers with credit, one inbox message each. (Sending a run
    /// of deliveries as one message was measured slower: ARCHITECTURE.md, "Decisions".)
    pub(super) fn dispatch(self: &Arc<Self>, st: &mut State, fx: &mut Effects) {
        self.dispatch_at(st, fx, None);
    }

    /// `dispatch` with the time the caller read (None: read here, only when a message has an
    /// expiry): a publish with TTL 0 expires at the moment it was enqueued, and a consumer
    /// ready then still takes it.
    pub(super) fn dispatch_at(self: &Arc<Self>, st: &mut State, fx: &mut Effects, at: Option<u64>) {
        if let Some(log) = &self.config.log {
            return self.dispatch_stream(st, log);
        }
        while !st.ready.is_empty() && !st.consumers.is_empty() {
            if let Some(t) = st.ready.front().and_then(|e| e.expires_at) {
                let now = at.unwrap_or_else(|| self.now());
                if t < now {
                    self.expire(st, now, fx);
                    continue;
                }
            }
            let Some(idx) = Self::pick_consumer(st, self.config.args.single_active_consumer) else {
                return;
            };
            let Some(entry) = self.pop_unexpired(st, at, fx) else {
                st.consumers[idx].release();
                return;
            };
            let c = &st.consumers[idx];
            let kind = if c.no_ack {
                Stat::DeliverNoAck
            } else {
                Stat::Deliver
            };
            let redelivered = entry.redelivered;
            let delivery = Delivery {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
                queue: self.clone(),
                entry,
                no_ack: c.no_ack,
                credit: c.credit.clone(),
            };
            match c.outbox.send(Outbound::Deliver(delivery)) {
                Ok(()) => {
                    st.cursor = idx + 1;
                    self.outstanding.fetch_add(1, Ordering::Relaxed);
                    st.counts.add(kind, 1);
                    if redelivered {
                        st.counts.add(Stat::Redeliver, 1);
                    }
                }
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

    pub fn add_consumer(self: &Arc<Self>, consumer: Consumer, fx: &mut Effects) -> AmqpResult<()> {
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
        let mut consumer = consumer;
        if let (Some(log), Some(r)) = (&self.config.log, consumer.stream.as_mut()) {
            let at = self.stream_start(log, r.start());
            r.begin(at);
        }
        st.consumers.push(consumer);
        st.had_consumers = true;
        st.last_used = self.now();
        self.dispatch(&mut st, fx);
        Ok(())
    }

    /// Remove one consumer; returns true when an auto-delete queue just lost its last one.
    pub fn remove_consumer(self: &Arc<Self>, conn_id: u64, channel: u16, tag: &str) -> bool {
        let mut st = self.lock();
        let before = st.consumers.len();
        st.consumers
            .retain(|c| !(c.conn_id == conn_id && c.channel == channel && &*c.tag == tag));
        let removed = st.consumers.len() != before;
        st.last_used = self.now();
        if removed && st.consumers.is_empty() && st.args.expires.is_some() {
            self.wake.notify_one();
        }
        removed && self.config.auto_delete && st.consumers.is_empty() && st.had_consumers
    }
}
