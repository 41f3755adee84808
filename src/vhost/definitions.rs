//! Durable definitions: what the store keeps of this vhost's topology, and boot replay.

use super::*;

impl VHost {
    /// Queue a definition write with the topology change that makes it.
    pub(super) fn put_definition(&self, def: Definition, fx: &mut Effects) {
        if self.committer.is_some() {
            fx.ops.push(Op::PutDefinition(def));
            fx.topology = true;
        }
    }

    pub(super) fn delete_definition(&self, def: Definition, fx: &mut Effects) {
        if self.committer.is_some() {
            fx.ops.push(Op::DeleteDefinition(def));
            fx.topology = true;
        }
    }

    /// Called with the topology lock held, at the end of every topology change: submit what it
    /// wrote now, so that it is ordered before anything that follows it (a namesake's writes,
    /// a late ack), and make the connection's reply wait until it is durable.
    pub(super) fn commit_topology(&self, fx: &mut Effects) {
        if std::mem::take(&mut fx.topology) {
            if let Some(ticket) = self.submit_ops(fx) {
                fx.barrier = Some(ticket);
            }
        }
    }

    pub(super) fn exchange_definition(&self, x: &Exchange) -> Option<Definition> {
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

    pub(super) fn queue_definition(&self, q: &Queue) -> Option<Definition> {
        q.config.store_key.as_ref().map(|_| Definition::Queue {
            vhost: self.name.clone(),
            name: q.config.name.clone(),
            auto_delete: q.config.auto_delete,
            arguments: q.config.arguments.clone(),
        })
    }

    /// A binding is kept across restarts when both its ends are.
    pub(super) fn binding_definition(&self, source: &Exchange, b: &Binding) -> Option<Definition> {
        let dest_durable = match &b.destination {
            Destination::Queue(q) => q.config.store_key.is_some(),
            Destination::Exchange(name) => self.exchange(name).is_some_and(|x| x.durable),
        };
        self.binding_definition_with(source, b, dest_durable)
    }

    pub(super) fn binding_definition_with(
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
                self.apply_policies_to_exchange(&x);
                self.exchanges_mut().insert(name.clone(), x);
            }
            Definition::Queue {
                name,
                auto_delete,
                arguments,
                ..
            } => {
                let args = QueueArgs::parse_lenient(arguments);
                let log = self.stream_log(name, &args).map_err(|e| {
                    AmqpError::internal_error(format!(
                        "cannot open the log of stream '{name}': {e}"
                    ))
                })?;
                let q = Queue::new(
                    QueueConfig {
                        name: name.clone(),
                        vhost: self.name.clone(),
                        durable: true,
                        exclusive_owner: None,
                        auto_delete: *auto_delete,
                        arguments: arguments.clone(),
                        args,
                        store_key: Some(crate::store::queue_key(&self.name, name)),
                        page_to: self.page_to(true),
                        clock: self.clock.clone(),
                        log,
                    },
                    Some(self.sink()),
                );
                self.apply_policies_to(&q, &mut crate::queue::Effects::default());
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
            // Vhosts and access control are the broker's.
            _ => {}
        }
        Ok(())
    }
}
