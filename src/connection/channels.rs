//! Channels of a connection: channel.open (channel_max and the user's max-channels),
//! channel.close either way, and the one close policy: a soft error closes its channel, a hard
//! one the connection, releasing everything the channels held.

use super::*;

impl Connection {
    /// The user's max-channels limit counts channels over all of the user's connections.
    pub(super) fn check_user_channel_limit(&self) -> Result<(), AmqpError> {
        let user = &self.info.user;
        let Some(max) = self
            .info
            .users
            .user(user)
            .and_then(|u| u.limit("max-channels"))
        else {
            return Ok(());
        };
        let others: u64 = (self.broker.connections().iter())
            .filter(|c| c.user == *user && c.id != self.info.id)
            .map(|c| u64::from(c.channels.load(Relaxed)))
            .sum();
        if others + self.channels.len() as u64 >= max {
            return Err(AmqpError::not_allowed(format!(
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({max})"
            )));
        }
        Ok(())
    }

    pub(super) fn channel_method(&mut self, ch: u16, m: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        let Some(channel) = self.channels.get_mut(&ch) else {
            return match m {
                AMQPClass::Channel(chan::AMQPMethod::Open(_)) => {
                    let max = usize::from(self.info.channel_max);
                    if max != 0 && self.channels.len() >= max {
                        return Err(AmqpError::not_allowed(format!(
                            "number of channels opened ({}) has reached the negotiated channel_max ({max})",
                            self.channels.len()
                        ))
                        .on(class_id, method_id));
                    }
                    self.check_user_channel_limit()
                        .map_err(|e| e.on(class_id, method_id))?;
                    self.channels.insert(ch, Channel::new(ch));
                    self.info
                        .meta
                        .stats
                        .channels_opened
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.send(
                        ch,
                        AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {})),
                    );
                    Ok(())
                }
                // A close-ok for a channel we already forgot.
                AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => Ok(()),
                _ => {
                    Err(AmqpError::channel_error("expected 'channel.open'").on(class_id, method_id))
                }
            };
        };
        if channel.closing {
            match m {
                AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => {
                    self.channels.remove(&ch);
                }
                AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                    self.channels.remove(&ch);
                    self.send(
                        ch,
                        AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                    );
                }
                _ => {}
            }
            return Ok(());
        }
        match m {
            AMQPClass::Channel(chan::AMQPMethod::Open(_)) => {
                Err(AmqpError::channel_error("second 'channel.open' seen").on(class_id, method_id))
            }
            AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                if let Some(mut c) = self.channels.remove(&ch) {
                    c.teardown(&self.info, &mut self.fx);
                }
                self.send(
                    ch,
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(chan::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false").on(class_id, method_id));
                }
                self.send(
                    ch,
                    AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })),
                );
                Ok(())
            }
            AMQPClass::Channel(_) => {
                Err(AmqpError::command_invalid("unimplemented method").on(class_id, method_id))
            }
            AMQPClass::Connection(_) => Err(AmqpError::channel_error(
                "connection methods are only allowed on channel 0",
            )
            .on(class_id, method_id)),
            other => {
                let mut cx = cx!(self);
                match channel.handle_method(other, &mut cx) {
                    Err(e) if !e.closes_connection() => {
                        self.close_channel(ch, e);
                        Ok(())
                    }
                    r => r,
                }
            }
        }
    }

    pub(super) fn send(&mut self, ch: u16, m: AMQPClass) {
        codec::write_method(&mut self.out, ch, m);
    }

    /// Soft error: close just this channel and drop its frames until close-ok.
    pub(super) fn close_channel(&mut self, ch: u16, e: AmqpError) {
        tracing::debug!(channel = ch, error = %e, "closing channel");
        if let Some(c) = self.channels.get_mut(&ch) {
            c.teardown(&self.info, &mut self.fx);
            c.closing = true;
            c.flush_confirms(&mut self.out, self.durable_ticket, &self.info);
        }
        self.send(
            ch,
            AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
                reply_code: e.code(),
                reply_text: crate::names::short(&e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
    }

    /// Hard error (or shutdown): close the connection, releasing everything it held.
    pub(super) fn close_connection(&mut self, e: AmqpError) {
        if self.state != State::Running {
            return;
        }
        tracing::info!(error = %e, "closing connection");
        self.teardown_channels();
        codec::write_method(&mut self.out, 0, close_method(&e));
        self.state = State::Closing(Instant::now() + CLOSE_TIMEOUT);
    }

    pub(super) fn teardown_channels(&mut self) {
        for (_, mut c) in self.channels.drain() {
            c.teardown(&self.info, &mut self.fx);
        }
    }
}
