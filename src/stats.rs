//! Message counters as RabbitMQ's management API shows them (`message_stats`: publish, ack,
//! deliver_get, ... each with `*_details.rate`). Counting costs one relaxed atomic add where the
//! event happens; a sampler task (`broker::rates`) turns counts into per-second rates once a
//! second, so nothing per message keeps history. A leaf: every layer may count.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// One kind of event, named as in RabbitMQ's message_stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Publish,
    /// Exchanges: messages published to it, and messages it routed on.
    PublishIn,
    PublishOut,
    Confirm,
    ReturnUnroutable,
    DropUnroutable,
    Deliver,
    DeliverNoAck,
    Get,
    GetNoAck,
    GetEmpty,
    Ack,
    Redeliver,
}

const N: usize = 13;

impl Stat {
    pub const ALL: [Stat; N] = [
        Stat::Publish,
        Stat::PublishIn,
        Stat::PublishOut,
        Stat::Confirm,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stat::Publish => "publish",
            Stat::PublishIn => "publish_in",
            Stat::PublishOut => "publish_out",
            Stat::Confirm => "confirm",
            Stat::ReturnUnroutable => "return_unroutable",
            Stat::DropUnroutable => "drop_unroutable",
            Stat::Deliver => "deliver",
            Stat::DeliverNoAck => "deliver_no_ack",
            Stat::Get => "get",
            Stat::GetNoAck => "get_no_ack",
            Stat::GetEmpty => "get_empty",
            Stat::Ack => "ack",
            Stat::Redeliver => "redeliver",
        }
    }
}

/// What channels, connections and the overview show.
pub const CHANNEL_STATS: &[Stat] = &[
    Stat::Publish,
    Stat::Confirm,
    Stat::ReturnUnroutable,
    Stat::DropUnroutable,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetNoAck,
    Stat::GetEmpty,
    Stat::Ack,
    Stat::Redeliver,
];
/// What queues show.
pub const QUEUE_STATS: &[Stat] = &[
    Stat::Publish,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetNoAck,
    Stat::GetEmpty,
    Stat::Ack,
    Stat::Redeliver,
];
/// What exchanges show.
pub const EXCHANGE_STATS: &[Stat] = &[Stat::PublishIn, Stat::PublishOut];

/// Counts as read at one moment, and the rates of the last sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub counts: [u64; N],
    pub rates: [f64; N],
}

impl Sample {
    pub fn count(&self, s: Stat) -> u64 {
        self.counts[s as usize]
    }

    pub fn rate(&self, s: Stat) -> f64 {
        self.rates[s as usize]
    }

    /// deliver_get: every way a message left a queue for a client.
    pub fn deliver_get(&self) -> (u64, f64) {
        let kinds = [Stat::Deliver, Stat::DeliverNoAck, Stat::Get, Stat::GetNoAck];
        (
            kinds.iter().map(|s| self.count(*s)).sum(),
            kinds.iter().map(|s| self.rate(*s)).sum(),
        )
    }

    pub fn add(&mut self, o: &Sample) {
        for i in 0..N {
            self.counts[i] += o.counts[i];
            self.rates[i] += o.rates[i];
        }
    }
}

/// Counts kept under a lock or by one task (a queue's state, a channel): plain adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local([u64; N]);

impl Local {
    pub fn add(&mut self, s: Stat, n: u64) {
        self.0[s as usize] += n;
    }

    pub fn sample(&self) -> Sample {
        Sample {
            counts: self.0,
            rates: [0.0; N],
        }
    }
}

/// The last sampled rates of one object, and the counts they were computed from; written by
/// the sampler only.
#[derive(Debug, Default)]
pub struct Rates {
    rates: [AtomicU64; N],
    last: [AtomicU64; N],
}

impl Rates {
    /// The sampler's tick: rates of `counts` over the `secs` since the previous one.
    pub fn tick(&self, counts: &[u64; N], secs: f64) {
        for (i, &now) in counts.iter().enumerate() {
            let before = self.last[i].swap(now, Relaxed);
            let rate = if secs > 0.0 {
                now.saturating_sub(before) as f64 / secs
            } else {
                0.0
            };
            self.rates[i].store(rate.to_bits(), Relaxed);
        }
    }

    /// `counts` with these rates.
    pub fn with(&self, counts: [u64; N]) -> Sample {
        Sample {
            counts,
            rates: std::array::from_fn(|i| f64::from_bits(self.rates[i].load(Relaxed))),
        }
    }

    /// Counts that arrive without having been counted as traffic (absorbed from elsewhere).
    fn shift(&self, s: Stat, n: u64) {
        self.last[s as usize].fetch_add(n, Relaxed);
    }
}

