//! A virtual host: its exchanges, queues and bindings, and routing of published messages.
//!
//! Registries are `RwLock`ed maps read in short sections on the publish path; topology changes
//! are serialized by one `topology` mutex that publishing never takes.

use crate::args;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::message::Message;
use crate::queue::{Effects, QueueArgs, Sink};
use crate::queue::{Outbound, Outbox, Queue, QueueConfig};
use crate::store::{Committer, Definition, Op, Store};
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

/// The pseudo-queue of direct reply-to.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Queue arguments compared on redeclare (rabbit_amqqueue:declare_args/0).
const QUEUE_EQUIVALENCE_KEYS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-delivery-limit",
];

#[derive(Debug, Clone)]
pub struct ExchangeDecl {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone)]
pub struct QueueDecl {
    pub name: String,
    /// Named by the server (amq.gen-…), so exempt from the reserved-prefix check.
    pub server_named: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// Where a publish went.
#[derive(Debug, Default)]
pub struct Routed {
    pub queues: Vec<Arc<Queue>>,
    /// Delivered straight to a direct reply-to consumer.
    pub replied: bool,
    /// Held by a delayed exchange until this time (ms since the epoch).
    pub delayed: Option<(Arc<Exchange>, u64)>,
}

impl Routed {
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() && !self.replied && self.delayed.is_none()
    }
}

fn builtin_exchanges() -> HashMap<String, Arc<Exchange>> {
    [
        ("", ExchangeKind::Direct),
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ]
    .into_iter()
    .map(|(n, k)| {
        (
            n.to_string(),
            Exchange::new(n, k, true, false, false, FieldTable::default()),
        )
    })
    .collect()
}

#[derive(Debug)]
pub struct VHost {
    /// Handed (weakly) to queues as their `Sink`.
    me: Weak<VHost>,
    pub name: String,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Direct reply-to consumers: opaque key → (channel, connection inbox).
    reply_consumers: Mutex<HashMap<String, (u16, Outbox)>>,
    topology: Mutex<()>,
    /// Where durable definitions go (None: nothing is kept across restarts).
    store: Option<Arc<dyn Store>>,
    /// Where message writes go, once per connection read burst.
    pub committer: Option<Arc<Committer>>,
}

