//! basic.* methods: dispatch, qos, consume/cancel. Publishing is in `publish`, basic.get and
//! writing deliveries out in `deliver`, ack/nack/reject/recover in `settle`.

use super::settle::Settle;
use super::{Channel, ConsumerInfo, Cx};
use crate::auth::{Kind, Perm};
use crate::error::{AmqpError, AmqpResult};
use crate::queue::{Consumer, Credit};
use crate::vhost::REPLY_TO;
use amq_protocol::protocol::{basic, AMQPClass};
use std::sync::Arc;

/// In-flight window of a no-ack consumer: deliveries sitting in the connection's inbox.
/// Bounds memory when a no-ack consumer reads slower than publishers write.
const NO_ACK_WINDOW: u32 = 2000;

/// A stream delivery cannot be rejected or nacked: RabbitMQ closes the connection with 540.
fn refuse_stream_returns(entries: &[(u64, super::Unacked)]) -> AmqpResult<()> {
    match entries.iter().find(|(_, u)| u.queue.is_stream()) {
        None => Ok(()),
        Some((_, u)) => Err(AmqpError::not_implemented(format!(
            "basic.nack and basic.reject not supported by stream queues queue '{}' in vhost '{}'",
            u.queue.config.name, u.queue.config.vhost
        ))),
    }
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
                refuse_stream_returns(&entries)?;
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
                refuse_stream_returns(&entries)?;
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
            let stream = match q.is_stream() {
                true => Some(self.stream_consumer(&c, &q)?),
                false => None,
            };
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
                    stream,
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

    /// A consumer of a stream: what RabbitMQ refuses (no prefetch, automatic ack, a
    /// priority), in its order, and where it starts.
    fn stream_consumer(
        &self,
        c: &basic::Consume,
        q: &crate::queue::Queue,
    ) -> AmqpResult<crate::queue::stream::Reading> {
        let (name, vhost) = (&q.config.name, &q.config.vhost);
        if self.prefetch == 0 {
            return Err(AmqpError::precondition_failed(format!(
                "consumer prefetch count is not set for 'queue '{name}' in vhost '{vhost}''"
            )));
        }
        if c.no_ack {
            return Err(AmqpError::not_implemented(format!(
                "automatic acknowledgement not supported by stream queues queue '{name}' in \
                 vhost '{vhost}'"
            )));
        }
        if crate::args::get(&c.arguments, "x-priority").is_some() {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg 'x-priority' for queue '{name}' in vhost '{vhost}' of queue type \
                 rabbit_stream_queue"
            )));
        }
        crate::queue::stream::consumer_args(&c.arguments, name, vhost)
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
