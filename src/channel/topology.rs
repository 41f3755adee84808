//! exchange.* and queue.* methods.

use super::{Channel, Cx};
use crate::args;
use crate::auth::{Kind, Perm};
use crate::error::AmqpResult;
use crate::vhost::{ExchangeDecl, QueueDecl, REPLY_TO};
use amq_protocol::protocol::{exchange, queue, AMQPClass};

/// RabbitMQ strips CR and LF from names (rabbit_channel:strip_cr_lf).
fn strip_cr_lf(s: &str) -> String {
    s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

impl Channel {
    pub(super) fn exchange_method(
        &mut self,
        m: exchange::AMQPMethod,
        cx: &mut Cx<'_>,
    ) -> AmqpResult<()> {
        use exchange::AMQPMethod as M;
        let vh = cx.conn.vhost.clone();
        match m {
            M::Declare(d) => {
                let decl = ExchangeDecl {
                    name: strip_cr_lf(d.exchange.as_str()),
                    kind: d.kind.to_string(),
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments,
                };
                if !d.passive && !decl.name.is_empty() {
                    self.require(cx, Perm::Configure, Kind::Exchange, &decl.name)?;
                    if vh.exchange(&decl.name).is_none() {
                        if let Some(ae) =
                            args::get(&decl.arguments, "alternate-exchange").and_then(args::as_str)
                        {
                            self.require(cx, Perm::Read, Kind::Exchange, &decl.name)?;
                            self.require(cx, Perm::Write, Kind::Exchange, &ae)?;
                        }
                    }
                }
                vh.declare_exchange(&decl, d.passive, cx.fx)?;
                if !d.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Exchange(M::DeclareOk(exchange::DeclareOk {})),
                    );
                }
            }
            M::Delete(d) => {
                let name = strip_cr_lf(d.exchange.as_str());
                if !name.is_empty() {
                    self.require(cx, Perm::Configure, Kind::Exchange, &name)?;
                }
                vh.delete_exchange(&name, d.if_unused, cx.fx)?;
                if !d.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Exchange(M::DeleteOk(exchange::DeleteOk {})),
                    );
                }
            }
            M::Bind(b) => {
                let (dest, source) = (
                    strip_cr_lf(b.destination.as_str()),
                    strip_cr_lf(b.source.as_str()),
                );
                self.require_binding(cx, Kind::Exchange, &dest, &source, b.routing_key.as_str())?;
                vh.bind_exchange(&dest, &source, b.routing_key.as_str(), &b.arguments, cx.fx)?;
                if !b.nowait {
                    cx.send(self.id, AMQPClass::Exchange(M::BindOk(exchange::BindOk {})));
                }
            }
            M::Unbind(b) => {
                let (dest, source) = (
                    strip_cr_lf(b.destination.as_str()),
                    strip_cr_lf(b.source.as_str()),
                );
                self.require_binding(cx, Kind::Exchange, &dest, &source, b.routing_key.as_str())?;
                vh.unbind_exchange(&dest, &source, b.routing_key.as_str(), &b.arguments, cx.fx)?;
                if !b.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Exchange(M::UnbindOk(exchange::UnbindOk {})),
                    );
                }
            }
            _ => {
                return Err(crate::error::AmqpError::command_invalid(
                    "unimplemented method",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn queue_method(&mut self, m: queue::AMQPMethod, cx: &mut Cx<'_>) -> AmqpResult<()> {
        use queue::AMQPMethod as M;
        let vh = cx.conn.vhost.clone();
        let conn_id = cx.conn.id;
        match m {
            M::Declare(d) => {
                let requested = strip_cr_lf(d.queue.as_str());
                if requested == REPLY_TO {
                    // The direct reply-to pseudo-queue always "exists" (Spring AMQP probes it).
                    if !d.nowait {
                        cx.send(
                            self.id,
                            AMQPClass::Queue(M::DeclareOk(queue::DeclareOk {
                                queue: REPLY_TO.into(),
                                message_count: 0,
                                consumer_count: 1,
                            })),
                        );
                    }
                    return Ok(());
                }
                let server_named = requested.is_empty() && !d.passive;
                let name = if server_named {
                    crate::names::queue_name()
                } else {
                    self.queue_name(&requested)?
                };
                if !d.passive {
                    self.require(cx, Perm::Configure, Kind::Queue, &name)?;
                    if vh.queue(&name).is_none() {
                        if let Some(dlx) =
                            args::get(&d.arguments, "x-dead-letter-exchange").and_then(args::as_str)
                        {
                            self.require(cx, Perm::Read, Kind::Queue, &name)?;
                            self.require(cx, Perm::Write, Kind::Exchange, &dlx)?;
                        }
                    }
                }
                let decl = QueueDecl {
                    name: name.clone(),
                    server_named,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: d.arguments,
                };
                let q = vh.declare_queue(&decl, d.passive, conn_id, cx.fx)?;
                self.last_queue = Some(name.clone());
                if !d.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Queue(M::DeclareOk(queue::DeclareOk {
                            queue: crate::names::short(&name),
                            message_count: q.message_count(),
                            consumer_count: q.consumer_count(),
                        })),
                    );
                }
            }
            M::Bind(b) => {
                let name = self.queue_name(&strip_cr_lf(b.queue.as_str()))?;
                let source = strip_cr_lf(b.exchange.as_str());
                self.require_binding(cx, Kind::Queue, &name, &source, b.routing_key.as_str())?;
                vh.bind_queue(
                    &name,
                    &source,
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn_id,
                    cx.fx,
                )?;
                if !b.nowait {
                    cx.send(self.id, AMQPClass::Queue(M::BindOk(queue::BindOk {})));
                }
            }
            M::Unbind(b) => {
                let name = self.queue_name(&strip_cr_lf(b.queue.as_str()))?;
                let source = strip_cr_lf(b.exchange.as_str());
                self.require_binding(cx, Kind::Queue, &name, &source, b.routing_key.as_str())?;
                vh.unbind_queue(
                    &name,
                    &source,
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn_id,
                    cx.fx,
                )?;
                cx.send(self.id, AMQPClass::Queue(M::UnbindOk(queue::UnbindOk {})));
            }
            M::Purge(p) => {
                let name = self.queue_name(&strip_cr_lf(p.queue.as_str()))?;
                self.require(cx, Perm::Read, Kind::Queue, &name)?;
                let q = vh.queue_for(&name, conn_id)?;
                q.refuse_on_stream("queue.purge")?;
                let n = q.purge(cx.fx);
                if !p.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Queue(M::PurgeOk(queue::PurgeOk { message_count: n })),
                    );
                }
            }
            M::Delete(d) => {
                let name = self.queue_name(&strip_cr_lf(d.queue.as_str()))?;
                self.require(cx, Perm::Configure, Kind::Queue, &name)?;
                let n = vh.delete_queue(&name, d.if_unused, d.if_empty, conn_id, cx.fx)?;
                if !d.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Queue(M::DeleteOk(queue::DeleteOk { message_count: n })),
                    );
                }
            }
            _ => {
                return Err(crate::error::AmqpError::command_invalid(
                    "unimplemented method",
                ));
            }
        }
        Ok(())
    }

    /// rabbit_channel:binding_action: write on the destination, read on the source, and topic
    /// read permission on the key. The default exchange is refused later, by the vhost.
    fn require_binding(
        &mut self,
        cx: &mut Cx<'_>,
        dest_kind: Kind,
        dest: &str,
        source: &str,
        routing_key: &str,
    ) -> AmqpResult<()> {
        if dest.is_empty() || source.is_empty() {
            return Ok(());
        }
        self.require(cx, Perm::Write, dest_kind, dest)?;
        self.require(cx, Perm::Read, Kind::Exchange, source)?;
        self.require_topic(cx, Perm::Read, source, routing_key)
    }
}
