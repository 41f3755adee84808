//! One AMQP channel: its state, and dispatch of its frames to the class handlers.

mod access;
mod assembler;
mod basic;
mod conn;
mod deliver;
mod held;
mod publish;
mod settle;
mod topology;
mod tx;

pub use access::denied_text as access_denied_text;
pub use assembler::{Assembler, Content, DEFAULT_MAX_MESSAGE_SIZE};
pub use conn::{ClientCaps, ConnInfo};
pub use held::Budget;

use crate::error::{AmqpError, AmqpResult};
use crate::queue::Effects;
use crate::queue::{Credit, Queue, QueuedMessage, Return};
use amq_protocol::protocol::AMQPClass;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// What a handler may touch beyond its own channel.
pub struct Cx<'a> {
    pub conn: &'a ConnInfo,
    /// The connection's write buffer.
    pub out: &'a mut Vec<u8>,
    /// Queues whose consumers regained credit; kicked once at the end of the read burst.
    pub kicks: &'a mut Vec<Arc<Queue>>,
    /// Storage writes and dead letters of this burst, handled once at its end; its origin
    /// holds the committer ticket they will be submitted under.
    pub fx: &'a mut Effects,
    /// The time of this read burst or inbox drain (ms since the epoch).
    pub now: u64,
}

impl Cx<'_> {
    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        crate::codec::write_method(self.out, channel, method);
    }

    pub fn kick(&mut self, q: &Arc<Queue>) {
        if !self.kicks.iter().any(|k| Arc::ptr_eq(k, q)) {
            self.kicks.push(q.clone());
        }
    }
}

/// A delivery not yet acknowledged by the client.
#[derive(Debug)]
pub struct Unacked {
    pub queue: Arc<Queue>,
    pub entry: QueuedMessage,
    /// Credit to give back on settlement (None for basic.get).
    pub credit: Option<Arc<Credit>>,
    /// When it was delivered (ms since the epoch), for consumer_timeout.
    pub at: u64,
}

#[derive(Debug)]
pub struct ConsumerInfo {
    pub queue: Arc<Queue>,
    pub no_ack: bool,
}

/// Publisher-confirm bookkeeping. A tag is confirmed once it and every tag before it are
/// enqueued and, for stored messages, durable; acks go out as one basic.ack(multiple) over
/// such a contiguous run, so a fast transient confirm never covers a slower persistent one. A
/// nack (a queue refused the message) breaks the run and goes out on its own.
#[derive(Debug, Default)]
pub struct ConfirmState {
    /// Tag of the last publish (confirm tags start at 1).
    last_seq: u64,
    /// Highest tag settled (acked or nacked) to the client.
    acked_upto: u64,
    /// Publishes that are not a plain immediate ack, in tag order: (tag, ticket to wait for,
    /// nack).
    special: VecDeque<(u64, Option<u64>, bool)>,
}

/// One confirm frame to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirm {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64 },
}

impl ConfirmState {
    /// Publishes not yet confirmed to the client.
    pub fn unconfirmed(&self) -> u64 {
        self.last_seq - self.acked_upto
    }

    pub fn published(&mut self, ticket: Option<u64>, nack: bool) {
        self.last_seq += 1;
        if ticket.is_some() || nack {
            self.special.push_back((self.last_seq, ticket, nack));
        }
    }

    /// The commit holding writes up to `ticket` failed: their publishes are nacked (RabbitMQ's
    /// answer when it cannot take responsibility for a message).
    pub fn failed(&mut self, ticket: u64) {
        for (_, t, nack) in self.special.iter_mut() {
            if t.is_some_and(|t| t <= ticket) {
                *nack = true;
            }
        }
    }

    /// The confirms to send now, given the durable ticket.
    pub fn ready(&mut self, durable: u64) -> Vec<Confirm> {
        let mut out = Vec::new();
        loop {
            // Ack everything up to the next special tag (or the end).
            let upto = self
                .special
                .front()
                .map_or(self.last_seq, |&(tag, _, _)| tag - 1);
            if upto > self.acked_upto {
                out.push(Confirm::Ack {
                    tag: upto,
                    multiple: upto - self.acked_upto > 1,
                });
                self.acked_upto = upto;
            }
            let Some(&(tag, ticket, nack)) = self.special.front() else {
                return out;
            };
            if ticket.is_some_and(|t| t > durable) {
                return out;
            }
            self.special.pop_front();
            if nack {
                out.push(Confirm::Nack { tag });
                self.acked_upto = tag;
            }
            // A durable stored message simply joins the next ack run.
        }
    }
}

