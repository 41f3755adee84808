//! Consumers of one queue, prefetch credit, and round-robin selection.

use super::delivery::Outbox;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Unacknowledged-delivery budget. Shared between the queue (which takes credit when it
/// delivers) and the channel (which gives it back on ack, or when a no-ack delivery leaves its
/// inbox). A limit of 0 means unlimited, as for basic.qos prefetch_count=0.
#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    used: AtomicU32,
}

impl Credit {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Credit {
            limit: AtomicU32::new(limit),
            used: AtomicU32::new(0),
        })
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Take one unit if the limit allows it.
    pub fn try_acquire(&self) -> bool {
        let limit = self.limit();
        if limit == 0 {
            self.used.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < limit).then_some(u + 1)
            })
            .is_ok()
    }

    /// Give `n` units back; returns true when this reopened a window that was full, i.e.
    /// when the queue may have stopped delivering for lack of this credit.
    pub fn release(&self, n: u32) -> bool {
        let limit = self.limit();
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or(0); // ok: the closure always returns Some
        limit != 0 && before >= limit
    }
}

#[derive(Debug)]
pub struct Consumer {
    pub tag: Arc<str>,
    pub conn_id: u64,
    pub channel: u16,
    pub outbox: Outbox,
    pub no_ack: bool,
    pub exclusive: bool,
    /// x-priority: consumers with higher priority get messages first.
    pub priority: i32,
    /// Per-consumer prefetch (basic.qos global=false), or the no-ack inbox window.
    pub credit: Arc<Credit>,
    /// Per-channel prefetch (basic.qos global=true), shared by all the channel's consumers.
    pub channel_credit: Option<Arc<Credit>>,
    /// A stream consumer's position and filter.
    pub stream: Option<super::stream::Reading>,
}

impl Consumer {
    /// Take credit for one delivery from both budgets, or from neither.
    pub fn try_acquire(&self) -> bool {
        if !self.credit.try_acquire() {
            return false;
        }
        if let Some(c) = &self.channel_credit {
            if !c.try_acquire() {
                self.credit.release(1);
                return false;
            }
        }
        true
    }

    pub fn release(&self) {
        self.credit.release(1);
        if let Some(c) = &self.channel_credit {
            c.release(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_limits_and_reopens() {
        let c = Credit::new(2);
        assert!(c.try_acquire());
        assert!(c.try_acquire());
        assert!(!c.try_acquire());
        assert!(c.release(1));
        assert!(c.try_acquire());
        let unlimited = Credit::new(0);
        for _ in 0..10 {
            assert!(unlimited.try_acquire());
        }
    }
}
