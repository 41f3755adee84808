//! The rates sampler: once a second, every counter set (connections, queues, exchanges, and the
//! counts of connections that closed) turns its counts into per-second rates, which the
//! management API shows as RabbitMQ's `*_details.rate`. Nothing per message keeps history.
//! The same tick lets deep queues page out what became durable since their last publish
//! (`Queue::catch_up_paging`), so a burst's end does not stay in memory.

use super::Broker;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Broker {
    /// One sampler tick: rates over the `secs` since the previous one.
    pub fn sample_rates(&self, secs: f64) {
        self.closed.messages.tick(secs);
        for m in self.connections() {
            m.stats.messages.tick(secs);
        }
        for vh in self.vhosts() {
            vh.default_exchange_stats.tick(secs);
            for q in vh.queues() {
                q.tick_rates(secs);
                q.catch_up_paging();
            }
            for x in vh.exchanges() {
                x.stats.tick(secs);
            }
        }
    }
}

/// Sample `broker`'s rates once a second for as long as it exists.
pub fn spawn_sampler(broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            every.tick().await;
            let Some(b) = weak.upgrade() else { return };
            let now = Instant::now();
            b.sample_rates(now.duration_since(last).as_secs_f64());
            last = now;
        }
    });
}
