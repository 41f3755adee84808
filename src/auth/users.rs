//! The registry: users, permissions per (vhost, user), topic permissions, and a generation
//! number that moves with every change so callers can cache answers until it moves.

use super::password::PasswordHash;
use super::permissions::{Kind, Perm, Permission, TopicPermission};
use super::sasl::Login;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// RabbitMQ's per-user limits (`max-connections`, `max-channels`); negative means none.
pub type UserLimits = BTreeMap<String, i64>;

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    /// administrator, monitoring, policymaker, management, impersonator, or anything else.
    pub tags: Vec<String>,
    pub limits: UserLimits,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// A limit that applies (set and not negative).
    pub fn limit(&self, name: &str) -> Option<u64> {
        self.limits.get(name).and_then(|v| u64::try_from(*v).ok())
    }
}

/// Why a login failed (logged; the peer only learns that it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    NoSuchUser,
    BadPassword,
    LoopbackOnly,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<String, Arc<User>>,
    /// (vhost, user) → permissions.
    permissions: BTreeMap<(String, String), Arc<Permission>>,
    /// (vhost, user) → one entry per exchange.
    topic: BTreeMap<(String, String), Vec<TopicPermission>>,
}

#[derive(Debug, Default)]
pub struct Users {
    inner: RwLock<Inner>,
    generation: AtomicU64,
    /// RabbitMQ's loopback_users: these may only log in from a loopback address.
    loopback_users: Vec<String>,
}

struct Write<'a> {
    guard: RwLockWriteGuard<'a, Inner>,
    generation: &'a AtomicU64,
}

impl std::ops::Deref for Write<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl std::ops::DerefMut for Write<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        // Runs before the guard (a field) is dropped: still under the lock.
        self.generation.fetch_add(1, Ordering::Release);
    }
}

fn key(vhost: &str, user: &str) -> (String, String) {
    (vhost.to_string(), user.to_string())
}

impl Users {
    pub fn new(loopback_users: Vec<String>) -> Users {
        Users {
            loopback_users,
            ..Default::default()
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry for a change; the generation moves when the change is done, before the
    /// lock is released (a reader that sees the new generation then reads the new state).
    fn write(&self) -> Write<'_> {
        Write {
            guard: self.inner.write().unwrap_or_else(|p| p.into_inner()),
            generation: &self.generation,
        }
    }

    /// Moves with every change; cached permission answers are good while it stays.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn loopback_only(&self, user: &str) -> bool {
        self.loopback_users.iter().any(|u| u == user)
    }

    /// Check a password login; `peer` decides whether loopback-only users may connect.
    pub fn authenticate(&self, login: &Login, peer: IpAddr) -> Result<Arc<User>, Refused> {
        let user = self.user(&login.user).ok_or(Refused::NoSuchUser)?;
        if !user.password.verify(&login.password) {
            return Err(Refused::BadPassword);
        }
        if self.loopback_only(&user.name) && !peer.to_canonical().is_loopback() {
            return Err(Refused::LoopbackOnly);
        }
        Ok(user)
    }

    /// SASL EXTERNAL: the TLS layer verified the client's certificate, whose common name is
    /// the user; no password is involved.
    pub fn authenticate_external(&self, name: &str, peer: IpAddr) -> Result<Arc<User>, Refused> {
        let user = self.user(name).ok_or(Refused::NoSuchUser)?;
        if self.loopback_only(&user.name) && !peer.to_canonical().is_loopback() {
            return Err(Refused::LoopbackOnly);
        }
        Ok(user)
    }

    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.read().users.get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<User>> {
        self.read().users.values().cloned().collect()
    }

    pub fn put_user(&self, user: User) {
        self.write().users.insert(user.name.clone(), Arc::new(user));
    }

    /// Remove a user with its permissions; false when there was none.
    pub fn delete_user(&self, name: &str) -> bool {
        let mut inner = self.write();
        inner.permissions.retain(|(_, u), _| u != name);
        inner.topic.retain(|(_, u), _| u != name);
        inner.users.remove(name).is_some()
    }

    pub fn permission(&self, vhost: &str, user: &str) -> Option<Arc<Permission>> {
        self.read().permissions.get(&key(vhost, user)).cloned()
    }

    /// Every (vhost, user, permission), by vhost then user.
    pub fn permissions(&self) -> Vec<(String, String, Arc<Permission>)> {
        self.read()
            .permissions
            .iter()
            .map(|((v, u), p)| (v.clone(), u.clone(), p.clone()))
            .collect()
    }

    pub fn set_permission(&self, vhost: &str, user: &str, p: Permission) {
        self.write()
            .permissions
            .insert(key(vhost, user), Arc::new(p));
    }

    pub fn clear_permission(&self, vhost: &str, user: &str) -> bool {
        self.write().permissions.remove(&key(vhost, user)).is_some()
    }

    /// Every (vhost, user, topic permission).
    pub fn topic_permissions(&self) -> Vec<(String, String, TopicPermission)> {
        let inner = self.read();
        let mut out = Vec::new();
        for ((v, u), list) in &inner.topic {
            for t in list {
                out.push((v.clone(), u.clone(), t.clone()));
            }
        }
        out
    }

    /// Set (replacing the same exchange's entry).
    pub fn set_topic_permission(&self, vhost: &str, user: &str, t: TopicPermission) {
        let mut inner = self.write();
        let list = inner.topic.entry(key(vhost, user)).or_default();
        list.retain(|x| x.exchange != t.exchange);
        list.push(t);
        list.sort_by(|a, b| a.exchange.cmp(&b.exchange));
    }

    /// Clear one exchange's entry, or all of them; the exchanges that had one.
    pub fn clear_topic_permissions(
        &self,
        vhost: &str,
        user: &str,
        exchange: Option<&str>,
    ) -> Vec<String> {
        let mut inner = self.write();
        let k = key(vhost, user);
        let Some(list) = inner.topic.get_mut(&k) else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        list.retain(|t| {
            let hit = exchange.is_none_or(|x| x == t.exchange);
            if hit {
                gone.push(t.exchange.clone());
            }
            !hit
        });
        if list.is_empty() {
            inner.topic.remove(&k);
        }
        gone
    }

    /// A vhost went: its permissions go with it.
    pub fn drop_vhost(&self, vhost: &str) {
        let mut inner = self.write();
        inner.permissions.retain(|(v, _), _| v != vhost);
        inner.topic.retain(|(v, _), _| v != vhost);
    }

    /// May `user` do `perm` on this resource of `vhost`?
    pub fn check(&self, user: &str, vhost: &str, perm: Perm, kind: Kind, name: &str) -> bool {
        self.read()
            .permissions
            .get(&key(vhost, user))
            .is_some_and(|p| p.allows(perm, kind, name))
    }

    /// Topic authorisation: allowed unless the user has a topic permission on this exchange
    /// whose regex rejects the routing key.
    pub fn check_topic(
        &self,
        user: &str,
        vhost: &str,
        perm: Perm,
        exchange: &str,
        routing_key: &str,
    ) -> bool {
        let inner = self.read();
        let Some(list) = inner.topic.get(&key(vhost, user)) else {
            return true;
        };
        list.iter()
            .filter(|t| t.exchange == exchange)
            .all(|t| t.allows(perm, routing_key))
    }

    /// Whether `user` has any topic permission in `vhost` (if not, topic checks always pass).
    pub fn has_topic_permissions(&self, user: &str, vhost: &str) -> bool {
        self.read().topic.contains_key(&key(vhost, user))
    }
}