impl VHost {
    pub fn new(
        name: &str,
        store: Option<Arc<dyn Store>>,
        committer: Option<Arc<Committer>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| VHost {
            me: me.clone(),
            name: name.to_string(),
            queues: RwLock::new(HashMap::new()),
            reply_consumers: Mutex::new(HashMap::new()),
            topology: Mutex::new(()),
            store,
            committer,
            exchanges: RwLock::new(builtin_exchanges()),
        })
    }

    fn exchanges_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Exchange>>> {
        self.exchanges.write().unwrap_or_else(|p| p.into_inner())
    }
    fn queues_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Queue>>> {
        self.queues.write().unwrap_or_else(|p| p.into_inner())
    }
    fn serialize(&self) -> std::sync::MutexGuard<'_, ()> {
        self.topology.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_definition(&self, def: Definition) {
        if let Some(store) = &self.store {
            if let Err(e) = store.put_definition(&def) {
                tracing::error!(error = %e, ?def, "cannot store definition");
            }
        }
    }

    fn delete_definition(&self, def: Definition) {
        if let Some(store) = &self.store {
            if let Err(e) = store.delete_definition(&def) {
                tracing::error!(error = %e, ?def, "cannot delete definition");
            }
        }
    }

    fn exchange_definition(&self, x: &Exchange) -> Option<Definition> {
        (x.durable && !x.name.is_empty() && !x.name.starts_with("amq.")).then(|| {
            Definition::Exchange {
                vhost: self.name.clone(),
                name: x.name.clone(),
                kind: x.type_name().to_string(),
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: x.arguments.clone(),
            }
        })
    }

    fn queue_definition(&self, q: &Queue) -> Option<Definition> {
        q.config.store_key.as_ref().map(|_| Definition::Queue {
            vhost: self.name.clone(),
            name: q.config.name.clone(),
            auto_delete: q.config.auto_delete,
            arguments: q.config.arguments.clone(),
        })
    }

    /// A binding is kept across restarts when both its ends are.
    fn binding_definition(&self, source: &Exchange, b: &Binding) -> Option<Definition> {
        let dest_durable = match &b.destination {
            Destination::Queue(q) => q.config.store_key.is_some(),
            Destination::Exchange(name) => self.exchange(name).is_some_and(|x| x.durable),
        };
        self.binding_definition_with(source, b, dest_durable)
    }

    fn binding_definition_with(
        &self,
        source: &Exchange,
        b: &Binding,
        dest_durable: bool,
    ) -> Option<Definition> {
        if !source.durable || !dest_durable || self.store.is_none() {
            return None;
        }
        let kind = if b.destination.is_queue() {
            "queue"
        } else {
            "exchange"
        };
        Some(Definition::Binding {
            vhost: self.name.clone(),
            source: source.name.clone(),
            destination_kind: kind.to_string(),
            destination: b.destination.name().to_string(),
            routing_key: b.routing_key.clone(),
            arguments: b.arguments.clone(),
        })
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A queue the connection may use (404 if missing, 405 if another's exclusive queue).
    pub fn queue_for(&self, name: &str, conn_id: u64) -> AmqpResult<Arc<Queue>> {
        let q = self
            .queue(name)
            .ok_or_else(|| AmqpError::no_queue(name, &self.name))?;
        q.check_access(conn_id)?;
        Ok(q)
    }

    pub fn exchange_for(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        self.exchange(name)
            .ok_or_else(|| AmqpError::no_exchange(name, &self.name))
    }

    pub fn declare_exchange(&self, d: &ExchangeDecl, passive: bool) -> AmqpResult<()> {
        if d.name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if passive {
            return self.exchange_for(&d.name).map(|_| ());
        }
        if d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let Some((kind, delayed)) = crate::exchange::resolve_type(&d.kind, &d.arguments) else {
            if d.kind == crate::exchange::DELAYED_TYPE {
                // The plugin's check (rabbit_exchange_type_delayed_message:validate/1).
                return Err(AmqpError::precondition_failed(
                    "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                ));
            }
            // RabbitMQ 3.10 answers an unknown type with a connection error.
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{}'",
                d.kind
            )));
        };
        let _g = self.serialize();
        if let Some(x) = self.exchange(&d.name) {
            let ineq = |k: &str, r: &dyn std::fmt::Display, c: &dyn std::fmt::Display| {
                Err(args::inequivalent(k, "exchange", &d.name, &self.name, r, c))
            };
            if x.type_name() != d.kind || x.kind != kind {
                return ineq("type", &d.kind, &x.type_name());
            }
            if x.durable != d.durable {
                return ineq("durable", &d.durable, &x.durable);
            }
            if x.auto_delete != d.auto_delete {
                return ineq("auto_delete", &d.auto_delete, &x.auto_delete);
            }
            if x.internal != d.internal {
                return ineq("internal", &d.internal, &x.internal);
            }
            return args::assert_equivalent(
                &d.arguments,
                &x.arguments,
                &["alternate-exchange", "x-delayed-type"],
                "exchange",
                &d.name,
                &self.name,
            );
        }
        let new = if delayed {
            Exchange::new_delayed
        } else {
            Exchange::new
        };
        let x = new(
            &d.name,
            kind,
            d.durable,
            d.auto_delete,
            d.internal,
            d.arguments.clone(),
        );
        if let Some(def) = self.exchange_definition(&x) {
            self.put_definition(def);
        }
        self.exchanges_mut().insert(d.name.clone(), x);
        Ok(())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let _g = self.serialize();
        let Some(x) = self.exchange(name) else {
            return Ok(()); // idempotent, as RabbitMQ
        };
        if if_unused && x.binding_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(name);
        Ok(())
    }

    /// Drop an exchange and every binding from or to it; cascades to auto-delete exchanges.
    fn remove_exchange(&self, name: &str) {
        let Some(x) = self.exchanges_mut().remove(name) else {
            return;
        };
        if let Some(d) = &x.delayed {
            let mut fx = Effects::default();
            let held = d.drain();
            if held.values().any(|m| m.store_id != 0) {
                fx.ops.push(Op::DropQueue(delayed_key(&self.name, name)));
            }
            for m in held.values() {
                if m.release_store_ref() {
                    fx.ops.push(Op::DeleteMessage(m.store_id));
                }
            }
            self.submit(&mut fx);
        }
        for b in x.bindings() {
            if let Some(def) = self.binding_definition(&x, &b) {
                self.delete_definition(def);
            }
        }
        if let Some(def) = self.exchange_definition(&x) {
            self.delete_definition(def);
        }
        self.remove_bindings_to(&Destination::Exchange(name.to_string()), x.durable);
    }

    /// Unbind a deleted queue or exchange everywhere (`durable`: whether it was stored).
    fn remove_bindings_to(&self, dest: &Destination, durable: bool) {
        let mut emptied = Vec::new();
        for x in self.exchanges() {
            let removed = x.remove_destination(dest);
            for b in &removed {
                if let Some(def) = self.binding_definition_with(&x, b, durable) {
                    self.delete_definition(def);
                }
            }
            if !removed.is_empty() && x.auto_delete && x.binding_count() == 0 {
                emptied.push(x.name.clone());
            }
        }
        for name in emptied {
            self.remove_exchange(&name);
        }
    }

    /// queue.declare; returns the queue (created or existing).
    pub fn declare_queue(
        &self,
        d: &QueueDecl,
        passive: bool,
        conn_id: u64,
    ) -> AmqpResult<Arc<Queue>> {
        if passive {
            return self.queue_for(&d.name, conn_id);
        }
        if d.name.starts_with("amq.") && !d.server_named {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let _g = self.serialize();
        if let Some(q) = self.queue(&d.name) {
            let wanted_owner = d.exclusive.then_some(conn_id);
            if q.config.exclusive_owner != wanted_owner {
                // Strict check: the exclusive property must match too.
                q.check_access(conn_id)?;
                if q.config.exclusive_owner.is_none() || !d.exclusive {
                    return Err(AmqpError::resource_locked(format!(
                        "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It \
                         could be originally declared on another connection or the exclusive \
                         property value does not match that of the original declaration.",
                        d.name, self.name
                    )));
                }
            }
            let c = &q.config;
            if c.durable != d.durable {
                return Err(args::inequivalent(
                    "durable", "queue", &d.name, &self.name, d.durable, c.durable,
                ));
            }
            if c.auto_delete != d.auto_delete {
                return Err(args::inequivalent(
                    "auto_delete",
                    "queue",
                    &d.name,
                    &self.name,
                    d.auto_delete,
                    c.auto_delete,
                ));
            }
            args::assert_equivalent(
                &d.arguments,
                &c.arguments,
                QUEUE_EQUIVALENCE_KEYS,
                "queue",
                &d.name,
                &self.name,
            )?;
            q.touch();
            return Ok(q);
        }
        let args = QueueArgs::parse(
            &d.arguments,
            &crate::queue::args::DeclareContext {
                name: &d.name,
                vhost: &self.name,
                durable: d.durable,
                exclusive: d.exclusive,
                auto_delete: d.auto_delete,
            },
        )?;
        // Exclusive queues die with their connection, so they are never stored (errata §30).
        let stored = d.durable && !d.exclusive && self.store.is_some();
        let q = Queue::new(
            QueueConfig {
                name: d.name.clone(),
                vhost: self.name.clone(),
                durable: d.durable,
                exclusive_owner: d.exclusive.then_some(conn_id),
                auto_delete: d.auto_delete,
                arguments: d.arguments.clone(),
                args,
                store_key: stored.then(|| crate::store::queue_key(&self.name, &d.name)),
            },
            Some(self.sink()),
        );
        if let Some(def) = self.queue_definition(&q) {
            self.put_definition(def);
        }
        self.queues_mut().insert(d.name.clone(), q.clone());
        Ok(q)
    }

    /// queue.delete; returns the number of ready messages deleted with it.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn_id: u64,
        fx: &mut Effects,
    ) -> AmqpResult<u32> {
        let _g = self.serialize();
        let Some(q) = self.queue(name) else {
            return Ok(0);
        };
        q.check_access(conn_id)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{}' not empty",
                self.name
            )));
        }
        Ok(self.remove_queue(&q, fx))
    }

    fn remove_queue(&self, q: &Arc<Queue>, fx: &mut Effects) -> u32 {
        {
            let mut qs = self.queues_mut();
            if !qs.get(q.name()).is_some_and(|x| Arc::ptr_eq(x, q)) {
                return 0; // already gone (or replaced by a namesake)
            }
            qs.remove(q.name());
        }
        self.remove_bindings_to(&Destination::Queue(q.clone()), q.config.store_key.is_some());
        if let Some(def) = self.queue_definition(q) {
            self.delete_definition(def);
        }
        q.mark_deleted(fx)
    }

    /// Delete a queue that lost its last consumer (auto-delete) if it is still that queue.
    pub fn auto_delete_queue(&self, q: &Arc<Queue>, fx: &mut Effects) {
        let _g = self.serialize();
        self.remove_queue(q, fx);
    }

    /// Delete the exclusive queues of a closing connection.
    pub fn connection_closed(&self, conn_id: u64, fx: &mut Effects) {
        let owned: Vec<Arc<Queue>> = self
            .queues()
            .into_iter()
            .filter(|q| q.config.exclusive_owner == Some(conn_id))
            .collect();
        let _g = self.serialize();
        for q in owned {
            self.remove_queue(&q, fx);
        }
    }

    fn bindable_source(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        self.exchange_for(name)
    }

    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        let _g = self.serialize();
        // RabbitMQ refuses the default exchange before looking at the queue.
        let x = self.bindable_source(exchange)?;
        let q = self.queue_for(queue, conn_id)?;
        check_binding_args(&x, arguments)?;
        self.add_binding(&x, Destination::Queue(q), key, arguments);
        Ok(())
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        let _g = self.serialize();
        let x = self.bindable_source(exchange)?;
        let q = self.queue_for(queue, conn_id)?;
        self.unbind(&x, Destination::Queue(q), key, arguments);
        Ok(())
    }

    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let _g = self.serialize();
        let src = self.bindable_source(source)?;
        let dst = self.bindable_source(destination)?;
        check_binding_args(&src, arguments)?;
        self.add_binding(
            &src,
            Destination::Exchange(dst.name.clone()),
            key,
            arguments,
        );
        Ok(())
    }

    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let _g = self.serialize();
        let src = self.bindable_source(source)?;
        let dst = self.bindable_source(destination)?;
        self.unbind(
            &src,
            Destination::Exchange(dst.name.clone()),
            key,
            arguments,
        );
        Ok(())
    }

    fn unbind(
        &self,
        x: &Arc<Exchange>,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
    ) {
        let b = Binding {
            destination,
            routing_key: key.to_string(),
            arguments: arguments.clone(),
        };
        if !x.unbind(&b) {
            return;
        }
        if let Some(def) = self.binding_definition(x, &b) {
            self.delete_definition(def);
        }
        if x.auto_delete && x.binding_count() == 0 {
            self.remove_exchange(&x.name);
        }
    }

    fn add_binding(
        &self,
        x: &Arc<Exchange>,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
    ) {
        let b = Binding {
            destination,
            routing_key: key.to_string(),
            arguments: arguments.clone(),
        };
        let def = self.binding_definition(x, &b);
        if x.bind(b) {
            if let Some(def) = def {
                self.put_definition(def);
            }
        }
    }

    /// Re-create a stored definition at boot (without writing it back).
    pub fn restore(&self, def: &Definition) -> AmqpResult<()> {
        match def {
            Definition::Exchange {
                name,
                kind,
                auto_delete,
                internal,
                arguments,
                ..
            } => {
                let (routing, delayed) = crate::exchange::resolve_type(kind, arguments)
                    .ok_or_else(|| {
                        AmqpError::internal_error(format!(
                            "stored exchange '{name}' has unknown type '{kind}'"
                        ))
                    })?;
                let new = if delayed {
                    Exchange::new_delayed
                } else {
                    Exchange::new
                };
                let x = new(
                    name,
                    routing,
                    true,
                    *auto_delete,
                    *internal,
                    arguments.clone(),
                );
                self.exchanges_mut().insert(name.clone(), x);
            }
            Definition::Queue {
                name,
                auto_delete,
                arguments,
                ..
            } => {
                let q = Queue::new(
                    QueueConfig {
                        name: name.clone(),
                        vhost: self.name.clone(),
                        durable: true,
                        exclusive_owner: None,
                        auto_delete: *auto_delete,
                        arguments: arguments.clone(),
                        args: QueueArgs::parse_lenient(arguments),
                        store_key: Some(crate::store::queue_key(&self.name, name)),
                    },
                    Some(self.sink()),
                );
                self.queues_mut().insert(name.clone(), q);
            }
            Definition::Binding {
                source,
                destination_kind,
                destination,
                routing_key,
                arguments,
                ..
            } => {
                let src = self.exchange_for(source)?;
                let dest = if destination_kind == "queue" {
                    let q = self
                        .queue(destination)
                        .ok_or_else(|| AmqpError::no_queue(destination, &self.name))?;
                    Destination::Queue(q)
                } else {
                    Destination::Exchange(self.exchange_for(destination)?.name.clone())
                };
                src.bind(Binding {
                    destination: dest,
                    routing_key: routing_key.clone(),
                    arguments: arguments.clone(),
                });
            }
        }
        Ok(())
    }

    /// Register a direct reply-to consumer; returns the opaque key for reply_to rewriting.
    pub fn add_reply_consumer(&self, channel: u16, outbox: Outbox) -> String {
        let key = crate::names::random_token(24);
        self.reply_consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (channel, outbox));
        key
    }

    pub fn remove_reply_consumer(&self, key: &str) {
        self.reply_consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Route a message published to `exchange` (404 if it does not exist). Follows
    /// exchange-to-exchange bindings and alternate exchanges; every queue appears once.
    pub fn route(&self, exchange: &str, message: &Message) -> AmqpResult<Routed> {
        let mut routed = Routed::default();
        let key = message.routing_key.as_str();
        if exchange.is_empty() {
            if let Some(token) = key.strip_prefix(REPLY_TO_PREFIX) {
                let target = self
                    .reply_consumers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(token)
                    .cloned();
                if let Some((channel, outbox)) = target {
                    routed.replied = outbox
                        .send(Outbound::Reply {
                            channel,
                            message: Arc::new(message.shallow_clone()),
                        })
                        .is_ok();
                }
            } else if let Some(q) = self.queue(key) {
                routed.queues.push(q);
            }
            return Ok(routed);
        }
        let first = self.exchange_for(exchange)?;
        if first.delayed.is_some() {
            if let Some(delay) = crate::exchange::delayed::delay_of(message) {
                routed.delayed = Some((first, crate::queue::now_ms().saturating_add(delay)));
                return Ok(routed);
            }
        }
        Ok(self.route_from(first, message))
    }

    /// Route through `first` and on (e2e bindings, alternate exchanges), without delaying.
    fn route_from(&self, first: Arc<Exchange>, message: &Message) -> Routed {
        let mut routed = Routed::default();
        let key = message.routing_key.as_str();
        let headers = message.properties.headers().as_ref();
        let mut visited: Vec<String> = Vec::new();
        let mut pending = vec![first];
        while let Some(x) = pending.pop() {
            if visited.iter().any(|v| *v == x.name) {
                continue;
            }
            visited.push(x.name.clone());
            let mut any = false;
            x.route(key, headers, &mut |d| {
                any = true;
                match d {
                    Destination::Queue(q) => {
                        if !routed.queues.iter().any(|r| Arc::ptr_eq(r, q)) {
                            routed.queues.push(q.clone());
                        }
                    }
                    Destination::Exchange(name) => {
                        if let Some(next) = self.exchange(name) {
                            pending.push(next);
                        }
                    }
                }
            });
            if !any {
                if let Some(ae) = x.alternate().and_then(|n| self.exchange(&n)) {
                    pending.push(ae);
                }
            }
        }
        routed
    }

    /// Hold a delayed message in its exchange (stored first when persistent on a durable
    /// exchange). Returns whether it was stored, for the publisher's confirm.
    pub fn hold_delayed(
        &self,
        x: &Arc<Exchange>,
        mut message: Message,
        due: u64,
        fx: &mut Effects,
    ) -> bool {
        let Some(delayed) = &x.delayed else {
            return false;
        };
        let mut stored = false;
        if let (true, true, Some(committer)) = (message.persistent(), x.durable, &self.committer) {
            message.store_id = committer.next_message_id();
            message.store_refs = std::sync::atomic::AtomicU32::new(1);
            fx.ops.push(Op::PutMessage(
                message.store_id,
                crate::store::record::encode(&message),
            ));
            stored = true;
        }
        let id = message.store_id;
        let pos = delayed.hold(Arc::new(message), due);
        if stored {
            fx.ops
                .push(Op::Index(delayed_key(&self.name, &x.name), pos, id));
        }
        self.start_delay_timer(x);
        stored
    }

    /// Put back a delayed message found in the store at boot.
    pub fn restore_delayed(
        &self,
        key: &crate::store::QueueKey,
        position: u64,
        message: Arc<Message>,
    ) -> bool {
        let Some(x) = self
            .exchanges()
            .into_iter()
            .find(|x| x.delayed.is_some() && delayed_key(&self.name, &x.name) == *key)
        else {
            return false;
        };
        if let Some(d) = &x.delayed {
            d.restore(position, message);
        }
        self.start_delay_timer(&x);
        true
    }

    fn start_delay_timer(&self, x: &Arc<Exchange>) {
        let Some(d) = &x.delayed else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if d.start_timer() {
            handle.spawn(delay_timer(self.me.clone(), x.clone()));
        } else {
            d.wake.notify_one();
        }
    }

    /// Route the messages of `x` that are due.
    fn release_due(&self, x: &Arc<Exchange>) {
        let Some(d) = &x.delayed else { return };
        let mut fx = Effects::default();
        for (pos, m) in d.take_due(crate::queue::now_ms()) {
            let routed = self.route_from(x.clone(), &m);
            // A fresh record for the queues it reaches; the held one goes.
            self.enqueue(m.shallow_clone(), &routed.queues, &mut fx);
            if m.store_id != 0 {
                fx.ops
                    .push(Op::Unindex(delayed_key(&self.name, &x.name), pos));
                if m.release_store_ref() {
                    fx.ops.push(Op::DeleteMessage(m.store_id));
                }
            }
        }
        self.submit(&mut fx);
    }
}

