//! HTTP Basic credentials against the broker's users (guest from loopback only), as RabbitMQ's
//! management plugin checks them.

use crate::auth::{Login, User};
use crate::broker::Broker;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn authenticate(
    broker: &Broker,
    header: Option<&str>,
    peer: SocketAddr,
) -> Option<Arc<User>> {
    let encoded = header?.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(crate::auth::base64::decode(encoded)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let login = Login {
        user: user.to_string(),
        password: password.to_string(),
    };
    match broker.users.authenticate(&login, peer.ip()) {
        Ok(u) => Some(u),
        Err(why) => {
            tracing::warn!(user = %login.user, %peer, reason = ?why, "management login refused");
            None
        }
    }
}
