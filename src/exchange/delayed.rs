//! x-delayed-message: messages with a positive `x-delay` header are held by the exchange until
//! due, then routed by the exchange's `x-delayed-type` (compatible with RabbitMQ's
//! delayed-message plugin). The vhost runs one timer per delayed exchange that holds messages.

use crate::message::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Messages waiting for their time, ordered by (due ms, arrival).
#[derive(Debug, Default)]
pub struct Delayed {
    state: Mutex<State>,
    pub wake: Arc<tokio::sync::Notify>,
    /// The stored index of held messages: one incarnation per exchange, so writes still on
    /// their way when the exchange is deleted are recognised as its own.
    key: std::sync::OnceLock<crate::store::QueueKey>,
}

#[derive(Debug, Default)]
struct State {
    /// Key: storage position (due ms << 16 | arrival counter), so it orders by due time and a
    /// restored position still tells when the message is due.
    held: BTreeMap<u64, Arc<Message>>,
    counter: u16,
    pub timer_running: bool,
}

/// The due time encoded in a position.
pub fn due_of(position: u64) -> u64 {
    position >> 16
}

/// The delay a message asks for: a positive integer `x-delay` header (ms).
pub fn delay_of(m: &Message) -> Option<u64> {
    let headers = m.headers()?;
    let v = crate::args::get(&headers, "x-delay")?;
    let ms = crate::args::as_i64(v).or_else(|| crate::args::as_str(v)?.trim().parse().ok())?;
    // Capped at 2^40 ms (about 35 years) so a due time always fits the 48 bits a position keeps.
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| ms.min(1 << 40))
}

impl Delayed {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold a message until `due` (ms since the epoch); returns its position.
    pub fn hold(&self, message: Arc<Message>, due: u64) -> u64 {
        let mut st = self.lock();
        st.counter = st.counter.wrapping_add(1);
        let mut pos = (due << 16) | u64::from(st.counter);
        while st.held.contains_key(&pos) {
            pos += 1;
        }
        st.held.insert(pos, message);
        drop(st);
        self.wake.notify_one();
        pos
    }

    /// Put back a message restored from the store at its position.
    pub fn restore(&self, position: u64, message: Arc<Message>) {
        self.lock().held.insert(position, message);
    }

    /// Where held persistent messages are indexed: `\u{1}delayed` NUL vhost NUL exchange.
    pub fn store_key(&self, vhost: &str, exchange: &str) -> crate::store::QueueKey {
        self.key
            .get_or_init(|| format!("\u{1}delayed\0{vhost}\0{exchange}").into())
            .clone()
    }

    pub fn next_due(&self) -> Option<u64> {
        self.lock().held.keys().next().map(|p| due_of(*p))
    }

    pub fn take_due(&self, now: u64) -> Vec<(u64, Arc<Message>)> {
        let mut st = self.lock();
        let later = st.held.split_off(&((now + 1) << 16));
        let due = std::mem::replace(&mut st.held, later);
        due.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mark the timer as started; false if it already runs.
    pub fn start_timer(&self) -> bool {
        let mut st = self.lock();
        !std::mem::replace(&mut st.timer_running, true)
    }

    /// Everything still held (the exchange is being deleted).
    pub fn drain(&self) -> HashMap<u64, Arc<Message>> {
        std::mem::take(&mut self.lock().held).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_due_time() {
        let d = Delayed::default();
        let m = |b: &'static [u8]| {
            Arc::new(Message::new(
                String::new(),
                String::new(),
                Default::default(),
                bytes::Bytes::from_static(b),
            ))
        };
        d.hold(m(b"late"), 2000);
        d.hold(m(b"early"), 1000);
        assert_eq!(d.next_due(), Some(1000));
        let due = d.take_due(1500);
        assert_eq!(due.len(), 1);
        assert_eq!(&due[0].1.body[..], b"early");
        assert_eq!(due_of(due[0].0), 1000);
        assert_eq!(d.take_due(2000).len(), 1);
        assert!(d.is_empty());
    }
}
