//! Changing users, vhosts, permissions and limits: each change is submitted to the committer
//! and applied in memory under one lock, so the store sees changes in the order memory does;
//! callers that answer a peer wait for `Broker::sync` first (as the management API does).

use super::recover::{global_def, new_vhost, policy_def, user_def, vhost_def};
use super::Broker;
use crate::auth::{Permission, TopicPermission, User};
use crate::queue::Effects;
use crate::store::{Definition, Op};
use crate::vhost::VHostMeta;

impl Broker {
    pub(super) fn submit(&self, ops: Vec<Op>) {
        self.committer.submit(ops, None);
    }

    pub(super) fn access_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.access.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create or replace a user.
    pub fn put_user(&self, user: User) {
        let _g = self.access_lock();
        self.submit(vec![Op::PutDefinition(user_def(&user))]);
        self.users.put_user(user);
    }

    /// Delete a user and its permissions; false if there was none.
    pub fn delete_user(&self, name: &str) -> bool {
        let _g = self.access_lock();
        let Some(user) = self.users.user(name) else {
            return false;
        };
        let mut ops = vec![Op::DeleteDefinition(user_def(&user))];
        for (vhost, u, _) in self.users.permissions() {
            if u == name {
                ops.push(Op::DeleteDefinition(permission_key(&vhost, &u)));
            }
        }
        for (vhost, u, t) in self.users.topic_permissions() {
            if u == name {
                ops.push(Op::DeleteDefinition(topic_key(&vhost, &u, &t.exchange)));
            }
        }
        self.submit(ops);
        self.users.delete_user(name)
    }

    /// Set a user's permissions in a vhost (both must exist; the regexes must compile).
    pub fn set_permission(
        &self,
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), String> {
        let p = Permission::new(configure, write, read)?;
        let _g = self.access_lock();
        self.require(vhost, user)?;
        self.submit(vec![Op::PutDefinition(Definition::Permission {
            vhost: vhost.into(),
            user: user.into(),
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
        })]);
        self.users.set_permission(vhost, user, p);
        Ok(())
    }

    /// false when there was nothing to clear.
    pub fn clear_permission(&self, vhost: &str, user: &str) -> bool {
        let _g = self.access_lock();
        if self.users.permission(vhost, user).is_none() {
            return false;
        }
        self.submit(vec![Op::DeleteDefinition(permission_key(vhost, user))]);
        self.users.clear_permission(vhost, user)
    }

    pub fn set_topic_permission(
        &self,
        vhost: &str,
        user: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), String> {
        let t = TopicPermission::new(user, vhost, exchange, write, read)?;
        let _g = self.access_lock();
        self.require(vhost, user)?;
        self.submit(vec![Op::PutDefinition(Definition::TopicPermission {
            vhost: vhost.into(),
            user: user.into(),
            exchange: exchange.into(),
            write: write.into(),
            read: read.into(),
        })]);
        self.users.set_topic_permission(vhost, user, t);
        Ok(())
    }

    /// Clear one exchange's topic permission, or all of them; false when there was none.
    pub fn clear_topic_permissions(&self, vhost: &str, user: &str, exchange: Option<&str>) -> bool {
        let _g = self.access_lock();
        let gone = self.users.clear_topic_permissions(vhost, user, exchange);
        let ops: Vec<Op> = gone
            .iter()
            .map(|x| Op::DeleteDefinition(topic_key(vhost, user, x)))
            .collect();
        let any = !ops.is_empty();
        self.submit(ops);
        any
    }

    fn require(&self, vhost: &str, user: &str) -> Result<(), String> {
        if self.vhost(vhost).is_none() {
            return Err(format!("no_such_vhost: {vhost}"));
        }
        if self.users.user(user).is_none() {
            return Err(format!("no_such_user: {user}"));
        }
        Ok(())
    }

    /// Create a vhost, or update its description and tags (limits are kept); true if created.
    pub fn put_vhost(&self, name: &str, description: &str, tags: Vec<String>) -> bool {
        let _g = self.access_lock();
        let existing = self.vhost(name);
        let vh = existing.clone().unwrap_or_else(|| {
            new_vhost(
                name,
                &super::recover::Parts {
                    store: &self.store,
                    committer: &self.committer,
                    clock: &self.clock,
                    paging: self.config.paging(),
                    streams_dir: self.config.streams_dir(),
                    spill: self.spill.clone(),
                },
            )
        });
        let meta = VHostMeta {
            description: description.to_string(),
            tags,
            limits: vh.meta().limits,
        };
        self.submit(vec![Op::PutDefinition(vhost_def(name, &meta))]);
        vh.set_meta(meta);
        if existing.is_none() {
            self.vhosts_mut().insert(name.to_string(), vh);
        }
        existing.is_none()
    }

