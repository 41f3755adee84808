//! One timer task per queue that needs one (message TTL, x-expires): it sleeps until the
//! earliest deadline, expires head messages and unused queues, and hands the results to the
//! queue's sink. Nothing scans all queues on a clock tick.

use super::{Effects, Queue, State};
use std::sync::{Arc, Weak};
use std::time::Duration;

impl Queue {
    /// Start the timer task if it is not running (needs a tokio runtime; without one, e.g. in
    /// unit tests, expiry still happens lazily on publish, get and dispatch).
    pub(super) fn ensure_timer(self: &Arc<Self>, st: &mut State) {
        if st.timer_running || st.deleted {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.timer_running = true;
        handle.spawn(run(Arc::downgrade(self)));
    }

    /// The next moment the timer has work: a head expiry, or the x-expires deadline.
    fn next_deadline(&self, st: &State) -> Option<u64> {
        let unused_until = match (st.args.expires, st.consumers.is_empty()) {
            (Some(ttl), true) => Some(st.last_used.saturating_add(ttl)),
            _ => None,
        };
        match (st.ready.next_expiry(), unused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next moment this queue has timer work (test clock: what `advance` steps to).
    pub fn next_timer_deadline(&self) -> Option<u64> {
        let st = self.lock();
        if st.deleted {
            return None;
        }
        self.next_deadline(&st)
    }

    /// Run the timer's work now (a test clock was advanced): expired messages go, and true
    /// when the queue itself expired.
    pub fn tick(self: &Arc<Self>, fx: &mut Effects) -> bool {
        self.on_timer(fx)
    }

    /// Timer work at `now`: expire heads; true when the queue itself expired (x-expires).
    fn on_timer(self: &Arc<Self>, fx: &mut Effects) -> bool {
        let mut st = self.lock();
        let now = self.now();
        self.expire(&mut st, now, fx);
        self.dispatch(&mut st, fx);
        matches!(
            (st.args.expires, st.consumers.is_empty()),
            (Some(ttl), true) if now >= st.last_used.saturating_add(ttl)
        )
    }
}

async fn run(queue: Weak<Queue>) {
    loop {
        // Hold the queue only while looking at it, never while sleeping.
        let deadline = {
            let Some(q) = queue.upgrade() else { return };
            let mut st = q.lock();
            if st.deleted {
                st.timer_running = false;
                return;
            }
            let d = q.next_deadline(&st);
            st.timer_deadline = d;
            d
        };
        let (wake, now) = match queue.upgrade() {
            Some(q) => (q.wake.clone(), q.now()),
            None => return,
        };
        let notified = wake.notified();
        match deadline {
            Some(at) => {
                // On a test clock this may be long: `Broker::advance_clock` runs what falls due
                // itself, and this task finds nothing left when it wakes.
                let ms = at.saturating_sub(now);
                let _ = tokio::time::timeout(Duration::from_millis(ms), notified).await;
            }
            None => notified.await,
        }
        let Some(q) = queue.upgrade() else { return };
        let mut fx = Effects::default();
        let expired = q.on_timer(&mut fx);
        let sink = q.sink.as_ref().and_then(Weak::upgrade);
        if let Some(sink) = sink {
            if !fx.ops.is_empty() || !fx.dead.is_empty() {
                sink.flush(fx);
            }
            if expired {
                sink.expire(&q);
            }
        }
    }
}
