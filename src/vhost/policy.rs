//! Policies and operator policies, as RabbitMQ 3.10 applies them: per vhost, a regex on the
//! name of a queue or exchange; the highest-priority match applies (one policy and one operator
//! policy at most). For a queue, numeric limits take the lowest of argument, policy and
//! operator policy; dead-lettering, overflow and queue mode take the argument when there is
//! one. Changing or clearing a policy applies at once to what exists.

use super::VHost;
use crate::queue::{AppliedPolicy, Effects, Queue, QueueArgs};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    Exchanges,
}

impl ApplyTo {
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    re: regex::Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Map<String, Value>,
    /// An operator policy (limits only; combined with the user policy, not replacing it).
    pub operator: bool,
}

/// Keys that take the lowest value among argument, policy and operator policy.
const NUMERIC: [&str; 5] = [
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "delivery-limit",
];

/// Keys accepted without a check of their value here: most have no effect on a single node
/// (mirroring, federation); max-in-memory-* set a queue's paging window (`QueueArgs`).
const ACCEPTED_ONLY: [&str; 13] = [
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-master-locator",
    "queue-leader-locator",
    "queue-version",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "dead-letter-strategy",
    "initial-cluster-size",
];

/// The keys that federate what a policy applies to (one at most).
pub const FEDERATION_KEYS: [&str; 3] = [
    "federation-upstream",
    "federation-upstream-set",
    "federation-upstream-pattern",
];

fn validation(e: impl std::fmt::Display) -> String {
    format!("Validation failed\n\n{e}\n")
}

fn erl(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

/// One definition key's value, checked as RabbitMQ's policy validators check it.
fn check_key(key: &str, v: &Value, operator: bool) -> Result<(), String> {
    let non_negative = |what: &str| match v.as_i64() {
        Some(n) if n >= 0 => Ok(()),
        _ => Err(format!("{} is not a valid {what}", erl(v))),
    };
    let name = |what: &str| match v {
        Value::String(s) if s.len() <= 255 => Ok(()),
        _ => Err(format!("{} is not a valid {what}", erl(v))),
    };
    let unknown = || {
        Err(format!(
            "[{{<<\"{key}\">>,{}}}] are not recognised policy settings",
            erl(v)
        ))
    };
    if operator && !NUMERIC.contains(&key) {
        return unknown();
    }
    match key {
        "message-ttl" => non_negative("message TTL"),
        "expires" => match v.as_i64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(format!("{} is not a valid queue expiry", erl(v))),
        },
        "max-length" | "max-length-bytes" => non_negative("maximum length"),
        "delivery-limit" => non_negative("delivery limit"),
        "dead-letter-exchange" => name("dead letter exchange name"),
        "dead-letter-routing-key" => name("dead letter routing key"),
        "alternate-exchange" => name("alternate exchange name"),
        "overflow" => match v.as_str() {
            Some("drop-head" | "reject-publish" | "reject-publish-dlx") => Ok(()),
            _ => Err(format!("{} is not a valid overflow value", erl(v))),
        },
        "max-age" => match v.as_str().and_then(crate::queue::args::parse_age) {
            Some(_) => Ok(()),
            None => Err(format!("{} is not a valid max age", erl(v))),
        },
        "stream-max-segment-size-bytes" => non_negative("segment size"),
        // The federation plugin's checks (rabbit_federation_parameters:validate_policy).
        "federation-upstream" => v
            .is_string()
            .then_some(())
            .ok_or_else(|| format!("{} is not a valid federation upstream name", erl(v))),
        "federation-upstream-set" => v
            .is_string()
            .then_some(())
            .ok_or_else(|| format!("{} is not a valid federation upstream set name", erl(v))),
        "federation-upstream-pattern" => match v.as_str() {
            Some(s) => regex::Regex::new(s).map(|_| ()).map_err(|e| {
                format!("could not compile pattern {s} to a regular expression. Error: {e}")
            }),
            None => Err(format!(
                "{} is not a valid federation upstream pattern name",
                erl(v)
            )),
        },
        "queue-mode" => match v.as_str() {
            Some("default" | "lazy") => Ok(()),
            _ => Err(format!("{} is not a valid queue-mode value", erl(v))),
        },
        k if ACCEPTED_ONLY.contains(&k) => Ok(()),
        _ => unknown(),
    }
}

