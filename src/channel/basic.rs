//! basic.* methods: qos, consume/cancel, publish, get, ack/nack/reject, recover; and writing
//! deliveries out.

use super::{Channel, ConsumerInfo, Content, Cx, Unacked};
use crate::auth::{Kind, Perm};
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::queue::{Consumer, Credit, Delivery, Return};
use crate::vhost::REPLY_TO;
use amq_protocol::protocol::{basic, AMQPClass};
use std::sync::Arc;

/// In-flight window of a no-ack consumer: deliveries sitting in the connection's inbox.
/// Bounds memory when a no-ack consumer reads slower than publishers write.
const NO_ACK_WINDOW: u32 = 2000;

/// What became of one publish, for its confirm.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PublishOutcome {
    /// Committer ticket the confirm waits for (stored messages).
    pub ticket: Option<u64>,
    /// Some queue refused it (x-overflow reject-publish): the confirm is a nack.
    pub rejected: bool,
}

pub(super) enum Settle {
    Ack,
    Requeue,
    Discard,
}

impl Channel {
    pub(super) fn basic_method(&mut self, m: basic::AMQPMethod, cx: &mut Cx<'_>) -> AmqpResult<()> {
        use basic::AMQPMethod as M;
        match m {
            M::Qos(q) => {
                if q.global {
                    self.channel_credit.set_limit(q.prefetch_count.into());
                } else {
                    self.prefetch = q.prefetch_count.into();
                }
                cx.send(self.id, AMQPClass::Basic(M::QosOk(basic::QosOk {})));
                // A raised limit may let queues deliver again.
                for c in self.consumers.values() {
                    cx.kick(&c.queue);
                }
                Ok(())
            }
            M::Consume(c) => self.consume(c, cx),
            M::Cancel(c) => {
                let tag = c.consumer_tag.as_str();
                if self.reply_consumer_tag().is_some_and(|t| &**t == tag) {
                    if let Some((_, token)) = self.reply_to.take() {
                        cx.conn.vhost.remove_reply_consumer(&token);
                    }
                }
                if let Some(info) = self.consumers.remove(tag) {
                    if info.queue.remove_consumer(cx.conn.id, self.id, tag) {
                        cx.conn.vhost.auto_delete_queue(&info.queue, cx.fx);
                    }
                }
                if !c.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Basic(M::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            M::Publish(p) => {
                if p.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                self.assembler.start(p);
                Ok(())
            }
            M::Get(g) => self.get(g, cx),
            M::Ack(a) => {
                let acked = self.take_settled(a.delivery_tag, a.multiple)?;
                self.settle(acked, Settle::Ack, cx);
                Ok(())
            }
            M::Reject(r) => {
                let entries = self.take_settled(r.delivery_tag, false)?;
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(entries, how, cx);
                Ok(())
            }
            M::Nack(n) => {
                let entries = self.take_settled(n.delivery_tag, n.multiple)?;
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(entries, how, cx);
                Ok(())
            }
            M::Recover(r) => {
                self.recover(r.requeue, cx)?;
                cx.send(self.id, AMQPClass::Basic(M::RecoverOk(basic::RecoverOk {})));
                Ok(())
            }
            M::RecoverAsync(r) => self.recover(r.requeue, cx),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn recover(&mut self, requeue: bool, cx: &mut Cx<'_>) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let all = std::mem::take(&mut self.unacked);
        self.requeue_unacked(all.into_values(), Return::ByClient, cx.fx);
        Ok(())
    }

    fn consume(&mut self, c: basic::Consume, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let requested_tag = c.consumer_tag.to_string();
        // As rabbit_channel: only a new tag counts; a tag in use gets the reuse error below.
        if let Some(max) = cx.conn.max_consumers_per_channel {
            if !self.consumers.contains_key(requested_tag.as_str()) && self.consumers.len() >= max {
                return Err(AmqpError::not_allowed(format!(
                    "reached maximum ({max}) of consumers per channel"
                )));
            }
        }
        if !requested_tag.is_empty()
            && (self.consumers.contains_key(requested_tag.as_str())
                || self
                    .reply_consumer_tag()
                    .is_some_and(|t| **t == *requested_tag))
        {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{requested_tag}'"
            )));
        }
        let tag: Arc<str> = if requested_tag.is_empty() {
            crate::names::consumer_tag().into()
        } else {
            requested_tag.into()
        };
        if c.queue.as_str() == REPLY_TO {
            if !c.no_ack {
                return Err(AmqpError::precondition_failed(
                    "reply consumer cannot acknowledge",
                ));
            }
            if self.reply_to.is_some() {
                return Err(AmqpError::precondition_failed("reply consumer already set"));
            }
            let token = cx
                .conn
                .vhost
                .add_reply_consumer(self.id, cx.conn.outbox.clone());
            self.reply_to = Some((tag.clone(), token));
        } else {
            let priority = match crate::args::get(&c.arguments, "x-priority") {
                None => 0,
                Some(v) => crate::args::as_i64(v)
                    .and_then(|p| i32::try_from(p).ok())
                    .ok_or_else(|| {
                        AmqpError::precondition_failed(format!(
                            "invalid arg 'x-priority' for consumer: {{unacceptable_type,{}}}",
                            crate::args::type_name(v)
                        ))
                    })?,
            };
            let name = self.queue_name(c.queue.as_str())?;
            self.require(cx, Perm::Read, Kind::Queue, &name)?;
            let q = cx.conn.vhost.queue_for(&name, cx.conn.id)?;
            let credit = if c.no_ack {
                Credit::new(NO_ACK_WINDOW)
            } else {
                Credit::new(self.prefetch)
            };
            q.add_consumer(
                Consumer {
                    tag: tag.clone(),
                    conn_id: cx.conn.id,
                    channel: self.id,
                    outbox: cx.conn.outbox.clone(),
                    no_ack: c.no_ack,
                    exclusive: c.exclusive,
                    priority,
                    credit,
                    channel_credit: (!c.no_ack).then(|| self.channel_credit.clone()),
                },
                cx.fx,
            )?;
            self.consumers.insert(
                tag.clone(),
                ConsumerInfo {
                    queue: q,
                    no_ack: c.no_ack,
                },
            );
        }
        if !c.nowait {
            cx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: crate::names::short(tag.as_ref()),
                })),
            );
        }
        Ok(())
    }

    fn get(&mut self, g: basic::Get, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let name = self.queue_name(g.queue.as_str())?;
        self.require(cx, Perm::Read, Kind::Queue, &name)?;
        let q = cx.conn.vhost.queue_for(&name, cx.conn.id)?;
        let Some((entry, left)) = q.get(cx.fx)? else {
            cx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let stats = &cx.conn.meta.stats;
        stats
            .delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// Remove the deliveries an ack/nack/reject names, with RabbitMQ's rules
    /// (rabbit_channel:collect_acks): tag 0 with multiple means everything outstanding.
    pub(super) fn take_settled(
        &mut self,
        tag: u64,
        multiple: bool,
    ) -> AmqpResult<Vec<(u64, Unacked)>> {
        let unknown = || AmqpError::precondition_failed(format!("unknown delivery tag {tag}"));
        if multiple {
            if tag == 0 {
                return Ok(std::mem::take(&mut self.unacked).into_iter().collect());
            }
            // Unknown only if nothing at or beyond the tag is outstanding.
            if self.unacked.range(tag..).next().is_none() {
                return Err(unknown());
            }
            let keep = match self.unacked.contains_key(&tag) {
                true => self.unacked.split_off(&(tag + 1)),
                false => self.unacked.split_off(&tag),
            };
            let taken = std::mem::replace(&mut self.unacked, keep);
            return Ok(taken.into_iter().collect());
        }
        match self.unacked.remove(&tag) {
            Some(u) => Ok(vec![(tag, u)]),
            None => Err(unknown()),
        }
    }

    pub(super) fn settle(&mut self, entries: Vec<(u64, Unacked)>, how: Settle, cx: &mut Cx<'_>) {
        if entries.is_empty() {
            return;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.settles.push((entries, how));
            return;
        }
        self.apply_settle(entries, how, cx);
    }

    pub(super) fn apply_settle(
        &mut self,
        entries: Vec<(u64, Unacked)>,
        how: Settle,
        cx: &mut Cx<'_>,
    ) {
        match how {
            Settle::Requeue => {
                self.requeue_unacked(entries.into_iter().map(|(_, u)| u), Return::ByClient, cx.fx)
            }
            Settle::Ack | Settle::Discard => {
                let discard = matches!(how, Settle::Discard);
                let mut channel_reopened = false;
                for (_, u) in entries {
                    if let Some(c) = &u.credit {
                        if c.release(1) {
                            cx.kick(&u.queue);
                        }
                        channel_reopened |= self.channel_credit.release(1);
                    }
                    if discard {
                        u.queue.discard([u.entry], cx.fx);
                    } else {
                        u.queue.settle([u.entry], cx.fx);
                    }
                }
                if channel_reopened {
                    for c in self.consumers.values() {
                        cx.kick(&c.queue);
                    }
                }
            }
        }
    }

    /// A complete basic.publish arrived.
    pub(super) fn publish(&mut self, content: Content, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let Content {
            publish,
            mut properties,
            raw_properties,
            body,
        } = content;
        let stats = &cx.conn.meta.stats;
        stats
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rewritten = false;
        let vh = cx.conn.vhost.clone();
        let exchange = publish.exchange.as_str();
        self.require(cx, Perm::Write, Kind::Exchange, exchange)?;
        vh.check_publish(exchange, &properties, &cx.conn.user)?;
        self.require_topic(cx, Perm::Write, exchange, publish.routing_key.as_str())?;
        if properties
            .reply_to()
            .as_ref()
            .is_some_and(|r| r.as_str() == REPLY_TO)
        {
            let Some((_, token)) = &self.reply_to else {
                return Err(AmqpError::precondition_failed(
                    "fast reply consumer does not exist",
                ));
            };
            properties = properties.with_reply_to(format!("{REPLY_TO}.{token}").into());
            rewritten = true;
        }
        // Sender-selected distribution: CC and BCC list more routing keys; BCC is removed
        // before the message goes anywhere.
        let mut extra_keys = Vec::new();
        if let Some(headers) = properties.headers() {
            extra_keys = crate::message::listed_keys(headers, "CC");
            let bcc = crate::message::listed_keys(headers, "BCC");
            if headers.contains_key("BCC") {
                let mut kept = amq_protocol::types::FieldTable::default();
                for (k, v) in headers.inner() {
                    if k.as_str() != "BCC" {
                        kept.insert(k.clone(), v.clone());
                    }
                }
                properties = properties.with_headers(kept);
                rewritten = true;
            }
            extra_keys.extend(bcc);
        }
        let (exchange, routing_key) = self.names(exchange, publish.routing_key.as_str());
        let message = if rewritten {
            Message::new(exchange, routing_key, properties, body)
        } else {
            Message::with_raw(exchange, routing_key, &properties, &raw_properties, body)
        };
        if let Some(tx) = self.tx.as_mut() {
            let bytes = message.body.len() + message.raw_properties().len();
            cx.conn.pending.take(&mut tx.hold, bytes as u64)?;
            tx.publishes.push((message, publish.mandatory, extra_keys));
            return Ok(());
        }
        let outcome = self.route_and_enqueue(message, publish.mandatory, &extra_keys, cx)?;
        if let Some(c) = self.confirm.as_mut() {
            c.published(outcome.ticket, outcome.rejected);
        }
        Ok(())
    }

    /// Route, store (persistent messages reaching durable queues), enqueue, and return
    /// unroutable mandatory messages. Returns the committer ticket a confirm must wait for.
    pub(super) fn route_and_enqueue(
        &mut self,
        message: Message,
        mandatory: bool,
        extra_keys: &[String],
        cx: &mut Cx<'_>,
    ) -> AmqpResult<PublishOutcome> {
        let vhost = cx.conn.vhost.clone();
        let origin = crate::vhost::TraceOrigin {
            connection: &cx.conn.meta.name,
            channel: self.id,
            user: &cx.conn.user,
        };
        // Kept for a mandatory return (a copy of a few reference counts, only when asked).
        let returned = mandatory.then(|| message.shallow_clone());
        let outcome = match vhost.publish(message, extra_keys, &origin, cx.fx) {
            Ok(o) => o,
            // The exchange went away between publish and commit: the message is unroutable.
            Err(e) if self.tx.is_some() && e.code() == crate::error::code::NOT_FOUND => {
                Default::default()
            }
            Err(e) => return Err(e),
        };
        if outcome.routed {
            return Ok(PublishOutcome {
                ticket: outcome.stored.then_some(cx.fx.ticket()),
                rejected: outcome.rejected,
            });
        }
        if let Some(message) = returned {
            // Settle earlier confirms first, so the return is followed by its own ack: clients
            // (lapin among them) pair a return with the next ack they see.
            if self.tx.is_none() {
                self.flush_confirms(cx.out, 0);
            }
            cx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                    reply_code: 312,
                    reply_text: "NO_ROUTE".into(),
                    exchange: crate::names::short(&message.exchange),
                    routing_key: crate::names::short(&message.routing_key),
                })),
            );
            crate::codec::write_content(
                cx.out,
                self.id,
                message.raw_properties(),
                &message.body,
                cx.conn.frame_max,
            );
        }
        Ok(PublishOutcome::default())
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

    /// A queue this channel consumed from was deleted (server-initiated cancel).
    pub fn consumer_cancelled(&mut self, tag: &str, cx: &mut Cx<'_>) {
        if self.consumers.remove(tag).is_some()
            && !self.closing
            && cx.conn.caps.consumer_cancel_notify
        {
            cx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: crate::names::short(tag),
                    nowait: true,
                })),
            );
        }
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
