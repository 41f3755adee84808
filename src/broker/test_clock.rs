//! Moving a test clock: everything that falls due on the way runs, in due order, before the
//! call returns (a message that expires into a dead-letter queue with its own TTL expires
//! there too, if that falls within the step), so a test can assert right after it.

use super::Broker;
use crate::queue::{Effects, Sink};
use std::time::Duration;

/// A bound on the steps of one advance (each step runs what is due at one instant).
const MAX_STEPS: usize = 1_000_000;

impl Broker {
    /// Move the test clock forward by `by`; the new time (ms since the epoch).
    pub fn advance_clock(&self, by: Duration) -> Result<u64, String> {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.set_clock(self.clock.now_ms().saturating_add(by))
    }

    /// Move the test clock to `target` (ms since the epoch; never backwards). Queue and
    /// exchange timers run before this returns; connections check consumer_timeout right
    /// after (`set_clock_settled` waits for them too).
    pub fn set_clock(&self, target: u64) -> Result<u64, String> {
        self.move_clock(target).map(|(now, _)| now)
    }

    /// `advance_clock`, and wait until every connection has checked its consumer_timeout
    /// against the new time (channels past it are closed by then).
    pub async fn advance_clock_settled(&self, by: Duration) -> Result<u64, String> {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.set_clock_settled(self.clock.now_ms().saturating_add(by))
            .await
    }

    /// `set_clock`, and wait for the connections as `advance_clock_settled` does.
    pub async fn set_clock_settled(&self, target: u64) -> Result<u64, String> {
        let (now, replies) = self.move_clock(target)?;
        for r in replies {
            // A connection that goes away meanwhile has nothing left to time out.
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        Ok(now)
    }

    fn move_clock(
        &self,
        target: u64,
    ) -> Result<(u64, Vec<tokio::sync::oneshot::Receiver<()>>), String> {
        if !self.clock.is_test() {
            return Err("the broker runs on the system clock (start it with --test-clock)".into());
        }
        if target < self.clock.now_ms() {
            return Err("a test clock does not go back".into());
        }
        for _ in 0..MAX_STEPS {
            let Some(at) = self.next_due().filter(|t| *t <= target) else {
                break;
            };
            self.clock.set(at);
            self.run_due(at);
        }
        self.clock.set(target);
        let replies = self.tell_connections(crate::queue::Outbound::ClockMoved);
        Ok((self.clock.now_ms(), replies))
    }

    /// The earliest moment any queue or delayed exchange has timer work.
    fn next_due(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for vh in self.vhosts() {
            for q in vh.queues() {
                consider(q.next_timer_deadline());
            }
            for x in vh.exchanges() {
                consider(x.delayed.as_ref().and_then(|d| d.next_due()));
            }
        }
        next
    }

    /// Run what is due at `at`: expiries, queue expiry (x-expires), delayed messages.
    fn run_due(&self, at: u64) {
        for vh in self.vhosts() {
            for q in vh.queues() {
                if q.next_timer_deadline().is_some_and(|d| d <= at) {
                    let mut fx = Effects::default();
                    let expired = q.tick(&mut fx);
                    vh.flush(fx);
                    if expired {
                        vh.expire(&q);
                    }
                }
            }
            for x in vh.exchanges() {
                if x.delayed
                    .as_ref()
                    .and_then(|d| d.next_due())
                    .is_some_and(|d| d <= at)
                {
                    vh.release_due(&x);
                }
            }
        }
    }
}
