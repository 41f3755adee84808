//! Delayed messages of x-delayed-message exchanges: holding, storing, and the timer that
//! routes them when due.

use super::*;

impl VHost {
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
        let record = self.record_for(&mut message, usize::from(x.durable));
        let message = Arc::new(message);
        let pos = delayed.hold(message.clone(), due);
        let stored = record.is_some();
        if let Some(record) = record {
            fx.ops.push(Op::PutMessage(message.clone(), record));
            fx.ops.push(Op::Index(
                delayed.store_key(&self.name, &x.name),
                pos,
                message,
                None,
            ));
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
        let Some(x) = self.exchanges().into_iter().find(|x| {
            x.delayed
                .as_ref()
                .is_some_and(|d| d.store_key(&self.name, &x.name) == *key)
        }) else {
            return false;
        };
        if let Some(d) = &x.delayed {
            d.restore(position, message);
        }
        self.start_delay_timer(&x);
        true
    }

    pub(super) fn start_delay_timer(&self, x: &Arc<Exchange>) {
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
    pub fn release_due(&self, x: &Arc<Exchange>) {
        let Some(d) = &x.delayed else { return };
        let mut fx = Effects::default();
        for (pos, m) in d.take_due(self.clock.now_ms()) {
            let routed = self.route_from(x.clone(), &m, &[]);
            // A fresh record for the queues it reaches; the held one goes.
            self.enqueue(m.shallow_clone(), &routed.queues, &mut fx);
            if m.store_id != 0 {
                fx.ops.push(Op::Unindex(
                    d.store_key(&self.name, &x.name),
                    pos,
                    m.clone(),
                ));
                if m.release_store_ref() {
                    fx.ops.push(Op::DeleteMessage(m));
                }
            }
        }
        self.submit(&mut fx);
    }
}

/// One task per delayed exchange holding messages: sleep until the earliest is due.
async fn delay_timer(vhost: Weak<VHost>, x: Arc<Exchange>) {
    let Some(delayed) = &x.delayed else { return };
    loop {
        let wake = delayed.wake.clone();
        let notified = wake.notified();
        match delayed.next_due() {
            Some(due) => {
                let now = vhost.upgrade().map_or(0, |v| v.clock.now_ms());
                let ms = due.saturating_sub(now);
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
