//! A queue: ready messages in order (per priority), its consumers, and delivery to them; TTL,
//! length limits and dead-lettering decisions.
//!
//! State sits behind one short-held mutex per queue (never a global lock, never held across an
//! `.await`): the publishing connection enqueues and dispatches in one call chain, as LavinMQ
//! does, with no task hop per message. Deliveries go up through each consumer's `Outbox`.
//! Whatever must happen outside the lock (storage writes, dead letters to route) is appended
//! to the caller's `Effects`.

pub mod args;
pub mod consumers;
pub mod dead_letter;
mod dedup;
pub mod delivery;
mod dispatch;
pub mod paged;
mod ready;
mod settle;
pub mod spill;
pub mod stream;
mod timer;

pub use args::{Overflow, QueueArgs, QueueType};
pub use consumers::{Consumer, Credit};
pub use dead_letter::{DeadLetter, Reason};
pub use delivery::{Delivery, Outbound, Outbox};
pub use paged::{PageTo, Pager, Paging};
pub use spill::SpillTo;

use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::store::{Op, QueueKey};
use amq_protocol::types::FieldTable;
use ready::Ready;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Why a delivery comes back to its queue unacknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// basic.reject/nack with requeue, basic.recover: the client chose to return it.
    ByClient,
    /// Its channel, connection or consumer went away (or could not take it).
    Released,
}

/// A message sitting in (or out on delivery from) one queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Position in the queue; a requeued message goes back to its original place by it.
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Expiry in ms since the epoch (the lower of queue TTL and per-message expiration).
    pub expires_at: Option<u64>,
    /// Times the message came back unacknowledged (quorum queues report it as x-delivery-count).
    pub delivery_count: u32,
}

/// What queue operations leave for the caller to do once the queue lock is released.
#[derive(Debug, Default)]
pub struct Effects {
    pub ops: Vec<Op>,
    pub dead: Vec<DeadLetter>,
    /// The connection these effects belong to (its tickets); None for timers and management.
    pub origin: Option<crate::store::Submitter>,
    /// `ops` hold a topology change: the vhost submits them before letting go of its topology
    /// lock.
    pub topology: bool,
    /// A topology change was submitted under this ticket: the reply to it waits until durable.
    pub barrier: Option<u64>,
}

impl Effects {
    /// Effects of a connection, submitted under its tickets.
    pub fn for_connection(outbox: Outbox) -> Self {
        Effects {
            origin: Some(crate::store::Submitter::new(std::sync::Arc::new(outbox))),
            ..Default::default()
        }
    }

    /// The ticket the ops gathered now will be submitted under (0 without an origin).
    pub fn ticket(&self) -> u64 {
        self.origin.as_ref().map_or(0, |s| s.ticket())
    }
}

/// Where a queue's own timer sends what it produced (the vhost, which routes dead letters and
/// submits storage writes). The queue holds it weakly: it never keeps its vhost alive.
pub trait Sink: Send + Sync {
    fn flush(&self, fx: Effects);
    /// x-expires: the queue was unused for its lifetime.
    fn expire(&self, queue: &Arc<Queue>);
}

/// The policy and operator policy that apply to a queue, and their combined definition
/// (RabbitMQ's `policy`, `operator_policy`, `effective_policy_definition`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedPolicy {
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// Connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub args: QueueArgs,
    /// Set for durable queues when the broker has a store: persistent messages are indexed
    /// under this key.
    pub store_key: Option<QueueKey>,
    /// Where the queue pages persistent messages beyond its window (with `store_key`).
    pub page_to: Option<PageTo>,
    /// The broker's clock (a test clock moves only when told): TTL, x-expires, x-death time.
    pub clock: Arc<crate::clock::Clock>,
    /// A stream queue's log (`queue::stream`); None for classic and quorum queues.
    pub log: Option<Arc<crate::store::log::Log>>,
}

/// Boot's reader of a stored entry's message (None: its record is gone).
pub type LoadEntry<'a> =
    dyn FnMut(&crate::store::Entry) -> Result<Option<Arc<Message>>, String> + 'a;

pub struct Queue {
    pub config: QueueConfig,
    /// Which policies apply and what they say, for the management API.
    pub policy: Mutex<AppliedPolicy>,
    state: Mutex<State>,
    sink: Option<Weak<dyn Sink>>,
    /// Wakes the timer task when an earlier deadline appears.
    wake: Arc<tokio::sync::Notify>,
    /// Messages handed to consumers or basic.get and not yet settled or requeued (RabbitMQ's
    /// messages_unacknowledged, in-flight deliveries included).
    /// Signed, so that settling is one fetch_sub (no compare-and-swap loop to stop at zero);
    /// readers clamp at zero.
    outstanding: AtomicI64,
    /// Acks, counted by the consumer's connection beside `outstanding` (same cache line,
    /// already written there); the other message_stats are counted under the queue lock.
    acks: AtomicU64,
    /// The sampler's rates of this queue's message_stats.
    rates: crate::stats::Rates,
    /// x-message-deduplication: the values of the messages in the queue.
    dedup: Option<dedup::Dedup>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.config.name)
    }
}

