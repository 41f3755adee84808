//! Broker-wide state: configuration, users, virtual hosts, and the live connections (so that
//! shutdown can close each with 320 CONNECTION_FORCED).

use crate::auth::Users;
use crate::config::Config;
use crate::queue::{Outbound, Outbox};
use crate::vhost::VHost;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<u64, Outbox>>,
    next_connection: AtomicU64,
}

impl Broker {
    pub fn new(config: Config) -> Arc<Self> {
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), VHost::new("/"));
        Arc::new(Broker {
            config,
            users: Users::default(),
            vhosts: RwLock::new(vhosts),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn register(&self, outbox: Outbox) -> u64 {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, outbox);
        id
    }

    pub fn unregister(&self, id: u64) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
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
        {
            let _ = outbox.send(Outbound::ForceClose(reason.to_string()));
        }
    }
}
