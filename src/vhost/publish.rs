//! The one way a message enters the vhost's queues: AMQP publishes, management publishes,
//! delayed messages coming due and dead letters all come through here. `publish` checks,
//! routes, traces (the firehose), holds delayed messages or enqueues; `record_for` is the one
//! place a message is given a store record.

use super::*;
use crate::stats::Stat;
use crate::vhost::TraceOrigin;

/// How a publish went, for the publisher's confirm, return or HTTP answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// A record went to the store: a confirm waits for the publisher's ticket.
    pub stored: bool,
    /// Some queue refused it (x-overflow reject-publish*): the confirm is a nack.
    pub rejected: bool,
    /// It reached a queue, a direct reply-to consumer or a delayed exchange's hold.
    pub routed: bool,
    /// Taken by a delayed exchange (mandatory does not apply, as in the plugin).
    pub delayed: bool,
}

impl VHost {
    /// What every publish is checked for, over AMQP or HTTP, with RabbitMQ's codes: the
    /// exchange exists (404) and is not internal (403), user_id is the publisher's (406), the
    /// expiration is valid (406).
    pub fn check_publish(
        &self,
        exchange: &str,
        properties: &amq_protocol::protocol::BasicProperties,
        user: &str,
    ) -> AmqpResult<()> {
        if !exchange.is_empty() {
            let x = self.exchange_for(exchange)?;
            if x.internal {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                    self.name
                )));
            }
        }
        if let Some(u) = properties.user_id() {
            if u.as_str() != user {
                return Err(AmqpError::precondition_failed(format!(
                    "user_id property set to '{u}' but authenticated user was '{user}'"
                )));
            }
        }
        if let Some(exp) = properties.expiration() {
            if let Err(why) = crate::message::parse_expiration(exp.as_str()) {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid expiration '{exp}': {why}"
                )));
            }
        }
        Ok(())
    }

    /// Route `message` from its exchange (plus CC/BCC keys) and deliver it: into the queues it
    /// reaches, or held by a delayed exchange. The firehose sees it when tracing is on.
    pub fn publish(
        &self,
        message: Message,
        extra_keys: &[String],
        origin: &TraceOrigin<'_>,
        fx: &mut Effects,
    ) -> AmqpResult<Outcome> {
        let mut routed = self.route_with(&message.exchange, &message, extra_keys)?;
        let stats = routed
            .exchange
            .as_ref()
            .map_or(&self.default_exchange_stats, |x| &x.stats);
        stats.add(Stat::PublishIn, 1);
        if !routed.is_empty() {
            stats.add(Stat::PublishOut, 1);
        }
        if self.tracing() {
            self.trace_publish(&message, &routed.queues, origin, fx);
        }
        if let Some((x, due)) = routed.delayed.take() {
            let stored = self.hold_delayed(&x, message, due, fx);
            return Ok(Outcome {
                stored,
                routed: true,
                delayed: true,
                ..Outcome::default()
            });
        }
        if routed.queues.is_empty() {
            return Ok(Outcome {
                routed: routed.replied,
                ..Outcome::default()
            });
        }
        let (stored, rejected) = self.enqueue(message, &routed.queues, fx);
        Ok(Outcome {
            stored,
            rejected,
            routed: true,
            delayed: false,
        })
    }

    /// Enqueue a routed message in its queues, storing it first when it is persistent and
    /// reaches a durable queue. Returns (stored, rejected by some queue).
    pub fn enqueue(
        &self,
        mut message: Message,
        queues: &[Arc<Queue>],
        fx: &mut Effects,
    ) -> (bool, bool) {
        // A stream keeps its own copy in its log (any message, persistent or not), written
        // and synced by the committer like a record: its confirm waits for that too.
        let durable = queues
            .iter()
            .filter(|q| q.config.store_key.is_some() && !q.is_stream())
            .count();
        let record = self.record_for(&mut message, durable);
        let message = Arc::new(message);
        let stored = record.is_some() || queues.iter().any(|q| q.is_stream());
        if let Some(record) = record {
            // The record and its index entries go in one submission (the committer's
            // ordering rule relies on it).
            fx.ops.push(Op::PutMessage(message.clone(), record));
        }
        let mut rejected = false;
        for q in queues {
            rejected |= !q.publish(message.clone(), fx);
        }
        (stored, rejected)
    }

    /// Give a persistent message its store id and record when `holders` (durable queues, or a
    /// durable delayed exchange) will keep it; None leaves it in memory only.
    pub(super) fn record_for(&self, message: &mut Message, holders: usize) -> Option<Vec<u8>> {
        let committer = self.committer.as_ref()?;
        if !message.persistent() || holders == 0 {
            return None;
        }
        message.store_id = committer.next_message_id();
        message.store_refs =
            std::sync::atomic::AtomicU32::new(u32::try_from(holders).unwrap_or(u32::MAX));
        Some(crate::store::record::encode(message))
    }
}
