//! The access-control half of a definitions file: users (with their hashes), vhosts,
//! permissions, topic permissions and vhost limits (RabbitMQ exports them as `vhost-limits`
//! parameters). Everything is checked before anything is applied.

use super::Imported;
use crate::auth::{Permission, TopicPermission, User};
use crate::broker::Broker;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Access {
    users: Vec<User>,
    /// (name, description, tags)
    vhosts: Vec<(String, String, Vec<String>)>,
    /// (vhost, user, configure, write, read)
    permissions: Vec<[String; 5]>,
    /// (vhost, user, exchange, write, read)
    topic: Vec<[String; 5]>,
    limits: Vec<(String, BTreeMap<String, i64>)>,
    policies: Vec<(String, crate::vhost::Policy)>,
    globals: Vec<(String, Value)>,
    /// (vhost, name, value) of `shovel` parameters.
    shovels: Vec<(String, String, Value)>,
    /// federation-upstream and federation-upstream-set parameters: (component, vhost, name, value).
    federation: Vec<(String, String, String, Value)>,
}

fn list<'a>(defs: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    defs.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

impl Access {
    pub fn check(broker: &Broker, defs: &Value) -> Result<Access, String> {
        let mut a = Access::default();
        let empty = Map::new();
        for u in list(defs, "users") {
            let name = text(u, "name");
            let fields = u.as_object().unwrap_or(&empty);
            let user = super::super::users::user_from_json(&name, fields, None)
                .map_err(|reason| format!("user '{name}': {reason}"))?;
            a.users.push(user);
        }
        for v in list(defs, "vhosts") {
            let name = text(v, "name");
            if name.is_empty() || name.len() > 255 {
                return Err("vhost names are 1 to 255 bytes".into());
            }
            let tags = super::super::users::tags_of(v.get("tags").unwrap_or(&Value::Null))
                .unwrap_or_default();
            a.vhosts.push((name, text(v, "description"), tags));
        }
        for p in list(defs, "permissions") {
            let f = ["vhost", "user", "configure", "write", "read"].map(|k| text(p, k));
            a.known(broker, &f[0], &f[1])?;
            Permission::new(&f[2], &f[3], &f[4])
                .map_err(|e| format!("permissions of '{}' in '{}': {e}", f[1], f[0]))?;
            a.permissions.push(f);
        }
        for t in list(defs, "topic_permissions") {
            let f = ["vhost", "user", "exchange", "write", "read"].map(|k| text(t, k));
            a.known(broker, &f[0], &f[1])?;
            TopicPermission::new(&f[1], &f[0], &f[2], &f[3], &f[4])
                .map_err(|e| format!("topic permissions of '{}' in '{}': {e}", f[1], f[0]))?;
            a.topic.push(f);
        }
        for p in list(defs, "policies") {
            let (vhost, name) = (text(p, "vhost"), text(p, "name"));
            if broker.vhost(&vhost).is_none() && !a.has_vhost(&vhost) {
                return Err(format!("policy '{name}': no such vhost '{vhost}'"));
            }
            let fields = p.as_object().unwrap_or(&empty);
            let policy = super::super::policies::policy_from_json(&name, fields, false)
                .map_err(|e| format!("policy '{name}' in '{vhost}': {e}"))?;
            a.policies.push((vhost, policy));
        }
        for p in list(defs, "parameters") {
            let component = text(p, "component");
            if component == "operator_policy" {
                let (vhost, name) = (text(p, "vhost"), text(p, "name"));
                if broker.vhost(&vhost).is_none() && !a.has_vhost(&vhost) {
                    return Err(format!("operator policy '{name}': no such vhost '{vhost}'"));
                }
                let fields = p.get("value").and_then(Value::as_object).unwrap_or(&empty);
                let policy = super::super::policies::policy_from_json(&name, fields, true)
                    .map_err(|e| format!("operator policy '{name}' in '{vhost}': {e}"))?;
                a.policies.push((vhost, policy));
                continue;
            }
            if component == "shovel" {
                let (vhost, name) = (text(p, "vhost"), text(p, "name"));
                if broker.vhost(&vhost).is_none() && !a.has_vhost(&vhost) {
                    return Err(format!("shovel '{name}': no such vhost '{vhost}'"));
                }
                let value = p.get("value").cloned().unwrap_or(Value::Null);
                crate::shovel::Definition::parse(&value, &name)
                    .map_err(|e| format!("shovel '{name}' in '{vhost}': {e}"))?;
                a.shovels.push((vhost, name, value));
                continue;
            }
            if component == crate::broker::federation::UPSTREAM
                || component == crate::broker::federation::UPSTREAM_SET
            {
                let (vhost, name) = (text(p, "vhost"), text(p, "name"));
                if broker.vhost(&vhost).is_none() && !a.has_vhost(&vhost) {
                    return Err(format!("{component} '{name}': no such vhost '{vhost}'"));
                }
                let value = p.get("value").cloned().unwrap_or(Value::Null);
                let checked = if component == crate::broker::federation::UPSTREAM {
                    crate::federation::Upstream::parse(&value, &name).map(|_| ())
                } else {
                    crate::federation::validate_set(&value, &name)
                };
                checked.map_err(|e| format!("{component} '{name}' in '{vhost}': {e}"))?;
                a.federation.push((component, vhost, name, value));
                continue;
            }
            if component != "vhost-limits" {
                tracing::warn!(parameter = %p, "definitions import: parameter not supported, ignored");
                continue;
            }
            let vhost = text(p, "vhost");
            if broker.vhost(&vhost).is_none() && !a.has_vhost(&vhost) {
                return Err(format!("vhost limits for '{vhost}': no such vhost"));
            }
            let limits = p
                .get("value")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(k, _)| matches!(k.as_str(), "max-connections" | "max-queues"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect();
            a.limits.push((vhost, limits));
        }
        for g in list(defs, "global_parameters") {
            let name = text(g, "name");
            if name.is_empty() || name.len() > 255 {
                return Err("global parameter names are 1 to 255 bytes".into());
            }
            a.globals
                .push((name, g.get("value").cloned().unwrap_or(Value::Null)));
        }
        Ok(a)
    }

    /// Whether the file creates this vhost.
    pub fn has_vhost(&self, name: &str) -> bool {
        self.vhosts.iter().any(|(n, _, _)| n == name)
    }

    fn known(&self, broker: &Broker, vhost: &str, user: &str) -> Result<(), String> {
        if broker.users.user(user).is_none() && !self.users.iter().any(|u| u.name == user) {
            return Err(format!("no_such_user: {user}"));
        }
        if broker.vhost(vhost).is_none() && !self.has_vhost(vhost) {
            return Err(format!("no_such_vhost: {vhost}"));
        }
        Ok(())
    }

    /// Apply in dependency order: users, vhosts, permissions, limits.
    pub fn apply(self, broker: &Broker) -> Imported {
        let mut done = Imported::default();
        for u in self.users {
            broker.put_user(u);
            done.users += 1;
        }
        for (name, description, tags) in self.vhosts {
            broker.put_vhost(&name, &description, tags);
            done.vhosts += 1;
        }
        // Checked above: these cannot fail now.
        for [v, u, c, w, r] in self.permissions {
            done.permissions += usize::from(broker.set_permission(&v, &u, &c, &w, &r).is_ok());
        }
        for [v, u, x, w, r] in self.topic {
            done.permissions +=
                usize::from(broker.set_topic_permission(&v, &u, &x, &w, &r).is_ok());
        }
        for (name, value) in self.globals {
            broker.set_global_parameter(&name, value);
        }
        for (v, p) in self.policies {
            let _ = broker.set_policy(&v, p);
        }
        for (v, limits) in self.limits {
            for (k, value) in limits {
                broker.set_vhost_limit(&v, &k, Some(value));
            }
        }
        // Checked above. A shovel whose predeclared queues come later in the file retries
        // until they exist.
        for (v, name, value) in self.shovels {
            let _ = broker.put_shovel(&v, &name, &value);
        }
        for (c, v, name, value) in self.federation {
            let _ = broker.put_federation_parameter(&c, &v, &name, &value);
        }
        done
    }
}