#[derive(Debug)]
pub struct Channel {
    pub id: u16,
    /// The server sent channel.close and waits for close-ok; other frames are dropped.
    pub closing: bool,
    pub assembler: Assembler,
    next_delivery_tag: u64,
    pub unacked: BTreeMap<u64, Unacked>,
    pub consumers: HashMap<Arc<str>, ConsumerInfo>,
    /// basic.qos global=false: prefetch for consumers created from now on.
    prefetch: u32,
    /// basic.qos global=true: one budget shared by every consumer on the channel.
    channel_credit: Arc<Credit>,
    pub(crate) confirm: Option<ConfirmState>,
    pub(crate) tx: Option<tx::TxState>,
    /// tx.commit-ok held back until this committer ticket is durable.
    commit_wait: Option<u64>,
    /// Queue named by the last queue.declare, for methods that pass an empty queue name.
    last_queue: Option<String>,
    /// Direct reply-to: the consumer tag and the routing token for this channel.
    reply_to: Option<(Arc<str>, String)>,
    /// The exchange and routing key of the last publish, shared by the messages that repeat
    /// them (a queue of a million messages then holds two name allocations, not two million).
    names: (Option<Arc<str>>, Option<Arc<str>>),
    /// Recent permission grants (see `access`).
    access: access::AccessCache,
    /// This channel's message_stats counts (the connection's are atomics beside them).
    counts: crate::stats::Local,
}

impl Channel {
    pub fn new(id: u16) -> Self {
        Channel {
            id,
            closing: false,
            assembler: Assembler::default(),
            next_delivery_tag: 1,
            unacked: BTreeMap::new(),
            consumers: HashMap::new(),
            prefetch: 0,
            channel_credit: Credit::new(0),
            confirm: None,
            tx: None,
            commit_wait: None,
            last_queue: None,
            reply_to: None,
            names: Default::default(),
            access: Default::default(),
            counts: Default::default(),
        }
    }

    /// The exchange and routing key as shared strings, reusing the previous publish's.
    pub(super) fn names(&mut self, exchange: &str, routing_key: &str) -> (Arc<str>, Arc<str>) {
        fn intern(slot: &mut Option<Arc<str>>, s: &str) -> Arc<str> {
            match slot {
                Some(a) if &**a == s => a.clone(),
                _ => {
                    let a: Arc<str> = s.into();
                    *slot = Some(a.clone());
                    a
                }
            }
        }
        (
            intern(&mut self.names.0, exchange),
            intern(&mut self.names.1, routing_key),
        )
    }

    /// What the management API shows of this channel.
    pub fn snapshot(&self) -> crate::meta::ChannelSnapshot {
        crate::meta::ChannelSnapshot {
            number: self.id,
            consumer_count: self.consumers.len() + usize::from(self.reply_to.is_some()),
            messages_unacknowledged: self.unacked.len(),
            messages_unconfirmed: self.confirm.as_ref().map_or(0, ConfirmState::unconfirmed),
            messages_uncommitted: self.tx.as_ref().map_or(0, |t| t.publishes.len()),
            acks_uncommitted: self.tx.as_ref().map_or(0, |t| t.settles.len()),
            prefetch_count: self.prefetch,
            global_prefetch_count: self.channel_credit.limit(),
            confirm: self.confirm.is_some(),
            transactional: self.tx.is_some(),
            counts: self.counts.sample(),
        }
    }

    /// Count an event for this channel and its connection (message_stats).
    pub(super) fn count(&mut self, conn: &ConnInfo, s: crate::stats::Stat, n: u64) {
        self.counts.add(s, n);
        conn.meta.stats.messages.add(s, n);
    }

    pub fn next_tag(&mut self) -> u64 {
        let t = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        t
    }

    pub fn reply_consumer_tag(&self) -> Option<&Arc<str>> {
        self.reply_to.as_ref().map(|(tag, _)| tag)
    }

