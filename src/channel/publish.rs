//! basic.publish once its content is complete: checks, CC/BCC, transactions, the vhost's
//! publish path, confirms and mandatory returns.

use super::{Channel, Content, Cx};
use crate::auth::{Kind, Perm};
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::stats::Stat;
use crate::vhost::REPLY_TO;
use amq_protocol::protocol::{basic, AMQPClass};

/// What became of one publish, for its confirm.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PublishOutcome {
    /// Committer ticket the confirm waits for (stored messages).
    pub ticket: Option<u64>,
    /// Some queue refused it (x-overflow reject-publish): the confirm is a nack.
    pub rejected: bool,
}

impl Channel {
    /// A complete basic.publish arrived.
    pub(super) fn publish(&mut self, content: Content, cx: &mut Cx<'_>) -> AmqpResult<()> {
        let Content {
            publish,
            mut properties,
            raw_properties,
            body,
        } = content;
        self.count(cx.conn, Stat::Publish, 1);
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
        let Some(message) = returned else {
            self.count(cx.conn, Stat::DropUnroutable, 1);
            return Ok(PublishOutcome::default());
        };
        self.count(cx.conn, Stat::ReturnUnroutable, 1);
        // Settle earlier confirms first, so the return is followed by its own ack: clients
        // (lapin among them) pair a return with the next ack they see.
        if self.tx.is_none() {
            self.flush_confirms(cx.out, 0, cx.conn);
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
        Ok(PublishOutcome::default())
    }
}
