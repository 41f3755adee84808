//! Messages going out: basic.get, deliveries to consumers and direct reply-to, and their
//! frames (with x-delivery-count for quorum queues, and the firehose's deliver copies).

use super::{Channel, Cx, Unacked};
use crate::auth::{Kind, Perm};
use crate::error::AmqpResult;
use crate::message::Message;
use crate::queue::Delivery;
use crate::stats::Stat;
use amq_protocol::protocol::{basic, AMQPClass};

impl Channel {
    pub(super) fn get(&mut self, g: basic::Get, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let name = self.queue_name(g.queue.as_str())?;
        self.require(cx, Perm::Read, Kind::Queue, &name)?;
        let q = cx.conn.vhost.queue_for(&name, cx.conn.id)?;
        let Some((entry, left)) = q.get(g.no_ack, cx.fx)? else {
            self.count(cx.conn, Stat::GetEmpty, 1);
            cx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let kind = if g.no_ack { Stat::GetNoAck } else { Stat::Get };
        self.count(cx.conn, kind, 1);
        if entry.redelivered {
            self.count(cx.conn, Stat::Redeliver, 1);
        }
        let tag = self.next_tag();
        let m = entry.message.clone();
        cx.send(
            self.id,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: tag,
                redelivered: entry.redelivered,
                exchange: crate::names::short(&m.exchange),
                routing_key: crate::names::short(&m.routing_key),
                message_count: left,
            })),
        );
        write_message(
            cx,
            self.id,
            &m,
            q.is_quorum().then_some(entry.delivery_count),
        );
        self.trace_deliver(q.name(), &m, entry.redelivered, cx);
        if g.no_ack {
            q.settle([entry], cx.fx);
        } else {
            self.unacked.insert(
                tag,
                Unacked {
                    queue: q,
                    entry,
                    credit: None,
                    at: cx.now,
                },
            );
        }
        Ok(())
    }

    /// Write a queue's delivery out, or hand it back if its consumer is gone.
    pub fn deliver(&mut self, d: Delivery, cx: &mut Cx<'_>) {
        let alive = !self.closing && self.consumers.contains_key(&d.consumer_tag);
        if !alive {
            if !d.no_ack {
                self.channel_credit.release(1);
            }
            d.give_back(cx.fx);
            return;
        }
        let kind = if d.no_ack {
            Stat::DeliverNoAck
        } else {
            Stat::Deliver
        };
        self.count(cx.conn, kind, 1);
        if d.entry.redelivered {
            self.count(cx.conn, Stat::Redeliver, 1);
        }
        let tag = self.next_tag();
        // RabbitMQ 3.10 adds x-delivery-count to a consumer's delivery only once the message
        // came back; basic.get always carries it (rabbit_fifo_client:dequeue).
        let delivery_count =
            (d.queue.is_quorum() && d.entry.delivery_count > 0).then_some(d.entry.delivery_count);
        self.write_deliver(
            &d.consumer_tag,
            tag,
            d.entry.redelivered,
            &d.entry.message,
            delivery_count,
            cx,
        );
        self.trace_deliver(d.queue.name(), &d.entry.message, d.entry.redelivered, cx);
        if d.no_ack {
            d.queue.settle([d.entry], cx.fx);
        } else {
            self.unacked.insert(
                tag,
                Unacked {
                    queue: d.queue,
                    entry: d.entry,
                    credit: Some(d.credit),
                    at: cx.now,
                },
            );
        }
    }

    /// The firehose's deliver.{queue} copy, when the vhost traces.
    fn trace_deliver(&self, queue: &str, m: &Message, redelivered: bool, cx: &mut Cx<'_>) {
        if cx.conn.vhost.tracing() {
            let vhost = cx.conn.vhost.clone();
            let who = crate::vhost::TraceOrigin {
                connection: &cx.conn.meta.name,
                channel: self.id,
                user: &cx.conn.user,
            };
            vhost.trace_deliver(queue, m, redelivered, &who, cx.fx);
        }
    }

    /// A direct reply-to response for this channel's reply consumer.
    pub fn deliver_reply(&mut self, message: &Message, cx: &mut Cx<'_>) {
        let Some(ctag) = self.reply_consumer_tag().cloned() else {
            return;
        };
        if self.closing {
            return;
        }
        let tag = self.next_tag();
        self.write_deliver(&ctag, tag, false, message, None, cx);
    }

    fn write_deliver(
        &self,
        ctag: &str,
        tag: u64,
        redelivered: bool,
        m: &Message,
        delivery_count: Option<u32>,
        cx: &mut Cx<'_>,
    ) {
        crate::codec::write_deliver(
            cx.out,
            self.id,
            ctag,
            tag,
            redelivered,
            &m.exchange,
            &m.routing_key,
        );
        write_message(cx, self.id, m, delivery_count);
    }
}

/// Content frames of a delivery. Quorum queues tell consumers how often a message came back
/// (x-delivery-count, when given), on a copy of the properties so the shared message stays
/// untouched.
fn write_message(cx: &mut Cx<'_>, channel: u16, m: &Message, delivery_count: Option<u32>) {
    match delivery_count {
        Some(n) => {
            let props = m.properties();
            let mut headers = props.headers().clone().unwrap_or_default();
            headers.insert(
                "x-delivery-count".into(),
                amq_protocol::types::AMQPValue::LongLongInt(i64::from(n)),
            );
            let props = crate::codec::encode_properties(&props.with_headers(headers));
            crate::codec::write_content(cx.out, channel, &props, &m.body, cx.conn.frame_max);
        }
        _ => crate::codec::write_content(
            cx.out,
            channel,
            m.raw_properties(),
            &m.body,
            cx.conn.frame_max,
        ),
    }
}