    /// Resolve an empty queue name to the channel's last declared queue.
    fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// Handle a method on this (open) channel; channel.open/close are the connection's.
    pub fn handle_method(&mut self, method: AMQPClass, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let class_id = method.get_amqp_class_id();
        let method_id = method.get_amqp_method_id();
        if !self.assembler.expecting_method() {
            return Err(self
                .assembler
                .method_out_of_place()
                .or_on(class_id, method_id));
        }
        let r = match method {
            AMQPClass::Exchange(m) => self.exchange_method(m, cx),
            AMQPClass::Queue(m) => self.queue_method(m, cx),
            AMQPClass::Basic(m) => self.basic_method(m, cx),
            AMQPClass::Tx(m) => self.tx_method(m, cx),
            AMQPClass::Confirm(m) => self.confirm_method(m, cx),
            AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::Request(_)) => {
                // Deprecated, but RabbitMQ still answers it (with ticket 1).
                cx.send(
                    self.id,
                    AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::RequestOk(
                        amq_protocol::protocol::access::RequestOk {},
                    )),
                );
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        };
        r.map_err(|e| e.or_on(class_id, method_id))
    }

    pub fn header(
        &mut self,
        header: amq_protocol::frame::AMQPContentHeader,
        raw_properties: bytes::Bytes,
        cx: &mut Cx<'_>,
    ) -> AmqpResult<()> {
        match self.assembler.header(
            header,
            raw_properties,
            cx.conn.max_message_size,
            &cx.conn.pending,
        )? {
            Some(content) => self.publish(content, cx).map_err(|e| e.or_on(60, 40)),
            None => Ok(()),
        }
    }

    pub fn body(&mut self, chunk: bytes::Bytes, cx: &mut Cx<'_>) -> AmqpResult<()> {
        match self.assembler.body(chunk)? {
            Some(content) => self.publish(content, cx).map_err(|e| e.or_on(60, 40)),
            None => Ok(()),
        }
    }

    /// The channel is going away (closed by either side, or its connection): requeue what the
    /// client never acknowledged and cancel its consumers.
    pub fn teardown(&mut self, conn: &ConnInfo, fx: &mut Effects) {
        // Consumers go first: a message requeued while its consumer is still registered would
        // be dispatched straight back to this closing channel, and be out of its queue until
        // the connection's inbox gave it back (a basic.get in between found the queue empty).
        let mut emptied = Vec::new();
        for (tag, c) in self.consumers.drain() {
            if c.queue.remove_consumer(conn.id, self.id, &tag) {
                emptied.push(c.queue);
            }
        }
        let unacked = std::mem::take(&mut self.unacked);
        self.requeue_unacked(unacked.into_values(), Return::Released, fx);
        for q in emptied {
            conn.vhost.auto_delete_queue(&q, fx);
        }
        if let Some((_, token)) = self.reply_to.take() {
            conn.vhost.remove_reply_consumer(&token);
        }
        self.tx = None;
        self.assembler = Assembler::default();
    }

    /// Requeue deliveries to their queues, grouped per queue, in tag order.
    fn requeue_unacked(
        &mut self,
        entries: impl IntoIterator<Item = Unacked>,
        how: Return,
        fx: &mut Effects,
    ) {
        let mut groups: Vec<(Arc<Queue>, Vec<QueuedMessage>)> = Vec::new();
        for u in entries {
            if let Some(c) = &u.credit {
                c.release(1);
                self.channel_credit.release(1);
            }
            match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
                Some((_, v)) => v.push(u.entry),
                None => groups.push((u.queue, vec![u.entry])),
            }
        }
        for (q, v) in groups {
            q.requeue(v, how, fx);
        }
    }

    /// The commit holding writes up to `ticket` failed: nack their confirms. Returns true when a
    /// tx.commit-ok was waiting for them (the connection then fails with 541).
    pub fn store_failed(&mut self, ticket: u64) -> bool {
        if let Some(c) = self.confirm.as_mut() {
            c.failed(ticket);
        }
        self.commit_wait.is_some_and(|t| t <= ticket)
    }

    /// When the oldest unacknowledged delivery times out (ms since the epoch), with the timeout
    /// that applies to it: its queue's x-consumer-timeout, else the broker's. Tags grow with
    /// delivery time, so the oldest is the first (RabbitMQ also judges a channel by its oldest).
    pub fn ack_deadline(&self, default: Option<u64>) -> Option<(u64, u64)> {
        let (_, u) = self.unacked.iter().next()?;
        let timeout = u.queue.config.args.consumer_timeout.or(default)?;
        Some((u.at.saturating_add(timeout), timeout))
    }

    /// Flush coalesced publisher confirms: at most one basic.ack per read burst or commit.
    pub fn flush_confirms(&mut self, out: &mut Vec<u8>, durable_ticket: u64, conn: &ConnInfo) {
        use amq_protocol::protocol::basic;
        if self.commit_wait.is_some_and(|t| t <= durable_ticket) {
            self.commit_wait = None;
            crate::codec::write_method(
                out,
                self.id,
                AMQPClass::Tx(amq_protocol::protocol::tx::AMQPMethod::CommitOk(
                    amq_protocol::protocol::tx::CommitOk {},
                )),
            );
        }
        let Some(confirm) = self.confirm.as_mut() else {
            return;
        };
        let before = confirm.acked_upto;
        let ready = confirm.ready(durable_ticket);
        let confirmed = confirm.acked_upto - before;
        for c in ready {
            let method = match c {
                Confirm::Ack { tag, multiple } => basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple,
                }),
                Confirm::Nack { tag } => basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: tag,
                    multiple: false,
                    requeue: false,
                }),
            };
            crate::codec::write_method(out, self.id, AMQPClass::Basic(method));
        }
        if confirmed > 0 {
            self.count(conn, crate::stats::Stat::Confirm, confirmed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Confirm, ConfirmState};

    #[test]
    fn confirms_cover_only_contiguous_durable_runs() {
        let mut c = ConfirmState::default();
        c.published(None, false); // 1 transient
        c.published(Some(5), false); // 2 stored, ticket 5
        c.published(None, false); // 3 transient
        assert_eq!(
            c.ready(4),
            vec![Confirm::Ack {
                tag: 1,
                multiple: false
            }]
        );
        assert_eq!(c.ready(4), vec![]);
        assert_eq!(
            c.ready(5),
            vec![Confirm::Ack {
                tag: 3,
                multiple: true
            }]
        );
        c.published(None, false); // 4
        c.published(None, true); // 5 nacked
        c.published(None, false); // 6
        c.published(None, false); // 7
        assert_eq!(
            c.ready(5),
            vec![
                Confirm::Ack {
                    tag: 4,
                    multiple: false
                },
                Confirm::Nack { tag: 5 },
                Confirm::Ack {
                    tag: 7,
                    multiple: true
                },
            ]
        );
    }
}
