//! Boot: replay the store's definitions (access control and vhosts first, then exchanges,
//! queues and bindings: the store's key order), put every stored message back in its queues
//! in position order, and give a fresh directory its default user and vhost.

use super::RecoveryReport;
use crate::auth::{Hashing, PasswordHash, Permission, TopicPermission, User, Users};
use crate::config::Config;
use crate::message::Message;
use crate::store::{self, Committer, Definition, Op, Store};
use crate::vhost::{VHost, VHostMeta};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

pub(super) type VHosts = HashMap<String, Arc<VHost>>;
pub(super) type Globals = std::collections::BTreeMap<String, serde_json::Value>;
/// Runtime parameters by (component, vhost, name).
pub(super) type Params = std::collections::BTreeMap<(String, String, String), serde_json::Value>;

/// What every vhost is built with.
pub(super) struct Parts<'a> {
    pub store: &'a Arc<dyn Store>,
    pub committer: &'a Arc<Committer>,
    pub clock: &'a Arc<crate::clock::Clock>,
    /// How much of each durable queue stays in memory.
    pub paging: crate::queue::Paging,
    /// Where stream queues keep their logs.
    pub streams_dir: Option<std::path::PathBuf>,
    /// Where queues spill under memory pressure.
    pub spill: Option<crate::queue::SpillTo>,
}

pub(super) fn new_vhost(name: &str, parts: &Parts<'_>) -> Arc<VHost> {
    VHost::new(
        name,
        Some(parts.store.clone()),
        Some(parts.committer.clone()),
        parts.clock.clone(),
        parts.paging,
        parts.streams_dir.clone(),
        parts.spill.clone(),
    )
}

/// A user as stored (None when the stored hash cannot be read).
pub(super) fn user_from(def: &Definition) -> Option<User> {
    let Definition::User {
        name,
        password_hash,
        hashing_algorithm,
        tags,
        limits,
    } = def
    else {
        return None;
    };
    let hashing = Hashing::parse(hashing_algorithm)?;
    Some(User {
        name: name.clone(),
        password: PasswordHash::from_base64(hashing, password_hash)?,
        tags: tags.clone(),
        limits: limits.clone(),
    })
}

pub(super) fn user_def(u: &User) -> Definition {
    Definition::User {
        name: u.name.clone(),
        password_hash: u.password.to_base64(),
        hashing_algorithm: u.password.hashing.name().to_string(),
        tags: u.tags.clone(),
        limits: u.limits.clone(),
    }
}

pub(super) fn policy_def(vhost: &str, p: &crate::vhost::Policy) -> Definition {
    Definition::Policy {
        vhost: vhost.to_string(),
        name: p.name.clone(),
        pattern: p.pattern.clone(),
        apply_to: p.apply_to.name().to_string(),
        priority: p.priority,
        definition: serde_json::Value::Object(p.definition.clone()).to_string(),
        operator: p.operator,
    }
}

pub(super) fn vhost_def(name: &str, meta: &VHostMeta) -> Definition {
    Definition::VHost {
        name: name.to_string(),
        description: meta.description.clone(),
        tags: meta.tags.clone(),
        limits: meta.limits.clone(),
    }
}

