//! What the broker and the management API see of a live connection: its facts and the
//! counters its task keeps. A leaf: connections write it, the registry and the API read it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What the management API shows of a live connection. Counters are written only by the
/// connection's own task, once per read burst or inbox drain, so they cost no contention.
#[derive(Debug)]
pub struct ConnMeta {
    pub id: u64,
    /// RabbitMQ's connection name: "peer -> local".
    pub name: String,
    pub peer: std::net::SocketAddr,
    pub user: String,
    pub vhost: String,
    pub client_properties: amq_protocol::types::FieldTable,
    pub connected_at_ms: u64,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub channels: AtomicU32,
    pub stats: ConnStats,
}

#[derive(Debug, Default)]
pub struct ConnStats {
    pub recv_oct: AtomicU64,
    pub send_oct: AtomicU64,
    /// The connection's message_stats (publish, confirm, deliver, ack, ...), summed over its
    /// channels; the broker's sampler keeps their rates.
    pub messages: crate::stats::Counters,
    /// Channels this connection opened (Prometheus' rabbitmq_channels_opened_total).
    pub channels_opened: AtomicU64,
}

impl ConnStats {
    pub fn add(&self, o: &ConnStats) {
        self.channels_opened
            .fetch_add(o.channels_opened.load(Ordering::Relaxed), Ordering::Relaxed);
        self.recv_oct
            .fetch_add(o.recv_oct.load(Ordering::Relaxed), Ordering::Relaxed);
        self.send_oct
            .fetch_add(o.send_oct.load(Ordering::Relaxed), Ordering::Relaxed);
        self.messages.absorb(&o.messages);
    }
}

/// What the management API shows of one channel, taken by the connection's own task when asked
/// (`Outbound::Snapshot`), so that keeping it costs nothing in between.
#[derive(Debug, Clone, Default)]
pub struct ChannelSnapshot {
    pub number: u16,
    pub consumer_count: usize,
    pub messages_unacknowledged: usize,
    pub messages_unconfirmed: u64,
    pub messages_uncommitted: usize,
    pub acks_uncommitted: usize,
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    /// The channel's message_stats counts (rates are worked out by whoever asks twice).
    pub counts: crate::stats::Sample,
}
