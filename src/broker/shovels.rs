//! Shovels as the broker keeps them: their `shovel` runtime parameters, durable like other
//! definitions, started once the broker listens and again at every boot; `crate::shovel`
//! runs them.

use super::Broker;
use crate::store::{Definition, Op};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const COMPONENT: &str = "shovel";

fn param_def(vhost: &str, name: &str, value: &Value) -> Definition {
    component_def(COMPONENT, vhost, name, value)
}

/// A runtime parameter as stored.
pub(super) fn component_def(component: &str, vhost: &str, name: &str, value: &Value) -> Definition {
    Definition::Parameter {
        component: component.into(),
        vhost: vhost.into(),
        name: name.into(),
        value: value.to_string(),
    }
}

impl Broker {
    /// The broker listens on `port`: start the stored shovels.
    pub fn start_shovels(&self, port: u16) {
        self.amqp_port.store(port, Ordering::Relaxed);
        self.start_federation();
        for (vhost, name, value) in self.shovel_parameters() {
            match crate::shovel::Definition::parse(&value, &name) {
                Ok(def) => self.run_shovel(&vhost, &name, def),
                Err(e) => {
                    tracing::warn!(%vhost, shovel = %name, error = %e, "stored shovel not started")
                }
            }
        }
    }

    /// Every shovel parameter: (vhost, name, value).
    pub fn shovel_parameters(&self) -> Vec<(String, String, Value)> {
        self.params
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((c, _, _), _)| c == COMPONENT)
            .map(|((_, v, n), value)| (v.clone(), n.clone(), value.clone()))
            .collect()
    }

    /// Create or replace a shovel, durably, and (re)start it; Ok(true) if it is new.
    pub fn put_shovel(&self, vhost: &str, name: &str, value: &Value) -> Result<bool, String> {
        let def = crate::shovel::Definition::parse(value, name)?;
        if self.vhost(vhost).is_none() {
            return Err(format!("vhost '{vhost}' does not exist"));
        }
        let _g = self.access_lock();
        self.submit(vec![Op::PutDefinition(param_def(vhost, name, value))]);
        let new = self
            .params
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((COMPONENT.into(), vhost.into(), name.into()), value.clone())
            .is_none();
        self.run_shovel(vhost, name, def);
        Ok(new)
    }

    /// Stop and forget a shovel; false if there was none.
    pub fn clear_shovel(&self, vhost: &str, name: &str) -> bool {
        let _g = self.access_lock();
        self.clear_shovel_locked(vhost, name)
    }

    /// `clear_shovel` for a caller holding the access lock.
    fn clear_shovel_locked(&self, vhost: &str, name: &str) -> bool {
        let removed = self
            .params
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(COMPONENT.into(), vhost.into(), name.into()));
        self.shovels.stop(vhost, name);
        match removed {
            Some(v) => {
                self.submit(vec![Op::DeleteDefinition(param_def(vhost, name, &v))]);
                true
            }
            None => false,
        }
    }

    /// Restart a running shovel (its connections start over); false if there is none.
    pub fn restart_shovel(&self, vhost: &str, name: &str) -> bool {
        let value = self
            .params
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(COMPONENT.into(), vhost.into(), name.into()))
            .cloned();
        match value.map(|v| crate::shovel::Definition::parse(&v, name)) {
            Some(Ok(def)) => {
                self.run_shovel(vhost, name, def);
                true
            }
            _ => false,
        }
    }

    /// A vhost went: so do its shovels (the caller holds the access lock).
    pub(super) fn clear_shovels_of(&self, vhost: &str) {
        for (v, name, _) in self.shovel_parameters() {
            if v == vhost {
                self.clear_shovel_locked(&v, &name);
            }
        }
    }

    /// This broker as an AMQP URI in `vhost`, as the default user (RabbitMQ's shovels and
    /// federation links use a direct connection); None until it listens.
    pub(super) fn local_uri(&self, vhost: &str) -> Option<String> {
        let port = self.amqp_port.load(Ordering::Relaxed);
        if port == 0 {
            return None;
        }
        let host = match self.config.bind.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_string(),
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_string(),
        };
        Some(format!(
            "amqp://{}:{}@{host}:{port}/{}",
            crate::shovel::connect::encode(&self.config.default_user),
            crate::shovel::connect::encode(&self.config.default_pass),
            crate::shovel::connect::encode(vhost)
        ))
    }

    fn run_shovel(&self, vhost: &str, name: &str, def: crate::shovel::Definition) {
        let Some(local) = self.local_uri(vhost) else {
            return; // not listening yet: `start_shovels` starts it
        };
        let weak = self.me.clone();
        let done: crate::shovel::OnDone = Arc::new(move |v: &str, n: &str| {
            if let Some(b) = weak.upgrade() {
                b.clear_shovel(v, n);
            }
        });
        self.shovels.start(vhost, name, def, local, done);
    }
}
