//! Content assembly: basic.publish, then its content header, then body frames, into one message.
//! Anything out of that order is 505 UNEXPECTED_FRAME, as rabbit_command_assembler has it.

use super::held::{Budget, Hold};
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::{AMQPProperties, Publish};
use bytes::{Bytes, BytesMut};

pub use crate::config::DEFAULT_MAX_MESSAGE_SIZE;

#[derive(Debug, Default)]
pub enum Assembler {
    #[default]
    Idle,
    Header(Publish),
    Body {
        publish: Publish,
        properties: Box<AMQPProperties>,
        raw_properties: Bytes,
        size: usize,
        body: BytesMut,
        /// The announced size, taken from the connection's budget until the body is done.
        hold: Hold,
    },
}

/// A complete publish: method, properties and body.
#[derive(Debug)]
pub struct Content {
    pub publish: Publish,
    pub properties: AMQPProperties,
    /// The same properties in their AMQP encoding, as they arrived.
    pub raw_properties: Bytes,
    pub body: Bytes,
}

impl Assembler {
    pub fn expecting_method(&self) -> bool {
        matches!(self, Assembler::Idle)
    }

    /// The error for a method frame arriving mid-content.
    pub fn method_out_of_place(&self) -> AmqpError {
        match self {
            Assembler::Header(_) => AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ),
            _ => AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            ),
        }
    }

    pub fn start(&mut self, publish: Publish) {
        *self = Assembler::Header(publish);
    }

    /// A content header; returns the message at once if its body is empty.
    pub fn header(
        &mut self,
        header: AMQPContentHeader,
        raw_properties: Bytes,
        max_size: u64,
        budget: &Budget,
    ) -> AmqpResult<Option<Content>> {
        let publish = match std::mem::take(self) {
            Assembler::Header(p) => p,
            _ => {
                return Err(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
        };
        if header.class_id != 60 {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class 60, got one for class {}",
                header.class_id
            )));
        }
        if header.body_size > max_size {
            // rabbit_channel:check_msg_size words the default limit differently.
            let which = if max_size == DEFAULT_MAX_MESSAGE_SIZE {
                "max size"
            } else {
                "configured max size"
            };
            return Err(AmqpError::precondition_failed(format!(
                "message size {} is larger than {which} {max_size}",
                header.body_size
            ))
            .on(60, 40));
        }
        let size = usize::try_from(header.body_size)
            .map_err(|_| AmqpError::frame_error("body size does not fit in memory"))?;
        if size == 0 {
            return Ok(Some(Content {
                publish,
                properties: header.properties,
                raw_properties,
                body: Bytes::new(),
            }));
        }
        let mut hold = Hold::default();
        budget
            .take(&mut hold, header.body_size)
            .map_err(|e| e.on(60, 40))?;
        *self = Assembler::Body {
            publish,
            hold,
            properties: Box::new(header.properties),
            raw_properties,
            size,
            // Cap the up-front reservation: the peer's claim is not yet backed by bytes.
            body: BytesMut::with_capacity(size.min(128 * 1024)),
        };
        Ok(None)
    }

    pub fn body(&mut self, chunk: Bytes) -> AmqpResult<Option<Content>> {
        let Assembler::Body { size, body, .. } = self else {
            return Err(match self {
                Assembler::Header(_) => AmqpError::unexpected_frame(
                    "expected content header for class 60, got non content header frame instead",
                ),
                _ => AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ),
            });
        };
        if body.len() + chunk.len() > *size {
            return Err(AmqpError::unexpected_frame(format!(
                "content body exceeds the declared size {size}"
            )));
        }
        body.extend_from_slice(&chunk);
        if body.len() < *size {
            return Ok(None);
        }
        match std::mem::take(self) {
            Assembler::Body {
                publish,
                properties,
                raw_properties,
                body,
                ..
            } => Ok(Some(Content {
                publish,
                properties: *properties,
                raw_properties,
                body: body.freeze(),
            })),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u64) -> AMQPContentHeader {
        AMQPContentHeader {
            class_id: 60,
            body_size: size,
            properties: Default::default(),
        }
    }

    #[test]
    fn assembles_in_order_and_rejects_disorder() {
        let budget = Budget::new(u64::MAX);
        let mut a = Assembler::default();
        assert_eq!(a.body(Bytes::from_static(b"x")).unwrap_err().code(), 505);
        a.start(Publish::default());
        assert!(a
            .header(header(4), Bytes::from_static(&[0, 0]), 100, &budget)
            .expect("header")
            .is_none());
        assert!(a.body(Bytes::from_static(b"ab")).expect("b1").is_none());
        let c = a
            .body(Bytes::from_static(b"cd"))
            .expect("b2")
            .expect("done");
        assert_eq!(&c.body[..], b"abcd");
        assert!(a.expecting_method());
        a.start(Publish::default());
        assert_eq!(
            a.header(header(101), Bytes::from_static(&[0, 0]), 100, &budget)
                .unwrap_err()
                .code(),
            406
        );
    }
}
