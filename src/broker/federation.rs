//! Federation as the broker keeps it: `federation-upstream` and `federation-upstream-set`
//! runtime parameters (durable like other definitions), and the exchange and queue links that
//! policies ask for. `reconcile_federation` works out the links wanted (an exchange, not the
//! default or an internal one, or a queue, not a stream or one of federation's own, whose
//! policy names upstreams) and starts, restarts or stops links to
//! match; it runs when a parameter changes and once a second (policies, exchanges, queues
//! and parameters from definitions come and go). `crate::federation` runs the links.

use super::Broker;
use crate::federation::{Kind, LinkKey, LinkSpec, Upstream};
use crate::store::Op;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const UPSTREAM: &str = "federation-upstream";
pub const UPSTREAM_SET: &str = "federation-upstream-set";

impl Broker {
    /// Every parameter of `component`: (vhost, name, value).
    pub fn component_parameters(&self, component: &str) -> Vec<(String, String, Value)> {
        self.params
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((c, _, _), _)| c == component)
            .map(|((_, v, n), value)| (v.clone(), n.clone(), value.clone()))
            .collect()
    }

    /// Create or replace a federation parameter, durably; Ok(true) if it is new.
    pub fn put_federation_parameter(
        &self,
        component: &str,
        vhost: &str,
        name: &str,
        value: &Value,
    ) -> Result<bool, String> {
        match component {
            UPSTREAM => Upstream::parse(value, name).map(|_| ())?,
            UPSTREAM_SET => crate::federation::validate_set(value, name)?,
            other => return Err(format!("component {other} not found")),
        }
        if self.vhost(vhost).is_none() {
            return Err(format!("vhost '{vhost}' does not exist"));
        }
        let new = {
            let _g = self.access_lock();
            let def = super::shovels::component_def(component, vhost, name, value);
            self.submit(vec![Op::PutDefinition(def)]);
            self.params
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert((component.into(), vhost.into(), name.into()), value.clone())
                .is_none()
        };
        self.reconcile_federation();
        Ok(new)
    }

    /// Remove a federation parameter; false if there was none.
    pub fn clear_federation_parameter(&self, component: &str, vhost: &str, name: &str) -> bool {
        let removed = {
            let _g = self.access_lock();
            let removed = self
                .params
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(component.into(), vhost.into(), name.into()));
            if let Some(v) = &removed {
                let def = super::shovels::component_def(component, vhost, name, v);
                self.submit(vec![Op::DeleteDefinition(def)]);
            }
            removed.is_some()
        };
        self.reconcile_federation();
        removed
    }

    /// Start the links, and keep them matching policies and exchanges (once listening).
    pub(super) fn start_federation(&self) {
        self.reconcile_federation();
        let weak = self.me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                b.reconcile_federation();
            }
        });
    }

    /// The upstreams a policy value names in `vhost`, with their set overrides.
    fn upstreams_for(&self, vhost: &str, key: &str, value: &str) -> Vec<(String, Upstream)> {
        let upstreams: BTreeMap<String, Value> = self
            .component_parameters(UPSTREAM)
            .into_iter()
            .filter(|(v, _, _)| v == vhost)
            .map(|(_, n, value)| (n, value))
            .collect();
        let parse = |name: &str| {
            upstreams
                .get(name)
                .and_then(|v| Upstream::parse(v, name).ok())
        };
        match key {
            "federation-upstream" => parse(value)
                .map(|u| vec![(value.to_string(), u)])
                .unwrap_or_default(),
            "federation-upstream-pattern" => match regex::Regex::new(value) {
                Ok(re) => upstreams
                    .keys()
                    .filter(|n| re.is_match(n))
                    .filter_map(|n| parse(n).map(|u| (n.clone(), u)))
                    .collect(),
                Err(_) => Vec::new(),
            },
            _ if value == "all" => upstreams
                .keys()
                .filter_map(|n| parse(n).map(|u| (n.clone(), u)))
                .collect(),
            _ => {
                let set = self
                    .component_parameters(UPSTREAM_SET)
                    .into_iter()
                    .find(|(v, n, _)| v == vhost && n == value)
                    .map(|(_, _, s)| s);
                let elements = set.as_ref().and_then(Value::as_array).cloned();
                elements
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| {
                        let m = e.as_object()?;
                        let name = m.get("upstream")?.as_str()?;
                        parse(name).map(|u| (name.to_string(), u.with_overrides(m)))
                    })
                    .collect()
            }
        }
    }

    /// The links the policies ask for now.
    fn wanted_links(&self) -> BTreeMap<LinkKey, LinkSpec> {
        let mut out = BTreeMap::new();
        // The common case, no federation at all, costs one look at the parameters.
        if self.component_parameters(UPSTREAM).is_empty() {
            return out;
        }
        let cluster_name = self.cluster_name();
        for vh in self.vhosts() {
            let Some(local_uri) = self.local_uri(&vh.name) else {
                return out;
            };
            let policies = vh.policies();
            let federating = policies.iter().any(|p| {
                crate::vhost::policy::FEDERATION_KEYS
                    .iter()
                    .any(|k| p.definition.contains_key(*k))
            });
            if !federating {
                continue;
            }
            // Many exchanges and queues share a policy: its upstreams are worked out once.
            let mut memo: std::collections::HashMap<(String, String), Vec<(String, Upstream)>> =
                Default::default();
            let mut upstreams = |key: String, value: String| {
                memo.entry((key, value))
                    .or_insert_with_key(|(k, v)| self.upstreams_for(&vh.name, k, v))
                    .clone()
            };
            let policy_of = |to_queue: bool, name: &str| {
                crate::vhost::policy::federation_policy_in(&policies, to_queue, name)
            };
            for x in vh.exchanges() {
                if x.name.is_empty() || x.internal {
                    continue;
                }
                let Some((key, value)) = policy_of(false, &x.name) else {
                    continue;
                };
                let weak = Arc::downgrade(&vh);
                let name = x.name.clone();
                let bindings: crate::federation::BindingsOf = Arc::new(move || {
                    let x = weak.upgrade()?.exchange(&name)?;
                    Some(
                        x.bindings()
                            .into_iter()
                            .map(|b| (b.routing_key, b.arguments))
                            .collect(),
                    )
                });
                for (upstream_name, upstream) in upstreams(key.clone(), value.clone()) {
                    let spec = LinkSpec {
                        kind: Kind::Exchange,
                        vhost: vh.name.clone(),
                        name: x.name.clone(),
                        upstream_name: upstream_name.clone(),
                        upstream,
                        local_uri: local_uri.clone(),
                        cluster_name: cluster_name.clone(),
                        exchange_type: x.type_name().to_string(),
                        durable: x.durable,
                        auto_delete: x.auto_delete,
                        internal: x.internal,
                        arguments: x.arguments.clone(),
                        bindings: bindings.clone(),
                        queue_state: None,
                    };
                    out.insert(spec.key(), spec);
                }
            }
            for q in vh.queues() {
                let internal = q
                    .config
                    .arguments
                    .inner()
                    .contains_key("x-internal-purpose");
                if internal || q.config.log.is_some() {
                    continue;
                }
                let Some((key, value)) = policy_of(true, q.name()) else {
                    continue;
                };
                // By name: a queue deleted and declared again is the same link's.
                let (weak, name) = (Arc::downgrade(&vh), q.name().to_string());
                let state: crate::federation::QueueStateOf = Arc::new(move || {
                    let q = weak.upgrade()?.queue(&name)?;
                    let consumed = q.consumers().iter().any(|c| c.priority >= 0);
                    Some((q.message_count(), consumed))
                });
                for (upstream_name, upstream) in upstreams(key.clone(), value.clone()) {
                    let spec = LinkSpec {
                        kind: Kind::Queue,
                        vhost: vh.name.clone(),
                        name: q.name().to_string(),
                        upstream_name,
                        upstream,
                        local_uri: local_uri.clone(),
                        cluster_name: cluster_name.clone(),
                        exchange_type: String::new(),
                        durable: q.config.durable,
                        auto_delete: q.config.auto_delete,
                        internal: false,
                        arguments: q.config.arguments.clone(),
                        bindings: Arc::new(|| None),
                        queue_state: Some(state.clone()),
                    };
                    out.insert(spec.key(), spec);
                }
            }
        }
        out
    }

    /// Start the links wanted and not running (or running with other settings); stop the
    /// ones no longer wanted.
    pub fn reconcile_federation(&self) {
        let _g = self
            .federation_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut wanted = self.wanted_links();
        for (key, running, ended) in self.federation.keys() {
            match wanted.remove(&key) {
                Some(spec) if ended || spec.upstream != running => self.federation.start(spec),
                Some(_) => {}
                None => {
                    self.federation.stop(&key);
                }
            }
        }
        for (_, spec) in wanted {
            self.federation.start(spec);
        }
    }

    /// `DELETE /api/federation-links/vhost/{vhost}/{id}/{node}/restart`.
    pub fn restart_federation_link(&self, vhost: &str, id: &str) -> bool {
        let wanted = self.wanted_links();
        self.federation
            .restart(vhost, id, |k| wanted.get(k).cloned())
    }
}
