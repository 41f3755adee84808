//! What reaches the connection through its inbox (deliveries, direct replies, server cancels,
//! forced closes, the committer's reports), and giving back what is left in it at the end.

use super::*;

impl Connection {
    pub(super) fn outbound(&mut self, m: Outbound) {
        match m {
            Outbound::Deliver(d) => {
                if d.no_ack && d.credit.release(1) {
                    let q = d.queue.clone();
                    if !self.kicks.iter().any(|k| Arc::ptr_eq(k, &q)) {
                        self.kicks.push(q);
                    }
                }
                match self.channels.get_mut(&d.channel) {
                    Some(channel) => {
                        let mut cx = cx!(self);
                        channel.deliver(d, &mut cx);
                    }
                    None => d.give_back(&mut self.fx),
                }
            }
            Outbound::Reply { channel, message } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    let mut cx = cx!(self);
                    c.deliver_reply(&message, &mut cx);
                }
            }
            Outbound::Cancel {
                channel,
                consumer_tag,
            } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    let mut cx = cx!(self);
                    c.consumer_cancelled(&consumer_tag, &mut cx);
                }
            }
            Outbound::Snapshot(reply) => {
                let mut list: Vec<_> = self.channels.values().map(Channel::snapshot).collect();
                list.sort_by_key(|c| c.number);
                let _ = reply.send(list);
            }
            Outbound::ClockMoved(done) => {
                self.now = self.broker.clock.now_ms();
                self.ack_timeouts();
                let _ = done.send(());
            }
            Outbound::ForceClose(reason) => {
                self.close_connection(AmqpError::connection_forced(reason));
            }
            Outbound::Durable(ticket) => {
                self.durable_ticket = self.durable_ticket.max(ticket);
                if let Some(s) = self.fx.origin.as_mut() {
                    s.durable(ticket);
                }
                if self.barrier.is_some_and(|b| b <= ticket) {
                    self.barrier = None;
                    let held = std::mem::take(&mut self.held);
                    self.out.extend_from_slice(&held);
                }
            }
            Outbound::StoreFailed(ticket) => {
                // Publishes in the failed commit are nacked (the commit is retried, and they
                // stay in their queues); a reply promised on durability cannot be given.
                let mut promised = self.barrier.is_some_and(|b| b <= ticket);
                for ch in self.channels.values_mut() {
                    promised |= ch.store_failed(ticket);
                }
                self.durable_ticket = self.durable_ticket.max(ticket);
                if promised {
                    self.barrier = None;
                    self.held.clear();
                    self.close_connection(AmqpError::internal_error(
                        "storage failed; the change is not durable yet and is being retried",
                    ));
                }
            }
        }
    }

    /// Deliveries still in the inbox go back to their queues.
    pub(super) fn release_inbox(&mut self, inbox: &mut mpsc::UnboundedReceiver<Outbound>) {
        inbox.close();
        while let Ok(m) = inbox.try_recv() {
            if let Outbound::Deliver(d) = m {
                d.give_back(&mut self.fx);
            }
        }
    }
}
