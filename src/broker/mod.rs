//! Broker-wide state: configuration, users, virtual hosts, storage, and the live connections
//! (so that shutdown can close each with 320 CONNECTION_FORCED). Boot replays the store
//! (`recover`); users, vhosts and permissions change durably through `access`.

mod access;
pub mod federation;
pub mod rates;
mod recover;
mod reset;
mod shovels;
mod test_clock;

use crate::auth::Users;
use crate::config::Config;
use crate::queue::{Outbound, Outbox};
use crate::store::{self, Committer, Store};
use crate::vhost::VHost;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::meta::{ConnMeta, ConnStats};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    /// Users, permissions, topic permissions, user limits (shared with connections, which
    /// check permissions against it).
    pub users: Arc<Users>,
    /// Serializes changes to users, vhosts and permissions, so the store sees them in the order
    /// memory does.
    access: Mutex<()>,
    store: Arc<dyn Store>,
    /// What timers read: the system clock, or a test clock (`advance_clock`).
    pub clock: Arc<crate::clock::Clock>,
    pub alarms: Arc<crate::alarm::Alarms>,
    /// Where queues spill under memory pressure (new vhosts' queues too).
    spill: Option<crate::queue::SpillTo>,
    /// Listening sockets: (protocol as RabbitMQ names it, port).
    listeners: Mutex<Vec<(&'static str, u16)>>,
    /// Global runtime parameters (cluster_name, internal_cluster_id, ...), durable.
    globals: RwLock<recover::Globals>,
    /// Runtime parameters of components Warren runs (`shovel`), durable.
    params: RwLock<recover::Params>,
    /// The shovels running (`broker::shovels` starts and stops them).
    pub shovels: crate::shovel::Registry,
    /// The federation links running (`broker::federation` starts and stops them).
    pub federation: crate::federation::Registry,
    /// One reconciliation of federation links at a time.
    federation_lock: Mutex<()>,
    /// This broker, weakly (what a shovel's task holds to remove itself when done).
    me: std::sync::Weak<Broker>,
    /// The AMQP port, once listening: what a shovel's "amqp://" (this broker) connects to.
    amqp_port: std::sync::atomic::AtomicU16,
    /// Slots for sockets in the handshake (`Config::max_handshakes`).
    pub handshakes: Arc<tokio::sync::Semaphore>,
    /// Every durable write goes through it.
    committer: Arc<Committer>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<u64, (Outbox, Arc<ConnMeta>)>>,
    next_connection: AtomicU64,
    /// Connections registered since boot (Prometheus' rabbitmq_connections_opened_total).
    connections_opened: AtomicU64,
    /// Counters of connections that have closed, so totals do not drop when they go.
    closed: ConnStats,
    /// Channel rates, worked out between two readings (see `stats::RateCache`).
    pub channel_rates: crate::stats::RateCache,
    pub started_at: std::time::Instant,
}

/// This node's name, as RabbitMQ's `rabbit@host`.
pub use crate::config::NODE_NAME;

/// What boot found in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoveryReport {
    pub definitions: usize,
    pub queues: usize,
    pub messages: usize,
}

impl Broker {
    /// Open the store (sled in `data_dir`, or memory), replay it, and build the broker.
    pub fn new(config: Config) -> io::Result<Arc<Self>> {
        let store: Arc<dyn Store> = match (&config.store, &config.data_dir, config.in_memory) {
            (Some(store), _, _) => store.clone(),
            (None, Some(dir), false) => Arc::new(store::files::FileStore::open(dir, config.sync)?),
            _ => Arc::new(store::memory::MemoryStore::default()),
        };
        let committer = Committer::start(store.clone(), config.store_backlog_bytes)?;
        let users = Arc::new(Users::new(config.loopback_users.clone()));
        let clock = Arc::new(if config.test_clock {
            crate::clock::Clock::test()
        } else {
            crate::clock::Clock::system()
        });
        let alarms = Arc::new(crate::alarm::Alarms::new(
            config.vm_memory_high_watermark,
            config.disk_free_limit,
            config.paging_ratio,
        ));
        let spill = match config.spill_dir() {
            Some(dir) => {
                // Spilled messages are scratch: a restart starts without them.
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                Some(crate::queue::SpillTo {
                    dir: dir.into(),
                    pressure: alarms.pressure.clone(),
                })
            }
            None => None,
        };
        let (vhosts, globals, params, report) =
            recover::recover(&config, &store, &committer, &users, &clock, spill.as_ref())?;
        if report.definitions + report.messages > 0 {
            tracing::info!(
                definitions = report.definitions,
                queues = report.queues,
                messages = report.messages,
                "recovered from the store"
            );
        }
        let handshakes = Arc::new(tokio::sync::Semaphore::new(config.max_handshakes.max(1)));
        Ok(Arc::new_cyclic(|me| Broker {
            me: me.clone(),
            listeners: Mutex::new(Vec::new()),
            globals: RwLock::new(globals),
            params: RwLock::new(params),
            shovels: Default::default(),
            federation: Default::default(),
            federation_lock: Mutex::new(()),
            amqp_port: Default::default(),
            alarms,
            spill,
            handshakes,
            config,
            users,
            store,
            clock,
            access: Mutex::new(()),
            committer,
            vhosts: RwLock::new(vhosts),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            connections_opened: AtomicU64::new(0),
            closed: ConnStats::default(),
            channel_rates: Default::default(),
            started_at: std::time::Instant::now(),
        }))
    }