/// Storage key under which a delayed exchange's held messages are indexed.
pub fn delayed_key(vhost: &str, exchange: &str) -> crate::store::QueueKey {
    format!("\u{1}delayed\0{vhost}\0{exchange}").into()
}

/// One task per delayed exchange holding messages: sleep until the earliest is due.
async fn delay_timer(vhost: Weak<VHost>, x: Arc<Exchange>) {
    let Some(delayed) = &x.delayed else { return };
    loop {
        let wake = delayed.wake.clone();
        let notified = wake.notified();
        match delayed.next_due() {
            Some(due) => {
                let ms = due.saturating_sub(crate::queue::now_ms());
                if ms > 0 {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(ms), notified).await;
                }
            }
            None => notified.await,
        }
        let Some(vh) = vhost.upgrade() else { return };
        // The exchange was deleted (or replaced): its held messages went with it.
        if !vh
            .exchange(&x.name)
            .is_some_and(|cur| Arc::ptr_eq(&cur, &x))
        {
            return;
        }
        vh.release_due(&x);
    }
}

/// Headers bindings with an unknown x-match are refused, as RabbitMQ does.
fn check_binding_args(x: &Exchange, arguments: &FieldTable) -> AmqpResult<()> {
    if x.kind == ExchangeKind::Headers
        && crate::exchange::headers::MatchKind::from_args(arguments).is_none()
    {
        let v = args::get(arguments, "x-match")
            .map(args::render)
            .unwrap_or_default();
        return Err(AmqpError::precondition_failed(format!(
            "Invalid x-match field value <<\"{v}\">>; expected all, any, all-with-x, or any-with-x"
        )));
    }
    Ok(())
}