impl Policy {
    /// From the management API's (or a definitions file's) fields.
    pub fn new(
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: &Map<String, Value>,
        operator: bool,
    ) -> Result<Policy, String> {
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(256 * 1024)
            .build()
            .map_err(|e| {
                validation(format!(
                    "pattern should be regular expression but is invalid: {e}"
                ))
            })?;
        let apply_to = match apply_to {
            "all" => ApplyTo::All,
            "queues" => ApplyTo::Queues,
            "exchanges" => ApplyTo::Exchanges,
            other => {
                return Err(validation(format!(
                    "apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'"
                )))
            }
        };
        if definition.is_empty() {
            return Err(validation("no policy provided"));
        }
        for (k, v) in definition {
            check_key(k, v, operator).map_err(validation)?;
        }
        let federation = FEDERATION_KEYS
            .iter()
            .filter(|k| definition.contains_key(**k))
            .count();
        if federation > 1 {
            return Err(validation("cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together"));
        }
        Ok(Policy {
            name: name.to_string(),
            pattern: pattern.to_string(),
            re,
            apply_to,
            priority,
            definition: definition.clone(),
            operator,
        })
    }

    fn applies(&self, to_queue: bool, name: &str) -> bool {
        let kind_ok = match self.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => to_queue,
            ApplyTo::Exchanges => !to_queue,
        };
        kind_ok && self.re.is_match(name)
    }
}

/// The highest-priority policy of this kind matching; ties go to the first name.
fn pick<'a>(
    all: &'a [Arc<Policy>],
    operator: bool,
    to_queue: bool,
    name: &str,
) -> Option<&'a Arc<Policy>> {
    all.iter()
        .filter(|p| p.operator == operator && p.applies(to_queue, name))
        .max_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.name.cmp(&a.name))
        })
}

/// `VHost::federation_policy` among `all` (the vhost's policies, read once for many names).
pub fn federation_policy_in(
    all: &[Arc<Policy>],
    to_queue: bool,
    name: &str,
) -> Option<(String, String)> {
    let p = pick(all, false, to_queue, name)?;
    FEDERATION_KEYS.iter().find_map(|k| {
        let v = p.definition.get(*k)?.as_str()?;
        Some((k.to_string(), v.to_string()))
    })
}

/// A queue's effective arguments and what the API shows of its policies.
fn for_queue(all: &[Arc<Policy>], q: &Queue) -> (QueueArgs, AppliedPolicy) {
    let name = q.name();
    let (policy, operator) = (pick(all, false, true, name), pick(all, true, true, name));
    let mut shown = policy.map(|p| p.definition.clone()).unwrap_or_default();
    if let Some(op) = operator {
        for (k, v) in &op.definition {
            let lower = match (shown.get(k).and_then(Value::as_i64), v.as_i64()) {
                (Some(a), Some(b)) => Value::from(a.min(b)),
                _ => v.clone(),
            };
            shown.insert(k.clone(), lower);
        }
    }
    let mut table: FieldTable = q.config.arguments.clone();
    for (k, v) in &shown {
        // As in RabbitMQ: queue-mode is a classic queue's, max-in-memory-* a quorum queue's.
        let other_type = match q.config.args.queue_type {
            crate::queue::args::QueueType::Classic => k.starts_with("max-in-memory-"),
            crate::queue::args::QueueType::Quorum => k == "queue-mode",
            crate::queue::args::QueueType::Stream => false,
        };
        if other_type {
            continue;
        }
        let arg = format!("x-{k}");
        let declared = table.inner().get(arg.as_str()).cloned();
        let value = match (NUMERIC.contains(&k.as_str()), declared, v) {
            (true, Some(d), Value::Number(n)) => {
                let policy = n.as_i64().unwrap_or(i64::MAX);
                let d = crate::args::as_i64(&d).unwrap_or(i64::MAX);
                AMQPValue::LongLongInt(d.min(policy))
            }
            (true, None, Value::Number(n)) => AMQPValue::LongLongInt(n.as_i64().unwrap_or(0)),
            // The declared argument wins for the rest.
            (false, Some(_), _) => continue,
            (_, _, Value::String(s)) => AMQPValue::LongString(s.as_str().into()),
            (false, None, Value::Number(n)) => match n.as_i64() {
                Some(n) => AMQPValue::LongLongInt(n),
                None => continue,
            },
            _ => continue,
        };
        table.insert(arg.into(), value);
    }
    // A routing key without an exchange is not a dead-letter setting (RabbitMQ ignores it).
    if table.inner().get("x-dead-letter-exchange").is_none() {
        let mut kept = FieldTable::default();
        for (k, v) in table.inner() {
            if k.as_str() != "x-dead-letter-routing-key" {
                kept.insert(k.clone(), v.clone());
            }
        }
        table = kept;
    }
    // What cannot be combined keeps the declared arguments rather than losing them all.
    let mut args = QueueArgs::parse_lenient_or(&table, &q.config.args);
    // What only the declaration decides.
    args.queue_type = q.config.args.queue_type;
    args.max_priority = q.config.args.max_priority;
    args.single_active_consumer = q.config.args.single_active_consumer;
    args.consumer_timeout = q.config.args.consumer_timeout;
    let applied = AppliedPolicy {
        policy: policy.map(|p| p.name.clone()),
        operator_policy: operator.map(|p| p.name.clone()),
        definition: shown,
    };
    (args, applied)
}

