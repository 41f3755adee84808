//! Routing a message to queues (e2e bindings, alternate exchanges, direct reply-to), routing
//! dead letters, and handing storage writes to the committer.

use super::*;

impl VHost {
    /// Route a message published to `exchange` (404 if it does not exist). Follows
    /// exchange-to-exchange bindings and alternate exchanges; every queue appears once.
    pub fn route(&self, exchange: &str, message: &Message) -> AmqpResult<Routed> {
        self.route_with(exchange, message, &[])
    }

    /// Route with extra routing keys besides the message's own (CC/BCC headers, a dead letter's
    /// original keys); every queue still appears once.
    pub fn route_with(
        &self,
        exchange: &str,
        message: &Message,
        extra_keys: &[String],
    ) -> AmqpResult<Routed> {
        let mut routed = Routed::default();
        let key = &*message.routing_key;
        if exchange.is_empty() && !extra_keys.is_empty() {
            for k in std::iter::once(key).chain(extra_keys.iter().map(String::as_str)) {
                if let Some(q) = self.queue(k) {
                    if !routed.queues.iter().any(|r| Arc::ptr_eq(r, &q)) {
                        routed.queues.push(q);
                    }
                }
            }
            return Ok(routed);
        }
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
                routed.delayed = Some((first.clone(), self.clock.now_ms().saturating_add(delay)));
                routed.exchange = Some(first);
                return Ok(routed);
            }
        }
        let mut routed = self.route_from(first.clone(), message, extra_keys);
        routed.exchange = Some(first);
        Ok(routed)
    }

    /// Route through `first` and on (e2e bindings, alternate exchanges), without delaying.
    pub(super) fn route_from(
        &self,
        first: Arc<Exchange>,
        message: &Message,
        extra_keys: &[String],
    ) -> Routed {
        let mut routed = Routed::default();
        // Headers are parsed only if a headers (or federation upstream) exchange is on the way.
        let mut headers: Option<Option<amq_protocol::types::FieldTable>> = None;
        let mut visited: Vec<*const Exchange> = Vec::new();
        let mut pending = vec![first];
        while let Some(x) = pending.pop() {
            if visited.contains(&Arc::as_ptr(&x)) {
                continue;
            }
            visited.push(Arc::as_ptr(&x));
            let mut any = false;
            // A repeat is dropped before any routing, as if nothing matched.
            let duplicate = x.kind == crate::exchange::ExchangeKind::Deduplication
                && x.is_duplicate(message, self.clock.now_ms());
            let wants_headers = matches!(
                x.kind,
                crate::exchange::ExchangeKind::Headers
                    | crate::exchange::ExchangeKind::FederationUpstream
            );
            let h = if wants_headers {
                headers.get_or_insert_with(|| message.headers()).as_ref()
            } else {
                None
            };
            let keys =
                std::iter::once(&*message.routing_key).chain(extra_keys.iter().map(String::as_str));
            for key in keys.filter(|_| !duplicate) {
                x.route(key, h, message, &mut |d| {
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
            }
            if !any {
                if let Some(ae) = x.alternate().and_then(|n| self.exchange(&n)) {
                    pending.push(ae);
                }
            }
        }
        routed
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
                let Ok(routed) = self.route_with(&dl.exchange, &dl.message, &dl.extra_keys) else {
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

    /// Route dead letters, then hand storage writes to the committer (under the origin's
    /// ticket, if any) without waiting for them.
    pub fn submit(&self, fx: &mut Effects) {
        self.route_dead_letters(fx);
        self.submit_ops(fx);
    }

    /// Hand `fx.ops` to the committer; the ticket they went under, for a connection.
    pub(super) fn submit_ops(&self, fx: &mut Effects) -> Option<u64> {
        if fx.ops.is_empty() {
            return None;
        }
        let ops = std::mem::take(&mut fx.ops);
        let committer = self.committer.as_ref()?;
        match fx.origin.as_mut() {
            Some(s) => Some(s.submit(committer, ops)),
            None => {
                committer.submit(ops, None);
                None
            }
        }
    }
}

impl Sink for VHost {
    fn flush(&self, mut fx: Effects) {
        self.submit(&mut fx);
    }

    fn expire(&self, queue: &Arc<Queue>) {
        let mut fx = Effects::default();
        self.auto_delete_queue(queue, &mut fx);
        self.submit(&mut fx);
    }
}
