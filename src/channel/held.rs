//! Bytes a connection holds that no queue holds yet: content bodies still arriving (counted at
//! the size their header announces, since the peer may trickle the rest) and publishes
//! buffered by uncommitted transactions. One peer could otherwise park 2047 channels ×
//! max_message_size, or an endless transaction, in memory; the budget bounds the sum per
//! connection, and crossing it closes the connection with 506 RESOURCE_ERROR (RabbitMQ has no
//! such limit and relies on its memory alarm alone, which blocks every publisher instead).

use crate::error::{AmqpError, AmqpResult};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One connection's budget. Only the connection's own task touches it; the atomic is for
/// `Hold`s being `Send`, not for contention.
#[derive(Debug)]
pub struct Budget {
    total: Arc<AtomicU64>,
    limit: u64,
}

/// A part of the budget in use; given back when dropped, however its owner goes away (message
/// complete, transaction committed or rolled back, channel or connection closed).
#[derive(Debug, Default)]
pub struct Hold {
    total: Option<Arc<AtomicU64>>,
    bytes: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget {
            total: Arc::default(),
            limit,
        }
    }

    pub fn in_use(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Take `bytes` more into `hold`, or refuse without taking anything.
    pub fn take(&self, hold: &mut Hold, bytes: u64) -> AmqpResult<()> {
        let in_use = self.in_use();
        if in_use.saturating_add(bytes) > self.limit {
            return Err(AmqpError::resource_error(format!(
                "connection would hold {} bytes of unfinished content and uncommitted \
                 publishes, more than its limit of {}",
                in_use.saturating_add(bytes),
                self.limit
            )));
        }
        self.total.fetch_add(bytes, Relaxed);
        hold.total.get_or_insert_with(|| self.total.clone());
        hold.bytes += bytes;
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(total) = &self.total {
            total.fetch_sub(self.bytes, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_give_back_what_they_took() {
        let b = Budget::new(100);
        let mut h = Hold::default();
        b.take(&mut h, 60).expect("fits");
        let mut h2 = Hold::default();
        assert_eq!(b.take(&mut h2, 41).unwrap_err().code(), 506);
        assert_eq!(b.in_use(), 60);
        b.take(&mut h2, 40).expect("fits exactly");
        drop(h);
        assert_eq!(b.in_use(), 40);
        drop(h2);
        assert_eq!(b.in_use(), 0);
    }
}
