//! Broker-wide state: configuration, users, virtual hosts, storage, and the live connections
//! (so that shutdown can close each with 320 CONNECTION_FORCED). Boot replays the store.

use crate::auth::Users;
use crate::config::Config;
use crate::message::Message;
use crate::queue::{Outbound, Outbox};
use crate::store::{self, Committer, Definition, Op, Store};
use crate::vhost::VHost;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use crate::meta::{ConnMeta, ConnStats};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    pub alarms: Arc<crate::alarm::Alarms>,
    /// Listening sockets: (protocol as RabbitMQ names it, port).
    listeners: Mutex<Vec<(&'static str, u16)>>,
    /// RabbitMQ's cluster name (GET/PUT /api/cluster-name); the node name until set.
    cluster_name: RwLock<String>,
    /// Slots for sockets in the handshake (`Config::max_handshakes`).
    pub handshakes: Arc<tokio::sync::Semaphore>,
    /// Every durable write goes through it.
    committer: Arc<Committer>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<u64, (Outbox, Arc<ConnMeta>)>>,
    next_connection: AtomicU64,
    /// Counters of connections that have closed, so totals do not drop when they go.
    closed: ConnStats,
    pub started_at: std::time::Instant,
}

/// This node's name, as RabbitMQ's `rabbit@host`.
pub const NODE_NAME: &str = "warren@localhost";

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
            (None, Some(dir), false) => Arc::new(store::sled::SledStore::open(dir, config.sync)?),
            _ => Arc::new(store::memory::MemoryStore::default()),
        };
        let committer = Committer::start(store.clone(), config.store_backlog_bytes)?;
        let vhost = VHost::new("/", Some(store.clone()), Some(committer.clone()));
        let report = recover(&vhost, store.as_ref(), &committer)?;
        if report.definitions + report.messages > 0 {
            tracing::info!(
                definitions = report.definitions,
                queues = report.queues,
                messages = report.messages,
                "recovered from the store"
            );
        }
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), vhost);
        let alarms = Arc::new(crate::alarm::Alarms::new(
            config.vm_memory_high_watermark,
            config.disk_free_limit,
        ));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(config.max_handshakes.max(1)));
        Ok(Arc::new(Broker {
            listeners: Mutex::new(Vec::new()),
            cluster_name: RwLock::new(NODE_NAME.to_string()),
            alarms,
            handshakes,
            config,
            users: Users::default(),
            committer,
            vhosts: RwLock::new(vhosts),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            closed: ConnStats::default(),
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

    pub fn cluster_name(&self) -> String {
        self.cluster_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_cluster_name(&self, name: &str) {
        *self.cluster_name.write().unwrap_or_else(|p| p.into_inner()) = name.to_string();
    }

    /// The directory whose free space the disk alarm watches (None: nothing on disk).
    pub fn disk_dir(&self) -> Option<&std::path::Path> {
        let on_disk = !self.config.in_memory && self.config.store.is_none();
        self.config.data_dir.as_deref().filter(|_| on_disk)
    }

    pub fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }

    /// Resolves once every write submitted before the call is durable (Err: the store failed;
    /// the write is retried in the background).
    pub async fn sync(&self) -> Result<(), String> {
        match self.committer.sync().await {
            Ok(r) => r,
            Err(_) => Err("storage committer is gone".into()),
        }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, outbox: Outbox, meta: Arc<ConnMeta>) {
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

    /// Totals over every connection this broker has had: (recv_oct, send_oct, published,
    /// delivered).
    pub fn totals(&self) -> [u64; 4] {
        let mut t = self.closed.fields().map(|a| a.load(Ordering::Relaxed));
        for m in self.connections() {
            for (x, a) in t.iter_mut().zip(m.stats.fields()) {
                *x += a.load(Ordering::Relaxed);
            }
        }
        t
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
        for outbox in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(o, _)| o)
        {
            let _ = outbox.send(Outbound::ForceClose(reason.to_string()));
        }
    }
}

fn def_vhost(def: &Definition) -> &str {
    match def {
        Definition::Exchange { vhost, .. }
        | Definition::Queue { vhost, .. }
        | Definition::Binding { vhost, .. } => vhost,
    }
}

/// Replay definitions (exchanges, then queues, then bindings: the store's key order), then put
/// every stored message back in its queues, in position order.
fn recover(vhost: &VHost, store: &dyn Store, committer: &Committer) -> io::Result<RecoveryReport> {
    let rec = store.recover()?;
    let mut report = RecoveryReport {
        definitions: rec.definitions.len(),
        ..Default::default()
    };
    let mut ops = Vec::new();
    for def in rec.definitions {
        if def_vhost(&def) != vhost.name {
            tracing::warn!(?def, "definition for an unknown vhost ignored");
            continue;
        }
        if let Err(e) = vhost.restore(&def) {
            tracing::warn!(error = %e, ?def, "stored definition could not be restored; dropped");
            ops.push(Op::DeleteDefinition(def));
        }
    }
    let mut refs: HashMap<u64, u32> = HashMap::new();
    for entries in rec.queues.values() {
        for (_, id) in entries {
            *refs.entry(*id).or_default() += 1;
        }
    }
    let mut messages: HashMap<u64, Arc<Message>> = HashMap::with_capacity(rec.messages.len());
    // Consume the records as they are decoded, so boot does not hold every message twice.
    for (id, data) in rec.messages {
        let d = store::record::decode(&data).ok_or_else(|| {
            io::Error::other(format!("stored message {id} is corrupt; refusing to start"))
        })?;
        let mut m = Message::from_raw(d.exchange, d.routing_key, &d.raw_properties, d.body)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "stored message {id} has corrupt properties; refusing to start"
                ))
            })?;
        m.store_id = id;
        m.store_refs = AtomicU32::new(refs.get(&id).copied().unwrap_or(0));
        // On disk already: removals apply to it directly.
        m.store_state = std::sync::atomic::AtomicU8::new(store::committer::WRITTEN);
        messages.insert(id, Arc::new(m));
        committer.reserve_ids_above(id);
    }
    let by_key: HashMap<String, Arc<crate::queue::Queue>> = vhost
        .queues()
        .into_iter()
        .filter_map(|q| Some((q.config.store_key.as_ref()?.as_str().to_string(), q)))
        .collect();
    for (key, entries) in rec.queues {
        let queue = by_key.get(key.as_str());
        let restored = entries
            .iter()
            .filter_map(|(seq, id)| messages.get(id).map(|m| (*seq, m.clone())));
        match queue {
            Some(q) => {
                report.queues += 1;
                report.messages += entries.len();
                q.restore(restored);
            }
            None if entries.iter().all(|(pos, id)| {
                messages
                    .get(id)
                    .is_some_and(|m| vhost.restore_delayed(&key, *pos, m.clone()))
            }) =>
            {
                report.messages += entries.len();
            }
            None => {
                // Index of a queue deleted just before a crash: its messages go too.
                ops.push(Op::DropQueue(key.clone()));
                for (_, m) in restored {
                    if m.release_store_ref() {
                        ops.push(Op::DeleteMessage(m));
                    }
                }
            }
        }
    }
    if !ops.is_empty() {
        committer.submit(ops, None);
    }
    Ok(report)
}
