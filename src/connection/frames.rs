//! Frames in: heartbeats, content, methods on channel 0 (connection.*) and on channels, each
//! to the handler that owns it.

use super::*;

impl Connection {
    pub(super) fn frame(&mut self, frame: Frame) -> Result<(), AmqpError> {
        if let State::Closing(_) = self.state {
            // After connection.close only close/close-ok matter (spec 2.2.4).
            if let Frame::Method(0, m) = frame {
                match *m {
                    AMQPClass::Connection(conn::AMQPMethod::CloseOk(_)) => {
                        self.state = State::Closed
                    }
                    AMQPClass::Connection(conn::AMQPMethod::Close(_)) => {
                        self.send(
                            0,
                            AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                        );
                        self.state = State::Closed;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match frame {
            Frame::Heartbeat(0) => Ok(()),
            Frame::Heartbeat(ch) => Err(AmqpError::unexpected_frame(format!(
                "heartbeat frame on channel {ch}"
            ))),
            Frame::Method(0, m) => self.connection_method(*m),
            Frame::Method(ch, m) => self.channel_method(ch, *m),
            Frame::Refused(ch, e) => {
                match self.channels.get(&ch) {
                    Some(c) if c.closing => Ok(()),
                    Some(_) if !e.closes_connection() && ch != 0 => {
                        self.close_channel(ch, e);
                        Ok(())
                    }
                    Some(_) => Err(e),
                    None => Err(AmqpError::channel_error("expected 'channel.open'")
                        .on(e.class_id, e.method_id)),
                }
            }
            Frame::Header(ch, h, raw) => self.content(ch, |c, cx| c.header(*h, raw, cx)),
            Frame::Body(ch, b) => self.content(ch, |c, cx| c.body(b, cx)),
        }
    }

    pub(super) fn content(
        &mut self,
        ch: u16,
        f: impl FnOnce(&mut Channel, &mut Cx<'_>) -> Result<(), AmqpError>,
    ) -> Result<(), AmqpError> {
        let Some(channel) = self.channels.get_mut(&ch).filter(|_| ch != 0) else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        if channel.closing {
            return Ok(());
        }
        let mut cx = cx!(self);
        match f(channel, &mut cx) {
            Err(e) if !e.closes_connection() => {
                self.close_channel(ch, e);
                Ok(())
            }
            r => r,
        }
    }

    pub(super) fn connection_method(&mut self, m: AMQPClass) -> Result<(), AmqpError> {
        match m {
            AMQPClass::Connection(conn::AMQPMethod::Close(_)) => {
                self.send(
                    0,
                    AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                self.state = State::Closed;
                Ok(())
            }
            AMQPClass::Connection(conn::AMQPMethod::UpdateSecret(u)) => {
                // The new secret must log this user in now, as RabbitMQ's backends check it.
                let login = crate::auth::Login {
                    user: self.info.user.clone(),
                    password: String::from_utf8_lossy(u.new_secret.as_bytes()).into_owned(),
                };
                if let Err(why) = self
                    .info
                    .users
                    .authenticate(&login, self.info.meta.peer.ip())
                {
                    tracing::warn!(user = %login.user, reason = ?why, "secret update refused");
                    return Err(AmqpError::not_allowed(
                        "New secret was refused by one of the backends",
                    )
                    .on(10, 70));
                }
                self.send(
                    0,
                    AMQPClass::Connection(conn::AMQPMethod::UpdateSecretOk(
                        conn::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            other => Err(
                AmqpError::channel_error("unexpected method in connection state running")
                    .on(other.get_amqp_class_id(), other.get_amqp_method_id()),
            ),
        }
    }
}
