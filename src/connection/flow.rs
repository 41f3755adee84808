//! When a connection stops reading its socket, besides a full output buffer: a held reply
//! waiting for durability, a congested committer with this connection's writes in flight, or a
//! memory/disk alarm after this connection published (connection.blocked/unblocked).

use super::*;

impl Connection {
    /// Not reading: a held reply waits for durability, the committer is congested and this
    /// connection has writes in flight, or an alarm blocked it. A closing connection still
    /// reads (for close-ok).
    pub(super) fn paused(&self) -> bool {
        self.state == State::Running
            && (self.barrier.is_some()
                || self.alarm_blocked
                || (self
                    .fx
                    .origin
                    .as_ref()
                    .is_some_and(|s| s.inflight_bytes() > 0)
                    && self.committer.as_ref().is_some_and(|c| c.congested())))
    }

    /// A publish under an alarm: stop reading (what follows stays in the socket), and say why
    /// to a client that asked to be told.
    pub(super) fn block_for_alarm(&mut self, active: u8) {
        self.alarm_blocked = true;
        if self.info.caps.connection_blocked && !self.blocked_sent {
            self.blocked_sent = true;
            self.send(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Blocked(conn::Blocked {
                    reason: crate::names::short(&crate::alarm::reason(active)),
                })),
            );
        }
        tracing::info!(reason = %crate::alarm::reason(active), "connection blocked");
    }

    /// The alarms changed; true when a blocked connection may read again.
    pub(super) fn alarms_changed(&mut self) -> bool {
        let active = *self.alarms.borrow_and_update();
        if active != 0 || !self.alarm_blocked {
            return false;
        }
        self.alarm_blocked = false;
        if std::mem::take(&mut self.blocked_sent) {
            self.send(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Unblocked(conn::Unblocked {})),
            );
        }
        tracing::info!("connection unblocked");
        true
    }
}
