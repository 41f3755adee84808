//! consumer_timeout: a channel whose oldest unacknowledged delivery waited too long is closed
//! with RabbitMQ's 406, and its deliveries are requeued with it.

use super::*;

impl Connection {
    /// The earliest time a channel's oldest unacknowledged delivery times out.
    pub(super) fn ack_deadline(&self) -> Option<u64> {
        self.channels
            .values()
            .filter(|c| !c.closing)
            .filter_map(|c| c.ack_deadline(self.consumer_timeout))
            .map(|(at, _)| at)
            .min()
    }

    /// consumer_timeout: close each channel whose oldest delivery waited too long for its ack
    /// (its deliveries are requeued with it), with RabbitMQ's 406.
    pub(super) fn ack_timeouts(&mut self) {
        let now = self.broker.clock.now_ms();
        let expired: Vec<(u16, u64)> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter_map(|(id, c)| {
                let (at, timeout) = c.ack_deadline(self.consumer_timeout)?;
                (at <= now).then_some((*id, timeout))
            })
            .collect();
        for (ch, timeout) in expired {
            tracing::warn!(
                channel = ch,
                timeout_ms = timeout,
                "consumer acknowledgement timed out"
            );
            self.close_channel(
                ch,
                AmqpError::precondition_failed(format!(
                    "delivery acknowledgement on channel {ch} timed out. Timeout value used: \
                     {timeout} ms. This timeout value can be configured, see consumers doc \
                     guide to learn more"
                )),
            );
        }
    }
}
