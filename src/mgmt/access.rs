//! Who may use which part of the management API, by user tag as RabbitMQ 3.10 decides it:
//! no management tag → 401 "Not management user"; users, permissions, limits, vhost
//! administration and definitions → administrator; a vhost's objects → a user with
//! permissions in that vhost; lists show management users only their vhosts (and their own
//! connections), monitoring and administrator users everything.

use super::http::Response;
use crate::auth::User;
use crate::broker::Broker;

const MANAGEMENT_TAGS: [&str; 4] = ["administrator", "monitoring", "policymaker", "management"];

fn not_authorised(reason: &str) -> Response {
    Response::error(401, "not_authorised", reason)
}

pub fn is_admin(user: &User) -> bool {
    user.has_tag("administrator")
}

/// Sees every vhost and connection (RabbitMQ's is_monitor).
pub fn is_monitor(user: &User) -> bool {
    is_admin(user) || user.has_tag("monitoring")
}

/// A user may look into `vhost` when it has permissions there (administrators: always).
pub fn may_access_vhost(broker: &Broker, user: &User, vhost: &str) -> bool {
    is_admin(user) || broker.users.permission(vhost, &user.name).is_some()
}

/// Refuse the request before its body is read, or let it through.
pub fn authorize(
    broker: &Broker,
    user: &User,
    method: &str,
    seg: &[String],
) -> Result<(), Response> {
    if !MANAGEMENT_TAGS.iter().any(|t| user.has_tag(t)) {
        return Err(not_authorised("Not management user"));
    }
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let admin_only = match seg.as_slice() {
        ["api", "users", ..]
        | ["api", "permissions", ..]
        | ["api", "topic-permissions", ..]
        | ["api", "user-limits", ..]
        | ["api", "definitions", ..]
        | ["api", "warren", ..]
        | ["api", "vhosts", _, ..] => true,
        ["api", "vhost-limits", ..] | ["api", "cluster-name"] => method != "GET",
        _ => false,
    };
    if admin_only && !is_admin(user) {
        return Err(not_authorised("Not administrator user"));
    }
    let vhost = match seg.as_slice() {
        ["api", "queues" | "exchanges" | "bindings" | "consumers" | "aliveness-test", v, ..] => {
            Some(*v)
        }
        _ => None,
    };
    if let Some(v) = vhost {
        if broker.vhost(v).is_some() && !may_access_vhost(broker, user, v) {
            return Err(not_authorised("User not authorised to access virtual host"));
        }
    }
    Ok(())
}
