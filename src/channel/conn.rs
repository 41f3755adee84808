//! What a channel handler may read of its connection: the facts fixed at the handshake.

use crate::queue::Outbox;
use crate::vhost::VHost;
use std::sync::Arc;

/// What the client said it understands (client-properties.capabilities).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub authentication_failure_close: bool,
}

/// Per-connection facts every channel handler may read.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub vhost: Arc<VHost>,
    pub user: String,
    /// Where permissions are checked (live: changes apply to open connections).
    pub users: Arc<crate::auth::Users>,
    pub outbox: Outbox,
    pub frame_max: u32,
    pub channel_max: u16,
    pub caps: ClientCaps,
    pub max_message_size: u64,
    /// RabbitMQ's consumer_max_per_channel (None: unlimited, its default).
    pub max_consumers_per_channel: Option<usize>,
    /// What this connection may hold of partial bodies and uncommitted publishes.
    pub pending: super::held::Budget,
    /// What the management API sees of this connection, counters included.
    pub meta: Arc<crate::meta::ConnMeta>,
}