/// Counters of one object (connection, channel, queue, exchange), with the rates its sampler
/// last computed. `S` shards keep publishers on different threads off each other's cache
/// lines where many connections count into one object (exchanges); one shard elsewhere.
#[derive(Debug)]
pub struct Counters<const S: usize = 1> {
    shards: [Shard; S],
    rates: Rates,
}

impl<const S: usize> Default for Counters<S> {
    fn default() -> Self {
        Counters {
            shards: std::array::from_fn(|_| Shard::default()),
            rates: Rates::default(),
        }
    }
}

/// Counters that many threads add to at once.
pub type SharedCounters = Counters<4>;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard([AtomicU64; N]);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard<const S: usize>() -> usize {
    if S == 1 {
        return 0;
    }
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SHARD.fetch_add(1, Relaxed));
        }
        s.get() % S
    })
}

impl<const S: usize> Counters<S> {
    pub fn add(&self, s: Stat, n: u64) {
        self.shards[shard::<S>()].0[s as usize].fetch_add(n, Relaxed);
    }

    pub fn count(&self, s: Stat) -> u64 {
        self.shards
            .iter()
            .map(|sh| sh.0[s as usize].load(Relaxed))
            .sum()
    }

    fn counts(&self) -> [u64; N] {
        std::array::from_fn(|i| Stat::ALL.get(i).map_or(0, |s| self.count(*s)))
    }

    /// The counts now, with the last sampled rates.
    pub fn sample(&self) -> Sample {
        self.rates.with(self.counts())
    }

    /// The sampler's tick: rates over the `secs` since the previous one.
    pub fn tick(&self, secs: f64) {
        self.rates.tick(&self.counts(), secs);
    }

    /// Fold another object's counts in (a connection that closed, into the broker's total).
    pub fn absorb<const T: usize>(&self, o: &Counters<T>) {
        for s in Stat::ALL {
            let n = o.count(s);
            self.add(s, n);
            self.rates.shift(s, n);
        }
    }
}

/// Rates for objects whose counts are read on request only (channels: their counts live in
/// their connection's task): the rate since the previous reading at least a second old.
#[derive(Debug, Default)]
pub struct RateCache {
    seen: std::sync::Mutex<std::collections::HashMap<(u64, u16), (std::time::Instant, Sample)>>,
}

impl RateCache {
    /// `counts` of object `key` read now, with rates filled in.
    pub fn rates(&self, key: (u64, u16), counts: Sample) -> Sample {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Forget objects nobody asked about for a minute (closed channels among them).
        if seen.len() > 1024 {
            seen.retain(|_, (t, _)| now.duration_since(*t).as_secs() < 60);
        }
        let mut out = counts;
        match seen.get(&key) {
            Some((t, before)) => {
                let secs = now.duration_since(*t).as_secs_f64();
                if secs > 0.0 && secs < 60.0 {
                    for i in 0..N {
                        out.rates[i] =
                            counts.counts[i].saturating_sub(before.counts[i]) as f64 / secs;
                    }
                }
                if secs >= 1.0 {
                    seen.insert(key, (now, counts));
                }
            }
            None => {
                seen.insert(key, (now, counts));
            }
        }
        out
    }
}

/// `message_stats` for the given kinds, with deliver_get when any delivery kind is asked for:
/// `{"publish": 10, "publish_details": {"rate": 2.0}, ...}`.
pub fn json(s: &Sample, kinds: &[Stat]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let mut put = |name: &str, count: u64, rate: f64| {
        m.insert(name.to_string(), count.into());
        m.insert(
            format!("{name}_details"),
            serde_json::json!({ "rate": (rate * 10.0).round() / 10.0 }),
        );
    };
    for k in kinds {
        put(k.name(), s.count(*k), s.rate(*k));
    }
    if kinds.iter().any(|k| {
        matches!(
            k,
            Stat::Deliver | Stat::DeliverNoAck | Stat::Get | Stat::GetNoAck
        )
    }) {
        let (c, r) = s.deliver_get();
        put("deliver_get", c, r);
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let c: Counters = Counters::default();
        let x = SharedCounters::default();
        x.add(Stat::PublishIn, 3);
        assert_eq!(x.count(Stat::PublishIn), 3);
        c.add(Stat::Publish, 10);
        c.tick(2.0);
        let s = c.sample();
        assert_eq!(s.count(Stat::Publish), 10);
        assert_eq!(s.rate(Stat::Publish), 5.0);
        c.tick(1.0);
        assert_eq!(c.sample().rate(Stat::Publish), 0.0);
        c.add(Stat::Get, 1);
        c.add(Stat::Deliver, 2);
        let v = json(&c.sample(), &[Stat::Get, Stat::Deliver]);
        assert_eq!(v["deliver_get"], 3);
        assert_eq!(v["get_details"]["rate"], 0.0);
    }
}