    /// A listener is up (`amqp`, `http`).
    pub fn listening(&self, protocol: &'static str, port: u16) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((protocol, port));
    }

    pub fn listeners(&self) -> Vec<(&'static str, u16)> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// RabbitMQ's cluster name (GET/PUT /api/cluster-name): the `cluster_name` global
    /// parameter, the node name until one is set.
    pub fn cluster_name(&self) -> String {
        self.global_parameter("cluster_name")
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| NODE_NAME.to_string())
    }

    pub fn set_cluster_name(&self, name: &str) {
        self.set_global_parameter("cluster_name", name.into());
    }

    /// The directory whose free space the disk alarm watches (None: nothing on disk).
    pub fn disk_dir(&self) -> Option<&std::path::Path> {
        let on_disk = !self.config.in_memory && self.config.store.is_none();
        self.config.data_dir.as_deref().filter(|_| on_disk)
    }

    pub fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }

    /// Let go of the store's files (after the final sync of a stop); later writes are
    /// dropped, and the committer thread ends.
    pub fn close_store(&self) {
        self.store.close();
    }

    /// Resolves once every write submitted before the call is durable (Err: the store failed;
    /// the write is retried in the background).
    pub async fn sync(&self) -> crate::store::StoreResult<()> {
        match self.committer.sync().await {
            Ok(r) => r,
            Err(_) => Err(crate::store::StoreError::new(
                crate::store::StoreErrorKind::Closed,
                "storage committer is gone",
            )),
        }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn vhosts_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<VHost>>> {
        self.vhosts.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask every connection for its channels (each answers from its own task, between two
    /// read bursts); a connection that does not answer within a second is left out.
    pub async fn channel_snapshots(
        &self,
    ) -> Vec<(Arc<ConnMeta>, Vec<crate::meta::ChannelSnapshot>)> {
        let asks: Vec<_> = {
            let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            conns
                .values()
                .filter_map(|(outbox, meta)| {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    outbox.send(Outbound::Snapshot(tx)).ok()?;
                    Some((meta.clone(), rx))
                })
                .collect()
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut out = Vec::new();
        for (meta, rx) in asks {
            if let Ok(Ok(list)) = tokio::time::timeout_at(deadline, rx).await {
                out.push((meta, list));
            }
        }
        out.sort_by_key(|(m, _)| m.id);
        out
    }

    /// Close with 320 CONNECTION_FORCED every connection `pick` chooses.
    pub fn close_where(&self, pick: impl Fn(&ConnMeta) -> bool, reason: &str) {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for (outbox, _) in conns.values().filter(|(_, m)| pick(m)) {
            let _ = outbox.send(Outbound::ForceClose(reason.to_string()));
        }
    }

    /// Send each live connection a request built around a reply channel; the replies.
    pub fn tell_connections(
        &self,
        make: impl Fn(tokio::sync::oneshot::Sender<()>) -> Outbound,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .values()
            .filter_map(|(outbox, _)| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                outbox.send(make(tx)).ok().map(|()| rx)
            })
            .collect()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, outbox: Outbox, meta: Arc<ConnMeta>) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.id, (outbox, meta));
    }

    pub fn unregister(&self, id: u64) {
        let gone = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some((_, meta)) = gone {
            self.closed.add(&meta.stats);
        }
    }

    /// Connections and channels opened since boot (closed ones are these less the open ones).
    pub fn opened_totals(&self) -> (u64, u64) {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let channels = conns
            .values()
            .map(|(_, m)| m.stats.channels_opened.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.closed.channels_opened.load(Ordering::Relaxed);
        (self.connections_opened.load(Ordering::Relaxed), channels)
    }

    /// Live connections, oldest first.
    pub fn connections(&self) -> Vec<Arc<ConnMeta>> {
        let mut v: Vec<Arc<ConnMeta>> = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, m)| m.clone())
            .collect();
        v.sort_by_key(|m| m.id);
        v
    }

    /// Totals over every connection this broker has had: received and sent bytes, and the
    /// message_stats (counts, and rates as last sampled).
    pub fn totals(&self) -> (u64, u64, crate::stats::Sample) {
        let mut recv = self.closed.recv_oct.load(Ordering::Relaxed);
        let mut send = self.closed.send_oct.load(Ordering::Relaxed);
        let mut messages = self.closed.messages.sample();
        for m in self.connections() {
            recv += m.stats.recv_oct.load(Ordering::Relaxed);
            send += m.stats.send_oct.load(Ordering::Relaxed);
            messages.add(&m.stats.messages.sample());
        }
        (recv, send, messages)
    }

    /// Close one connection by name with 320 CONNECTION_FORCED; false if there is none.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        match conns.values().find(|(_, m)| m.name == name) {
            Some((outbox, _)) => {
                let _ = outbox.send(Outbound::ForceClose(reason.to_string()));
                true
            }
            None => false,
        }
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut v: Vec<Arc<VHost>> = self
            .vhosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn connection_count(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Ask every connection to close with 320 CONNECTION_FORCED.
    pub fn close_all(&self, reason: &str) {
        self.close_where(|_| true, reason);
    }
}