/// Apply one access-control or vhost definition; false when it is not one.
fn restore_access(
    def: &Definition,
    users: &Users,
    globals: &mut Globals,
    vhosts: &mut VHosts,
    parts: &Parts<'_>,
) -> Result<bool, String> {
    match def {
        Definition::User { name, .. } => {
            let user = user_from(def).ok_or_else(|| format!("user '{name}' has a bad hash"))?;
            users.put_user(user);
        }
        Definition::VHost {
            name,
            description,
            tags,
            limits,
        } => {
            let vh = new_vhost(name, parts);
            vh.set_meta(VHostMeta {
                description: description.clone(),
                tags: tags.clone(),
                limits: limits.clone(),
            });
            vhosts.insert(name.clone(), vh);
        }
        Definition::Permission {
            vhost,
            user,
            configure,
            write,
            read,
        } => users.set_permission(vhost, user, Permission::new(configure, write, read)?),
        Definition::TopicPermission {
            vhost,
            user,
            exchange,
            write,
            read,
        } => users.set_topic_permission(
            vhost,
            user,
            TopicPermission::new(user, vhost, exchange, write, read)?,
        ),
        Definition::Policy {
            vhost,
            name,
            pattern,
            apply_to,
            priority,
            definition,
            operator,
        } => {
            let def: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(definition).map_err(|e| e.to_string())?;
            let p = crate::vhost::Policy::new(name, pattern, apply_to, *priority, &def, *operator)?;
            let vh = vhosts
                .get(vhost)
                .ok_or_else(|| format!("vhost '{vhost}' does not exist"))?;
            vh.set_policy(p, &mut crate::queue::Effects::default());
        }
        Definition::GlobalParameter { name, value } => {
            let v = serde_json::from_str(value).map_err(|e| e.to_string())?;
            globals.insert(name.clone(), v);
        }
        Definition::Seeded => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// The default vhost and user of a fresh directory (RabbitMQ's default_vhost, default_user
/// with the administrator tag and full permissions there).
fn seed(
    config: &Config,
    users: &Users,
    globals: &mut Globals,
    vhosts: &mut VHosts,
    parts: &Parts<'_>,
    ops: &mut Vec<Op>,
) {
    let vhost = &config.default_vhost;
    if !vhosts.contains_key(vhost) {
        vhosts.insert(vhost.clone(), new_vhost(vhost, parts));
        ops.push(Op::PutDefinition(vhost_def(vhost, &VHostMeta::default())));
    }
    if users.user(&config.default_user).is_none() {
        let user = User {
            name: config.default_user.clone(),
            password: PasswordHash::new(Hashing::Sha256, &config.default_pass),
            tags: vec!["administrator".into()],
            limits: Default::default(),
        };
        ops.push(Op::PutDefinition(user_def(&user)));
        users.put_user(user);
        let all = ".*";
        if let Ok(p) = Permission::new(all, all, all) {
            users.set_permission(vhost, &config.default_user, p);
            ops.push(Op::PutDefinition(Definition::Permission {
                vhost: vhost.clone(),
                user: config.default_user.clone(),
                configure: all.into(),
                write: all.into(),
                read: all.into(),
            }));
        }
    }
    // RabbitMQ's internal_cluster_id: one per data directory.
    let id = format!("rabbitmq-cluster-id-{}", crate::names::random_token(22));
    ops.push(Op::PutDefinition(global_def(
        "internal_cluster_id",
        &id.clone().into(),
    )));
    globals.insert("internal_cluster_id".into(), id.into());
    ops.push(Op::PutDefinition(Definition::Seeded));
}

pub(super) fn global_def(name: &str, value: &serde_json::Value) -> Definition {
    Definition::GlobalParameter {
        name: name.to_string(),
        value: value.to_string(),
    }
}

pub(super) fn recover(
    config: &Config,
    store: &Arc<dyn Store>,
    committer: &Arc<Committer>,
    users: &Users,
    clock: &Arc<crate::clock::Clock>,
    spill: Option<&crate::queue::SpillTo>,
) -> io::Result<(VHosts, Globals, Params, RecoveryReport)> {
    let rec = store.recover()?;
    let mut report = RecoveryReport {
        definitions: rec.definitions.len(),
        ..Default::default()
    };
    let mut vhosts = VHosts::new();
    let mut globals = Globals::new();
    let parts = Parts {
        store,
        committer,
        clock,
        paging: config.paging(),
        streams_dir: config.streams_dir(),
        spill: spill.cloned(),
    };
    let seeded = rec.definitions.contains(&Definition::Seeded);
    let mut ops = Vec::new();
    let mut params = Params::new();
    for def in rec.definitions {
        if let Definition::Parameter {
            component,
            vhost,
            name,
            value,
        } = &def
        {
            match serde_json::from_str(value) {
                Ok(v) if vhosts.contains_key(vhost) => {
                    params.insert((component.clone(), vhost.clone(), name.clone()), v);
                }
                _ => ops.push(Op::DeleteDefinition(def.clone())),
            }
            continue;
        }
        match restore_access(&def, users, &mut globals, &mut vhosts, &parts) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, ?def, "stored definition could not be restored; dropped");
                ops.push(Op::DeleteDefinition(def));
                continue;
            }
        }
        let name = def.topology_vhost().unwrap_or_default().to_string();
        if !vhosts.contains_key(&name) && !seeded {
            // A directory from before vhosts were stored: its vhosts existed implicitly.
            let vh = new_vhost(&name, &parts);
            ops.push(Op::PutDefinition(vhost_def(&name, &VHostMeta::default())));
            vhosts.insert(name.clone(), vh);
        }
        let restored = match vhosts.get(&name) {
            Some(vh) => vh.restore(&def).map_err(|e| e.to_string()),
            None => Err(format!("vhost '{name}' does not exist")),
        };
        if let Err(e) = restored {
            tracing::warn!(error = %e, ?def, "stored definition could not be restored; dropped");
            ops.push(Op::DeleteDefinition(def));
        }
    }
    if !seeded {
        seed(config, users, &mut globals, &mut vhosts, &parts, &mut ops);
    }
    // How many stored queues hold each message: a sorted list of ids (8 bytes per entry at
    // boot, not a map), counted by range.
    let mut ids: Vec<u64> = rec.queues.values().flatten().map(|e| e.id).collect();
    ids.sort_unstable();
    if let Some(&max) = ids.last() {
        committer.reserve_ids_above(max);
    }
    // A store that writes a record with each entry shares none: each is held once.
    let shares = store.shares_records();
    let refs = |id: u64| {
        if !shares {
            return 1;
        }
        let from = ids.partition_point(|&x| x < id);
        ids[from..].partition_point(|&x| x == id)
    };
    let lazy = rec.lazy;
    let mut max_id = 0u64;
    // Each queue's entries: in the list, or replayed from the store a batch at a time.
    let mut each = |key: &store::QueueKey,
                    entries: &[store::Entry],
                    f: &mut dyn FnMut(&[store::Entry]) -> Result<(), String>|
     -> io::Result<()> {
        let corrupt =
            |e: String| io::Error::from(store::StoreError::new(store::StoreErrorKind::Corrupt, e));
        if !lazy {
            return f(entries).map_err(corrupt);
        }
        store
            .replay_entries(key, &mut |batch| {
                max_id = max_id.max(batch.iter().map(|e| e.id).max().unwrap_or(0));
                f(batch).map_err(|e| store::StoreError::new(store::StoreErrorKind::Corrupt, e))
            })
            .map_err(io::Error::from)
    };
    let mut loader = Loader {
        store,
        records: rec.messages,
        shared: HashMap::new(),
    };
    let by_key: HashMap<String, Arc<crate::queue::Queue>> = vhosts
        .values()
        .flat_map(|vh| vh.queues())
        .filter_map(|q| Some((q.config.store_key.as_ref()?.as_str().to_string(), q)))
        .collect();
    let corrupt =
        |e: String| io::Error::from(store::StoreError::new(store::StoreErrorKind::Corrupt, e));
    for (key, entries) in rec.queues {
        let queue = by_key.get(key.as_str());
        // A delayed exchange's index: "\u{1}delayed NUL vhost NUL name".
        let owner = key
            .as_str()
            .strip_prefix("\u{1}delayed\0")
            .and_then(|rest| rest.split_once('\0'))
            .and_then(|(v, _)| vhosts.get(v));
        match (queue, owner) {
            (Some(q), _) => {
                let mut restored = 0;
                each(&key, &entries, &mut |batch| {
                    let mut load = |e: &store::Entry| loader.load(&key, e, refs(e.id));
                    restored += q.restore(batch, &refs, &mut load)?;
                    Ok(())
                })?;
                report.queues += usize::from(restored > 0);
                report.messages += restored;
            }
            (None, Some(vh)) => {
                let mut gone = false;
                each(&key, &entries, &mut |batch| {
                    for e in batch {
                        let Some(m) = loader.load(&key, e, refs(e.id))? else {
                            continue;
                        };
                        if vh.restore_delayed(&key, e.seq, m.clone()) {
                            report.messages += 1;
                        } else {
                            // The delayed exchange was deleted just before a crash.
                            gone = true;
                            if m.release_store_ref() {
                                ops.push(Op::DeleteMessage(m));
                            }
                        }
                    }
                    Ok(())
                })?;
                if gone {
                    ops.push(Op::DropQueue(key.clone()));
                }
            }
            (None, None) if !shares => {
                // Index of a queue deleted just before a crash: its files go with it.
                ops.push(Op::DropQueue(key.clone()));
            }
            (None, None) => {
                // Index of a queue deleted just before a crash: its messages go too.
                ops.push(Op::DropQueue(key.clone()));
                let mut alone = Vec::new();
                for e in &entries {
                    if refs(e.id) == 1 {
                        alone.push((e.seq, e.id));
                    } else if let Some(m) = loader.load(&key, e, refs(e.id)).map_err(corrupt)? {
                        if m.release_store_ref() {
                            ops.push(Op::DeleteMessage(m));
                        }
                    }
                }
                if !alone.is_empty() {
                    ops.push(Op::ForgetPaged {
                        queue: None,
                        entries: alone,
                    });
                }
            }
        }
    }
    committer.reserve_ids_above(max_id);
    if !ops.is_empty() {
        committer.submit(ops, None);
    }
    Ok((vhosts, globals, params, report))
}

