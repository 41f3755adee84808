//! Permission checks where RabbitMQ's channel makes them (rabbit_channel: check_*_permitted),
//! answered from a small per-channel cache so that a publish costs no regex: like RabbitMQ's
//! permission cache it keeps a few recent grants, and it is emptied whenever users or
//! permissions change (the registry's generation moves).

use super::{Channel, Cx};
use crate::auth::{Kind, Perm};
use crate::error::{AmqpError, AmqpResult};

/// Grants kept per channel (RabbitMQ's channel keeps 12).
const CACHED: usize = 12;

#[derive(Debug, Default)]
pub struct AccessCache {
    generation: u64,
    granted: Vec<(Perm, Kind, Box<str>)>,
    /// Topic checks: (exchange, routing key, perm) granted.
    topics: Vec<(Perm, Box<str>, Box<str>)>,
    /// Whether the user has topic permissions in this vhost at all.
    has_topic: Option<bool>,
}

impl AccessCache {
    fn refresh(&mut self, generation: u64) {
        if self.generation != generation {
            *self = AccessCache {
                generation,
                ..Default::default()
            };
        }
    }
}

/// RabbitMQ's text for a refused resource access (it does not say which permission was
/// missing; the default exchange is named amq.default).
pub fn denied_text(kind: Kind, name: &str, vhost: &str, user: &str) -> String {
    let name = match (kind, name) {
        (Kind::Exchange, "") => "amq.default",
        _ => name,
    };
    format!(
        "ACCESS_REFUSED - access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
        kind.name()
    )
}

/// 403 ACCESS_REFUSED, channel-level.
fn denied(kind: Kind, name: &str, vhost: &str, user: &str) -> AmqpError {
    let text = denied_text(kind, name, vhost, user);
    AmqpError::access_refused(text.trim_start_matches("ACCESS_REFUSED - "))
}

impl Channel {
    /// 403 unless the connection's user may do `perm` on this resource.
    pub(super) fn require(
        &mut self,
        cx: &Cx<'_>,
        perm: Perm,
        kind: Kind,
        name: &str,
    ) -> AmqpResult<()> {
        let users = &cx.conn.users;
        let cache = &mut self.access;
        cache.refresh(users.generation());
        if cache
            .granted
            .iter()
            .any(|(p, k, n)| *p == perm && *k == kind && **n == *name)
        {
            return Ok(());
        }
        let (user, vhost) = (cx.conn.user.as_str(), cx.conn.vhost.name.as_str());
        if !users.check(user, vhost, perm, kind, name) {
            return Err(denied(kind, name, vhost, user));
        }
        if cache.granted.len() == CACHED {
            cache.granted.remove(0);
        }
        cache.granted.push((perm, kind, name.into()));
        Ok(())
    }

    /// Topic authorisation on a topic exchange's routing key (publish: write; bind: read).
    pub(super) fn require_topic(
        &mut self,
        cx: &Cx<'_>,
        perm: Perm,
        exchange: &str,
        routing_key: &str,
    ) -> AmqpResult<()> {
        let users = &cx.conn.users;
        let (user, vhost) = (cx.conn.user.as_str(), cx.conn.vhost.name.as_str());
        let cache = &mut self.access;
        cache.refresh(users.generation());
        if !*cache
            .has_topic
            .get_or_insert_with(|| users.has_topic_permissions(user, vhost))
        {
            return Ok(());
        }
        let is_topic = cx
            .conn
            .vhost
            .exchange(exchange)
            .is_some_and(|x| x.type_name() == "topic");
        if !is_topic {
            return Ok(());
        }
        if cache
            .topics
            .iter()
            .any(|(p, x, k)| *p == perm && **x == *exchange && **k == *routing_key)
        {
            return Ok(());
        }
        if !users.check_topic(user, vhost, perm, exchange, routing_key) {
            return Err(AmqpError::access_refused(format!(
                "access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' \
                 refused for user '{user}'"
            )));
        }
        if cache.topics.len() == CACHED {
            cache.topics.remove(0);
        }
        cache
            .topics
            .push((perm, exchange.into(), routing_key.into()));
        Ok(())
    }
}
