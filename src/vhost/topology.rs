//! Topology changes: exchange and queue declare/delete, bindings, auto-delete and exclusive
//! cleanup, with RabbitMQ's checks and texts. Serialized by the vhost's `topology` mutex.

use super::*;

impl VHost {
    /// Run a topology change under the topology lock; what it wrote is submitted before the
    /// lock is released (see `commit_topology`).
    fn changing<T>(
        &self,
        fx: &mut Effects,
        f: impl FnOnce(&mut Effects) -> AmqpResult<T>,
    ) -> AmqpResult<T> {
        let _g = self.serialize();
        if self.is_deleted() {
            return Err(AmqpError::connection_forced(format!(
                "vhost '{}' is deleted",
                self.name
            )));
        }
        let r = f(fx);
        self.commit_topology(fx);
        r
    }

    /// The vhost is being deleted: every queue and exchange goes, durably, and topology
    /// changes after this are refused.
    pub fn destroy(&self, fx: &mut Effects) {
        let _g = self.serialize();
        self.deleted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.remove_all(fx);
        self.commit_topology(fx);
    }

    /// Reset for the next test: every queue, exchange (but amq.*) and binding goes, durably;
    /// the vhost stays.
    pub fn clear(&self, fx: &mut Effects) {
        let _g = self.serialize();
        self.remove_all(fx);
        self.commit_topology(fx);
    }