#[derive(Debug)]
struct State {
    ready: Ready,
    next_seq: u64,
    consumers: Vec<Consumer>,
    /// Round-robin position in `consumers`.
    cursor: usize,
    had_consumers: bool,
    deleted: bool,
    /// Last consume, cancel, get or redeclare (ms since the epoch), for x-expires.
    last_used: u64,
    timer_running: bool,
    /// The deadline the timer task sleeps until, if any.
    timer_deadline: Option<u64>,
    /// The arguments in force: the declared ones combined with the vhost's policies
    /// (`apply_args`); read under the lock the publish path holds anyway.
    args: Arc<QueueArgs>,
    /// message_stats counted under this lock: publish, deliver/get (and empty gets),
    /// redeliver.
    counts: crate::stats::Local,
    /// A stream's newest messages (empty for other queues).
    tail: stream::Tail,
}

#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub tag: String,
    pub conn_id: u64,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    pub prefetch: u32,
}

/// The system's time in ms (what connections use; queues read their broker's clock).
pub fn now_ms() -> u64 {
    crate::clock::system_ms()
}

impl Queue {
    pub fn new(config: QueueConfig, sink: Option<Weak<dyn Sink>>) -> Arc<Self> {
        let created = config.clock.now_ms();
        let dedup = dedup::Dedup::wanted(
            &config.arguments,
            config.args.queue_type == QueueType::Quorum,
        )
        .then(dedup::Dedup::default);
        // A deduplicating queue keeps its messages in memory: releasing a value needs the
        // message's headers.
        let paging = config
            .page_to
            .as_ref()
            .map_or_else(Paging::default, |to| to.paging.for_args(&config.args));
        let (mut pager, mut spill) = (None, None);
        if let (Some(to), None, None) = (&config.page_to, &dedup, &config.log) {
            if let (Some(store), Some(key)) = (&to.store, &config.store_key) {
                pager = Some(Pager {
                    store: store.clone(),
                    own_records: !store.shares_records(),
                    key: key.clone(),
                });
            }
            spill = to.spill.clone();
        }
        let q = Arc::new(Queue {
            state: Mutex::new(State {
                ready: Ready::new(config.args.max_priority, paging, pager, spill),
                next_seq: 0,
                consumers: Vec::new(),
                cursor: 0,
                had_consumers: false,
                deleted: false,
                last_used: created,
                timer_running: false,
                timer_deadline: None,
                args: Arc::new(config.args.clone()),
                counts: Default::default(),
                tail: stream::Tail::starting_at(config.log.as_ref().map_or(0, |l| l.next_offset())),
            }),
            policy: Default::default(),
            config,
            sink,
            wake: Arc::new(tokio::sync::Notify::new()),
            outstanding: AtomicI64::new(0),
            acks: AtomicU64::new(0),
            rates: Default::default(),
            dedup,
        });
        if q.config.args.expires.is_some() {
            let mut st = q.lock();
            q.ensure_timer(&mut st);
        }
        q
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_quorum(&self) -> bool {
        self.config.args.queue_type == QueueType::Quorum
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_exclusive_to_other(&self, conn_id: u64) -> bool {
        matches!(self.config.exclusive_owner, Some(owner) if owner != conn_id)
    }

    /// RabbitMQ checks exclusivity before anything else (errata §8).
    pub fn check_access(&self, conn_id: u64) -> AmqpResult<()> {
        if self.is_exclusive_to_other(conn_id) {
            return Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                self.config.name, self.config.vhost
            )));
        }
        Ok(())
    }

    pub fn message_count(&self) -> u32 {
        u32::try_from(self.lock().ready.len()).unwrap_or(u32::MAX)
    }

    /// Where the ready messages are: (in memory, their body bytes), (paged out, their bytes).
    pub fn residence(&self) -> ((usize, u64), (usize, u64)) {
        let st = self.lock();
        (st.ready.ram(), st.ready.paged())
    }

    /// A snapshot of the consumers, for the management API.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        self.lock()
            .consumers
            .iter()
            .map(|c| ConsumerInfo {
                tag: c.tag.to_string(),
                conn_id: c.conn_id,
                channel: c.channel,
                no_ack: c.no_ack,
                exclusive: c.exclusive,
                priority: c.priority,
                prefetch: if c.no_ack { 0 } else { c.credit.limit() },
            })
            .collect()
    }

    /// This queue's message_stats: counts now, rates as last sampled.
    pub fn stats(&self) -> crate::stats::Sample {
        let mut counts = self.lock().counts;
        counts.add(crate::stats::Stat::Ack, self.acks.load(Ordering::Relaxed));
        self.rates.with(counts.sample().counts)
    }

    /// The sampler's tick.
    pub fn tick_rates(&self, secs: f64) {
        let mut counts = self.lock().counts;
        counts.add(crate::stats::Stat::Ack, self.acks.load(Ordering::Relaxed));
        self.rates.tick(&counts.sample().counts, secs);
    }

    /// Page out what became durable since the last publish (a queue pages on publish; the
    /// last publishes of a burst wait for this), and wake the timer for expiring messages
    /// read back from disk since it last looked (a read-back happens under other calls).
    pub fn catch_up_paging(self: &Arc<Self>) {
        let mut st = self.lock();
        if let Some(log) = &self.config.log {
            self.stream_tick(&mut st, log);
            return;
        }
        st.ready.page_out_all();
        if let Some(t) = st.ready.next_expiry() {
            if st.timer_deadline.is_none_or(|d| t < d) {
                self.ensure_timer(&mut st);
                self.wake.notify_one();
            }
        }
    }

    /// A consumer acknowledged `n` deliveries from this queue.
    pub fn count_acks(&self, n: u64) {
        self.acks.fetch_add(n, Ordering::Relaxed);
    }

    pub fn unacked_count(&self) -> u64 {
        u64::try_from(self.outstanding.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn returned(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    /// The first `count` ready messages in delivery order, left in place (and not marked
    /// redelivered): for tests that look without touching.
    pub fn peek(&self, count: usize) -> Vec<(Arc<Message>, bool)> {
        let mut st = self.lock();
        st.ready
            .peek(count)
            .into_iter()
            .map(|e| (e.message, e.redelivered))
            .collect()
    }

    /// The arguments in force (declared, combined with policies).
    pub fn effective_args(&self) -> Arc<QueueArgs> {
        self.lock().args.clone()
    }

    /// Policies changed what applies: new limits take effect at once (a lower max-length
    /// drops or dead-letters the excess, a new x-expires starts counting).
    pub fn apply_args(self: &Arc<Self>, args: QueueArgs, applied: AppliedPolicy, fx: &mut Effects) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = applied;
        let mut st = self.lock();
        if *st.args == args {
            return;
        }
        if let Some(log) = &self.config.log {
            log.set_limits(stream::limits(&args));
        }
        if let Some(to) = &self.config.page_to {
            // A policy's queue-mode or max-in-memory-* changes the window at once.
            st.ready.set_paging(to.paging.for_args(&args));
        }
        st.args = Arc::new(args);
        self.enforce_max_length(&mut st, fx);
        if st.args.expires.is_some() || st.ready.next_expiry().is_some() {
            self.ensure_timer(&mut st);
            self.wake.notify_one();
        }
    }

    /// A redeclare counts as use for x-expires.
    pub fn touch(&self) {
        self.lock().last_used = self.now();
    }

    /// When a message enqueued now expires (the clock is read only if some TTL applies).
    /// Now, on the broker's clock.
    pub(crate) fn now(&self) -> u64 {
        self.config.clock.now_ms()
    }

    fn expiry_for(args: &QueueArgs, m: &Message, now: u64) -> Option<u64> {
        let ttl = match (args.message_ttl, m.expiration_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ttl.map(|t| now.saturating_add(t))
    }

    /// Enqueue one message and hand it to a consumer if one can take it. Returns false when
    /// the queue refused it (x-overflow reject-publish*), which the publisher sees as a nack.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>, fx: &mut Effects) -> bool {
        let mut st = self.lock();
        if st.deleted {
            self.forget_message(&message, true, None, fx);
            return true;
        }
        if let Some(log) = &self.config.log {
            self.publish_stream(&mut st, log, &message, fx);
            return true;
        }
        let a = &st.args;
        let full = a.max_length.is_some_and(|m| st.ready.len() as u64 >= m)
            || a.max_length_bytes
                .is_some_and(|m| st.ready.bytes() + message.body.len() as u64 > m);
        if full && a.overflow != Overflow::DropHead {
            if a.overflow == Overflow::RejectPublishDlx {
                self.dead_letter(a, &message, Reason::Maxlen, fx);
            }
            self.forget_message(&message, true, None, fx);
            return false;
        }
        if self.dedup.as_ref().is_some_and(|d| !d.admit(&message)) {
            // Its value is in the queue already: taken, and dropped (not a nack).
            self.forget_message(&message, true, None, fx);
            return true;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.counts.add(crate::stats::Stat::Publish, 1);
        let now = self.now();
        let expires_at = Self::expiry_for(&st.args, &message, now);
        if let (Some(key), true) = (&self.config.store_key, message.store_id != 0) {
            fx.ops
                .push(Op::Index(key.clone(), seq, message.clone(), expires_at));
        }
        st.ready.push_back(QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at,
            delivery_count: 0,
        });
        self.dispatch_at(&mut st, fx, Some(now));
        self.enforce_max_length(&mut st, fx);
        if let Some(at) = expires_at {
            // TTL 0: whatever a consumer could not take at once expires now.
            self.expire(&mut st, now, fx);
            if st.timer_deadline.is_none_or(|d| at < d) {
                self.ensure_timer(&mut st);
                self.wake.notify_one();
            }
        }
        true
    }

    fn enforce_max_length(&self, st: &mut State, fx: &mut Effects) {
        // Plain copies: the usual publish (no limit, or under it) touches nothing shared.
        let (max_len, max_bytes) = (st.args.max_length, st.args.max_length_bytes);
        loop {
            let over = max_len.is_some_and(|m| st.ready.len() as u64 > m)
                || max_bytes.is_some_and(|m| st.ready.bytes() > m);
            if !over {
                return;
            }
            let Some(head) = st.ready.pop_front() else {
                return;
            };
            let a = st.args.clone();
            self.dead_letter(&a, &head.message, Reason::Maxlen, fx);
            self.forget(&head, false, fx);
        }
    }

    /// The next message that has not expired (expiring before `expired_before`, or before now
    /// if None): one read back from disk may have, after `expire` took what was in memory. A
    /// consumer still takes a message due this very millisecond (TTL 0), basic.get does not
    /// (as RabbitMQ).
    fn pop_unexpired(
        &self,
        st: &mut State,
        expired_before: Option<u64>,
        fx: &mut Effects,
    ) -> Option<QueuedMessage> {
        loop {
            let e = st.ready.pop_front()?;
            let Some(t) = e.expires_at else {
                return Some(e);
            };
            if t >= expired_before.unwrap_or_else(|| self.now()) {
                return Some(e);
            }
            let args = st.args.clone();
            self.dead_letter(&args, &e.message, Reason::Expired, fx);
            self.forget(&e, false, fx);
        }
    }

    /// Remove expired messages from the level heads (RabbitMQ expires at the head only).
    fn expire(&self, st: &mut State, now: u64, fx: &mut Effects) {
        let expired = st
            .ready
            .take_expired_heads(|e| e.expires_at.is_some_and(|t| t <= now));
        if expired.is_empty() {
            return;
        }
        let args = st.args.clone();
        for e in expired {
            self.dead_letter(&args, &e.message, Reason::Expired, fx);
            self.forget(&e, false, fx);
        }
    }

    fn dead_letter(&self, args: &QueueArgs, m: &Arc<Message>, reason: Reason, fx: &mut Effects) {
        let Some(dlx) = &args.dead_letter_exchange else {
            return;
        };
        fx.dead.push(dead_letter::dead_letter(
            m,
            &self.config.name,
            reason,
            dlx,
            args.dead_letter_routing_key.as_deref(),
            self.now() / 1000,
        ));
    }

    /// Restore recovered index entries (in position order) at boot, marked redelivered: they
    /// may have been delivered before the restart. An entry this queue could page out stays on
    /// disk (its metadata is enough) once the head of its level is full; the rest are read
    /// with `load`, which gives the message (None: its record is gone) or why it cannot.
    /// `refs`: how many stored queues hold a message. Returns how many were restored.
    pub fn restore(
        self: &Arc<Self>,
        entries: &[crate::store::Entry],
        refs: &dyn Fn(u64) -> usize,
        load: &mut LoadEntry<'_>,
    ) -> Result<usize, String> {
        let mut st = self.lock();
        let mut any_expiry = false;
        let mut restored = 0;
        st.ready.set_restored_below(u64::MAX);
        let ttl = st.args.message_ttl.is_some();
        for e in entries {
            st.next_seq = st.next_seq.max(e.seq + 1);
            // An expiring message stays on disk only if its entry kept its expiry (entries
            // from before expiries were stored get theirs from now, as they always did).
            let stays_on_disk = self.dedup.is_none()
                && e.meta
                    .is_some_and(|m| e.expires_at.is_some() || !(m.expiring || ttl))
                && refs(e.id) == 1;
            if let (true, Some(meta)) = (stays_on_disk, e.meta) {
                if st
                    .ready
                    .restore_paged(e.seq, meta.priority, u64::from(meta.size))
                {
                    restored += 1;
                    continue;
                }
            }
            let Some(message) = load(e)? else {
                continue;
            };
            if let Some(d) = &self.dedup {
                d.admit(&message);
            }
            let expires_at = e
                .expires_at
                .or_else(|| Self::expiry_for(&st.args, &message, self.now()));
            any_expiry |= expires_at.is_some();
            st.ready.push_back(QueuedMessage {
                seq: e.seq,
                message,
                redelivered: true,
                expires_at,
                delivery_count: 0,
            });
            restored += 1;
        }
        let below = st.next_seq;
        st.ready.set_restored_below(below);
        if any_expiry {
            self.ensure_timer(&mut st);
        }
        Ok(restored)
    }

    /// basic.get: the head message and how many remain ready.
    /// basic.get (`no_ack` as asked, for message_stats).
    pub fn get(&self, no_ack: bool, fx: &mut Effects) -> AmqpResult<Option<(QueuedMessage, u32)>> {
        self.refuse_on_stream("basic.get")?;
        let mut st = self.lock();
        if self.is_quorum() && self.config.args.single_active_consumer && !st.consumers.is_empty() {
            return Err(AmqpError::resource_locked(format!(
                "cannot obtain access to queue '{}' in vhost '{}'. basic.get operations are not \
                 supported by quorum queues with single active consumer",
                self.config.name, self.config.vhost
            )));
        }
        let now = self.now();
        st.last_used = now;
        self.expire(&mut st, now, fx);
        use crate::stats::Stat;
        let Some(entry) = self.pop_unexpired(&mut st, Some(now.saturating_add(1)), fx) else {
            st.counts.add(Stat::GetEmpty, 1);
            return Ok(None);
        };
        st.counts
            .add(if no_ack { Stat::GetNoAck } else { Stat::Get }, 1);
        if entry.redelivered {
            st.counts.add(Stat::Redeliver, 1);
        }
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let left = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        Ok(Some((entry, left)))
    }

    /// Drop every ready message; unacknowledged ones are not touched (as in RabbitMQ).
    /// A stream is never purged over AMQP or HTTP (`refuse_on_stream`); a test broker's reset
    /// empties it here, back to offset 0.
    pub fn purge(&self, fx: &mut Effects) -> u32 {
        let mut st = self.lock();
        if let Some(log) = &self.config.log {
            let s = log.stats();
            log.clear();
            st.tail = stream::Tail::starting_at(0);
            for c in &mut st.consumers {
                if let Some(r) = c.stream.as_mut() {
                    r.begin(0);
                }
            }
            return u32::try_from(s.next - s.first).unwrap_or(u32::MAX);
        }
        let (all, paged) = st.ready.drain(false);
        for e in &all {
            self.forget(e, false, fx);
        }
        let n = all.len() + paged.count;
        if let Some(key) = &self.config.store_key {
            for (from, to) in paged.ranges {
                fx.ops.push(Op::ForgetRange {
                    queue: key.clone(),
                    from,
                    to,
                });
            }
        }
        self.forget_paged(paged.entries, false, fx);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Paged-out messages leave the queue: their records (held by this queue alone) go, and
    /// their index entries unless the whole index goes with the queue.
    fn forget_paged(&self, entries: Vec<(u64, u64)>, queue_deleted: bool, fx: &mut Effects) {
        if entries.is_empty() {
            return;
        }
        fx.ops.push(Op::ForgetPaged {
            queue: (!queue_deleted)
                .then(|| self.config.store_key.clone())
                .flatten(),
            entries,
        });
    }

    /// Mark deleted: returns how many ready messages went with it and tells every consumer.
    pub fn mark_deleted(&self, fx: &mut Effects) -> u32 {
        let mut st = self.lock();
        if st.deleted {
            return 0;
        }
        st.deleted = true;
        if let Some(log) = &self.config.log {
            log.delete();
        }
        let (all, paged) = st.ready.drain(true);
        let n = all.len() + paged.count;
        self.forget_paged(paged.entries, true, fx);
        if let Some(key) = &self.config.store_key {
            fx.ops.push(Op::DropQueue(key.clone()));
        }
        for e in &all {
            self.forget(e, true, fx);
        }
        for c in st.consumers.drain(..) {
            let _ = c.outbox.send(Outbound::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        self.wake.notify_one();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests;