/// Reads the records boot needs: those the store loaded already, else one at a time; a
/// message several queues hold is read once and shared.
struct Loader<'a> {
    store: &'a Arc<dyn Store>,
    records: std::collections::BTreeMap<u64, Vec<u8>>,
    shared: HashMap<u64, Arc<Message>>,
}

impl Loader<'_> {
    fn load(
        &mut self,
        q: &store::QueueKey,
        e: &store::Entry,
        refs: usize,
    ) -> Result<Option<Arc<Message>>, String> {
        let id = e.id;
        if let Some(m) = self.shared.get(&id) {
            return Ok(Some(m.clone()));
        }
        let data = match self.records.remove(&id) {
            Some(d) => d,
            None => match self.store.read_entry(q, e).map_err(|e| e.to_string())? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let d = store::record::decode(&data)
            .ok_or_else(|| format!("stored message {id} is corrupt; refusing to start"))?;
        let mut m = Message::from_raw(d.exchange, d.routing_key, &d.raw_properties, d.body)
            .ok_or_else(|| {
                format!("stored message {id} has corrupt properties; refusing to start")
            })?;
        m.store_id = id;
        m.store_refs = AtomicU32::new(u32::try_from(refs).unwrap_or(u32::MAX));
        // On disk already: removals apply to it directly, and it may page out again.
        m.store_state = std::sync::atomic::AtomicU8::new(store::committer::DURABLE);
        let m = Arc::new(m);
        if refs > 1 {
            self.shared.insert(id, m.clone());
        }
        Ok(Some(m))
    }
}