    fn remove_all(&self, fx: &mut Effects) {
        for q in self.queues() {
            self.remove_queue(&q, fx);
        }
        for x in self.exchanges() {
            if !x.name.is_empty() && !x.name.starts_with("amq.") {
                self.remove_exchange(&x.name, fx);
            }
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn declare_exchange(
        &self,
        d: &ExchangeDecl,
        passive: bool,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
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
        if kind == ExchangeKind::ConsistentHash {
            crate::exchange::consistent_hash::hash_on(&d.arguments)?;
        }
        if kind == ExchangeKind::Deduplication {
            crate::exchange::dedup::settings(&d.arguments)?;
        }
        if kind == ExchangeKind::FederationUpstream {
            crate::exchange::federation_upstream::validate(&d.arguments)?;
        }
        self.changing(fx, |fx| self.create_exchange(d, kind, delayed, fx))
    }

    fn create_exchange(
        &self,
        d: &ExchangeDecl,
        kind: ExchangeKind,
        delayed: bool,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
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
            self.put_definition(def, fx);
        }
        self.apply_policies_to_exchange(&x);
        self.exchanges_mut().insert(d.name.clone(), x);
        Ok(())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool, fx: &mut Effects) -> AmqpResult<()> {
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
        self.changing(fx, |fx| {
            let Some(x) = self.exchange(name) else {
                return Ok(()); // idempotent, as RabbitMQ
            };
            if if_unused && x.binding_count() > 0 {
                return Err(AmqpError::precondition_failed(format!(
                    "exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            self.remove_exchange(name, fx);
            Ok(())
        })
    }

    /// Drop an exchange and every binding from or to it; cascades to auto-delete exchanges.
    pub(super) fn remove_exchange(&self, name: &str, fx: &mut Effects) {
        let Some(x) = self.exchanges_mut().remove(name) else {
            return;
        };
        if let Some(d) = &x.delayed {
            let held = d.drain();
            if held.values().any(|m| m.store_id != 0) {
                fx.ops.push(Op::DropQueue(d.store_key(&self.name, name)));
                fx.topology = true;
            }
            for m in held.into_values() {
                if m.release_store_ref() {
                    fx.ops.push(Op::DeleteMessage(m));
                }
            }
        }
        for b in x.bindings() {
            if let Some(def) = self.binding_definition(&x, &b) {
                self.delete_definition(def, fx);
            }
        }
        if let Some(def) = self.exchange_definition(&x) {
            self.delete_definition(def, fx);
        }
        self.remove_bindings_to(&Destination::Exchange(name.to_string()), x.durable, fx);
    }

    /// Unbind a deleted queue or exchange everywhere (`durable`: whether it was stored).
    pub(super) fn remove_bindings_to(&self, dest: &Destination, durable: bool, fx: &mut Effects) {
        let mut emptied = Vec::new();
        for x in self.exchanges() {
            let removed = x.remove_destination(dest);
            for b in &removed {
                if let Some(def) = self.binding_definition_with(&x, b, durable) {
                    self.delete_definition(def, fx);
                }
            }
            if !removed.is_empty() && x.auto_delete && x.binding_count() == 0 {
                emptied.push(x.name.clone());
            }
        }
        for name in emptied {
            self.remove_exchange(&name, fx);
        }
    }

    /// queue.declare; returns the queue (created or existing).
    pub fn declare_queue(
        &self,
        d: &QueueDecl,
        passive: bool,
        conn_id: u64,
        fx: &mut Effects,
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
        self.queue_counts[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changing(fx, |fx| self.create_queue(d, conn_id, fx))
    }

    fn create_queue(
        &self,
        d: &QueueDecl,
        conn_id: u64,
        fx: &mut Effects,
    ) -> AmqpResult<Arc<Queue>> {
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
        if let Some(max) = self.meta().limit("max-queues") {
            if self.queues().len() as u64 >= max {
                return Err(AmqpError::precondition_failed(format!(
                    "cannot declare queue '{}': queue limit in vhost '{}' ({max}) is reached",
                    d.name, self.name
                )));
            }
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
        let log = self.stream_log(&d.name, &args).map_err(|e| {
            AmqpError::internal_error(format!("cannot open the log of stream '{}': {e}", d.name))
        })?;
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
                page_to: self.page_to(stored),
                clock: self.clock.clone(),
                log,
            },
            Some(self.sink()),
        );
        if let Some(def) = self.queue_definition(&q) {
            self.put_definition(def, fx);
        }
        self.apply_policies_to(&q, fx);
        self.queues_mut().insert(d.name.clone(), q.clone());
        self.queue_counts[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        self.changing(fx, |fx| {
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
        })
    }

    pub(super) fn remove_queue(&self, q: &Arc<Queue>, fx: &mut Effects) -> u32 {
        {
            let mut qs = self.queues_mut();
            if !qs.get(q.name()).is_some_and(|x| Arc::ptr_eq(x, q)) {
                return 0; // already gone (or replaced by a namesake)
            }
            qs.remove(q.name());
        }
        self.queue_counts[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.remove_bindings_to(
            &Destination::Queue(q.clone()),
            q.config.store_key.is_some(),
            fx,
        );
        if let Some(def) = self.queue_definition(q) {
            self.delete_definition(def, fx);
        }
        // Its DropQueue must reach the committer before anything of a namesake.
        fx.topology |= q.config.store_key.is_some();
        q.mark_deleted(fx)
    }

    /// Delete a queue that lost its last consumer (auto-delete), or unused past its x-expires,
    /// if it is still that queue.
    pub fn auto_delete_queue(&self, q: &Arc<Queue>, fx: &mut Effects) {
        let _ = self.changing(fx, |fx| Ok(self.remove_queue(q, fx)));
    }

    /// Delete the exclusive queues of a closing connection.
    pub fn connection_closed(&self, conn_id: u64, fx: &mut Effects) {
        let owned: Vec<Arc<Queue>> = self
            .queues()
            .into_iter()
            .filter(|q| q.config.exclusive_owner == Some(conn_id))
            .collect();
        let _ = self.changing(fx, |fx| {
            for q in owned {
                self.remove_queue(&q, fx);
            }
            Ok(())
        });
    }

    pub(super) fn bindable_source(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
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
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        self.changing(fx, |fx| {
            // RabbitMQ refuses the default exchange before looking at the queue.
            let x = self.bindable_source(exchange)?;
            let q = self.queue_for(queue, conn_id)?;
            check_binding_args(&x, key, arguments)?;
            self.add_binding(&x, Destination::Queue(q), key, arguments, fx);
            Ok(())
        })
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
        conn_id: u64,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        // RabbitMQ answers unbind-ok when the exchange, the queue or the binding is already
        // gone (an auto-delete exchange that left with its last binding, say): teardown of such
        // topologies and aio-pika's RPC pattern rely on it.
        self.changing(fx, |fx| {
            if exchange.is_empty() {
                self.bindable_source(exchange)?;
            }
            let (Some(x), Some(q)) = (self.exchange(exchange), self.queue(queue)) else {
                return Ok(());
            };
            q.check_access(conn_id)?;
            self.unbind(&x, Destination::Queue(q), key, arguments, fx);
            Ok(())
        })
    }

    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        self.changing(fx, |fx| {
            let src = self.bindable_source(source)?;
            let dst = self.bindable_source(destination)?;
            check_binding_args(&src, key, arguments)?;
            self.add_binding(
                &src,
                Destination::Exchange(dst.name.clone()),
                key,
                arguments,
                fx,
            );
            Ok(())
        })
    }

    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        // As for queues: unbind-ok when either end or the binding is already gone.
        self.changing(fx, |fx| {
            if source.is_empty() || destination.is_empty() {
                self.bindable_source("")?;
            }
            let Some(src) = self.exchange(source) else {
                return Ok(());
            };
            self.unbind(
                &src,
                Destination::Exchange(destination.to_string()),
                key,
                arguments,
                fx,
            );
            Ok(())
        })
    }

    pub(super) fn unbind(
        &self,
        x: &Arc<Exchange>,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
        fx: &mut Effects,
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
            self.delete_definition(def, fx);
        }
        if x.auto_delete && x.binding_count() == 0 {
            self.remove_exchange(&x.name, fx);
        }
    }

    pub(super) fn add_binding(
        &self,
        x: &Arc<Exchange>,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
        fx: &mut Effects,
    ) {
        let b = Binding {
            destination,
            routing_key: key.to_string(),
            arguments: arguments.clone(),
        };
        let def = self.binding_definition(x, &b);
        if x.bind(b) {
            if let Some(def) = def {
                self.put_definition(def, fx);
            }
        }
    }
}

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
    "x-max-age",
    "x-stream-max-segment-size-bytes",
];

/// Headers bindings with an unknown x-match are refused, as RabbitMQ does; consistent-hash
/// binding keys must be positive integers (weights).
fn check_binding_args(x: &Exchange, key: &str, arguments: &FieldTable) -> AmqpResult<()> {
    if x.kind == ExchangeKind::ConsistentHash {
        crate::exchange::consistent_hash::weight(key)?;
    }
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