impl VHost {
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Add or replace a policy (by name and kind) and apply it; true if it is new.
    pub fn set_policy(&self, p: Policy, fx: &mut Effects) -> bool {
        // Under the topology lock: a queue declared meanwhile gets the new set, not the old.
        let _g = self.serialize();
        let created = {
            let mut all = self.policies.write().unwrap_or_else(|p| p.into_inner());
            let before = all.len();
            all.retain(|x| !(x.name == p.name && x.operator == p.operator));
            let created = all.len() == before;
            all.push(Arc::new(p));
            all.sort_by(|a, b| a.name.cmp(&b.name));
            created
        };
        self.apply_policies(fx);
        created
    }

    /// Remove a policy and apply what remains; false if there was none.
    pub fn clear_policy(&self, name: &str, operator: bool, fx: &mut Effects) -> bool {
        let _g = self.serialize();
        let removed = {
            let mut all = self.policies.write().unwrap_or_else(|p| p.into_inner());
            let before = all.len();
            all.retain(|x| !(x.name == name && x.operator == operator));
            all.len() != before
        };
        if removed {
            self.apply_policies(fx);
        }
        removed
    }

    /// Recompute what applies to every queue and exchange.
    pub fn apply_policies(&self, fx: &mut Effects) {
        let all = self.policies();
        for q in self.queues() {
            let (args, applied) = for_queue(&all, &q);
            q.apply_args(args, applied, fx);
        }
        for x in self.exchanges() {
            let p = pick(&all, false, false, &x.name);
            let ae = p
                .and_then(|p| p.definition.get("alternate-exchange"))
                .and_then(Value::as_str)
                .map(String::from);
            x.apply_policy(p.map(|p| p.name.clone()), ae);
        }
    }

    /// Apply the policies to one new queue.
    pub(super) fn apply_policies_to(&self, q: &Arc<Queue>, fx: &mut Effects) {
        let all = self.policies();
        if all.is_empty() {
            return;
        }
        let (args, applied) = for_queue(&all, q);
        q.apply_args(args, applied, fx);
    }

    /// The federation key and value of the policy that applies to the exchange (or queue:
    /// `to_queue`) `name`, if it federates it.
    pub fn federation_policy(&self, to_queue: bool, name: &str) -> Option<(String, String)> {
        federation_policy_in(&self.policies(), to_queue, name)
    }

    /// Apply the policies to one new exchange.
    pub(super) fn apply_policies_to_exchange(&self, x: &crate::exchange::Exchange) {
        let all = self.policies();
        let Some(p) = pick(&all, false, false, &x.name) else {
            return;
        };
        let ae = p
            .definition
            .get("alternate-exchange")
            .and_then(Value::as_str)
            .map(String::from);
        x.apply_policy(Some(p.name.clone()), ae);
    }
}