impl VHost {
    fn sink(&self) -> Weak<dyn Sink> {
        let me: Weak<dyn Sink> = self.me.clone();
        me
    }

    /// Enqueue a routed message in its queues, storing it first when it is persistent and
    /// reaches a durable queue. Returns (stored, rejected by some queue).
    pub fn enqueue(
        &self,
        mut message: Message,
        queues: &[Arc<Queue>],
        fx: &mut Effects,
    ) -> (bool, bool) {
        let mut stored = false;
        if message.persistent() {
            let durable = queues
                .iter()
                .filter(|q| q.config.store_key.is_some())
                .count();
            if let (Some(committer), true) = (&self.committer, durable > 0) {
                message.store_id = committer.next_message_id();
                message.store_refs =
                    std::sync::atomic::AtomicU32::new(u32::try_from(durable).unwrap_or(u32::MAX));
                fx.ops.push(Op::PutMessage(
                    message.store_id,
                    crate::store::record::encode(&message),
                ));
                stored = true;
            }
        }
        let message = Arc::new(message);
        let mut rejected = false;
        for q in queues {
            rejected |= !q.publish(message.clone(), fx);
        }
        (stored, rejected)
    }

    /// Route dead letters to their exchanges, dropping copies that would cycle without a
    /// rejection (rabbit_dead_letter). Dead-lettering can cause more (a full target queue), so
    /// this runs until nothing is left, with a bound against pathological chains.
    pub fn route_dead_letters(&self, fx: &mut Effects) {
        for _ in 0..32 {
            if fx.dead.is_empty() {
                return;
            }
            for dl in std::mem::take(&mut fx.dead) {
                // A missing dead-letter exchange drops the message, as in RabbitMQ.
                let Ok(routed) = self.route(&dl.exchange, &dl.message) else {
                    continue;
                };
                let targets: Vec<Arc<Queue>> = routed
                    .queues
                    .into_iter()
                    .filter(|q| {
                        !crate::queue::dead_letter::is_cycle(&dl.message, dl.reason, q.name())
                    })
                    .collect();
                self.enqueue(dl.message, &targets, fx);
            }
        }
        if !fx.dead.is_empty() {
            tracing::warn!(
                dropped = fx.dead.len(),
                "dead-letter chain too long; dropping"
            );
            fx.dead.clear();
        }
    }

    fn submit(&self, fx: &mut Effects) {
        self.route_dead_letters(fx);
        if fx.ops.is_empty() {
            return;
        }
        if let Some(c) = &self.committer {
            c.submit(crate::store::Submission {
                ops: std::mem::take(&mut fx.ops),
                notify: None,
            });
        }
    }
}

impl Sink for VHost {
    fn flush(&self, mut fx: Effects) {
        self.submit(&mut fx);
    }

    fn expire(&self, queue: &Arc<Queue>) {
        let mut fx = Effects::default();
        {
            let _g = self.serialize();
            self.remove_queue(queue, &mut fx);
        }
        self.submit(&mut fx);
    }
}
