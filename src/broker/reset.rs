//! Reset between tests: close every connection, then remove every queue, exchange, binding
//! and policy (or, keeping the topology, only the messages), and every vhost but the default
//! one. Users, their permissions and global parameters stay. Durable before it returns.

use super::Broker;
use crate::queue::Effects;

/// How long a reset waits for connections to finish closing before it clears anyway.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Broker {
    pub async fn reset(&self, keep_topology: bool) -> crate::store::StoreResult<()> {
        self.close_all("broker forced connection closure with reason 'reset'");
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while self.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let default = self.config.default_vhost.clone();
        for vh in self.vhosts() {
            let mut fx = Effects::default();
            if keep_topology {
                for q in vh.queues() {
                    q.purge(&mut fx);
                }
            } else if vh.name != default {
                self.delete_vhost(&vh.name);
                continue;
            } else {
                for p in vh.policies() {
                    self.clear_policy(&vh.name, &p.name, p.operator);
                }
                vh.clear(&mut fx);
            }
            vh.submit(&mut fx);
        }
        if !keep_topology && self.vhost(&default).is_none() {
            // A test deleted the default vhost: it comes back as a fresh directory has it.
            self.put_vhost(&default, "", Vec::new());
            if self.users.user(&self.config.default_user).is_some() {
                let user = self.config.default_user.clone();
                let _ = self.set_permission(&default, &user, ".*", ".*", ".*");
            }
        }
        self.sync().await
    }
}