    /// Set (Some) or clear (None) one vhost limit; false when the vhost does not exist.
    pub fn set_vhost_limit(&self, name: &str, limit: &str, value: Option<i64>) -> bool {
        let _g = self.access_lock();
        let Some(vh) = self.vhost(name) else {
            return false;
        };
        let mut meta = vh.meta();
        match value {
            Some(v) => meta.limits.insert(limit.to_string(), v),
            None => meta.limits.remove(limit),
        };
        self.submit(vec![Op::PutDefinition(vhost_def(name, &meta))]);
        vh.set_meta(meta);
        true
    }

    /// Set (Some) or clear (None) one user limit; false when the user does not exist.
    pub fn set_user_limit(&self, name: &str, limit: &str, value: Option<i64>) -> bool {
        let _g = self.access_lock();
        let Some(user) = self.users.user(name) else {
            return false;
        };
        let mut user = (*user).clone();
        match value {
            Some(v) => user.limits.insert(limit.to_string(), v),
            None => user.limits.remove(limit),
        };
        self.submit(vec![Op::PutDefinition(user_def(&user))]);
        self.users.put_user(user);
        true
    }

    pub fn global_parameter(&self, name: &str) -> Option<serde_json::Value> {
        self.globals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn global_parameters(&self) -> Vec<(String, serde_json::Value)> {
        let globals = self.globals.read().unwrap_or_else(|p| p.into_inner());
        globals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Set a global parameter, durably; true if it is new.
    pub fn set_global_parameter(&self, name: &str, value: serde_json::Value) -> bool {
        let _g = self.access_lock();
        self.submit(vec![Op::PutDefinition(global_def(name, &value))]);
        let mut globals = self.globals.write().unwrap_or_else(|p| p.into_inner());
        globals.insert(name.to_string(), value).is_none()
    }

    /// Clear a global parameter; false if there was none.
    pub fn clear_global_parameter(&self, name: &str) -> bool {
        let _g = self.access_lock();
        let mut globals = self.globals.write().unwrap_or_else(|p| p.into_inner());
        let Some(v) = globals.remove(name) else {
            return false;
        };
        self.submit(vec![Op::DeleteDefinition(global_def(name, &v))]);
        true
    }

    /// Set a policy or operator policy in a vhost and apply it; Ok(true) if it is new.
    pub fn set_policy(&self, vhost: &str, p: crate::vhost::Policy) -> Result<bool, String> {
        let _g = self.access_lock();
        let vh = self
            .vhost(vhost)
            .ok_or_else(|| format!("no_such_vhost: {vhost}"))?;
        self.submit(vec![Op::PutDefinition(policy_def(vhost, &p))]);
        let mut fx = Effects::default();
        let created = vh.set_policy(p, &mut fx);
        vh.submit(&mut fx);
        Ok(created)
    }

    /// Clear a policy (or operator policy); false if there was none.
    pub fn clear_policy(&self, vhost: &str, name: &str, operator: bool) -> bool {
        let _g = self.access_lock();
        let Some(vh) = self.vhost(vhost) else {
            return false;
        };
        let Some(p) = vh
            .policies()
            .into_iter()
            .find(|p| p.name == name && p.operator == operator)
        else {
            return false;
        };
        self.submit(vec![Op::DeleteDefinition(policy_def(vhost, &p))]);
        let mut fx = Effects::default();
        let removed = vh.clear_policy(name, operator, &mut fx);
        vh.submit(&mut fx);
        removed
    }

    /// Delete a vhost: its connections are closed with 320, and its queues, exchanges,
    /// bindings, messages and permissions go, durably. false when there was none.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let _g = self.access_lock();
        let Some(vh) = self.vhosts_mut().remove(name) else {
            return false;
        };
        self.close_where(|m| m.vhost == name, &format!("vhost '{name}' is deleted"));
        self.clear_shovels_of(name);
        let mut fx = Effects::default();
        vh.destroy(&mut fx);
        vh.submit(&mut fx);
        let mut ops = vec![Op::DeleteDefinition(vhost_def(name, &VHostMeta::default()))];
        for p in vh.policies() {
            ops.push(Op::DeleteDefinition(policy_def(name, &p)));
        }
        for (v, user, _) in self.users.permissions() {
            if v == name {
                ops.push(Op::DeleteDefinition(permission_key(&v, &user)));
            }
        }
        for (v, user, t) in self.users.topic_permissions() {
            if v == name {
                ops.push(Op::DeleteDefinition(topic_key(&v, &user, &t.exchange)));
            }
        }
        self.submit(ops);
        self.users.drop_vhost(name);
        true
    }
}

/// A definition that deletes by key (only the key fields matter).
fn permission_key(vhost: &str, user: &str) -> Definition {
    Definition::Permission {
        vhost: vhost.into(),
        user: user.into(),
        configure: String::new(),
        write: String::new(),
        read: String::new(),
    }
}

fn topic_key(vhost: &str, user: &str, exchange: &str) -> Definition {
    Definition::TopicPermission {
        vhost: vhost.into(),
        user: user.into(),
        exchange: exchange.into(),
        write: String::new(),
        read: String::new(),
    }
}
