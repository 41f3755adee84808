//! `Message`: one published message, shared (`Arc`) by every queue it was routed to.

use amq_protocol::protocol::basic::AMQPProperties;
use bytes::Bytes;

#[derive(Debug)]
pub struct Message {
    /// Exchange the message was published to ("" for the default exchange).
    pub exchange: String,
    pub routing_key: String,
    pub properties: AMQPProperties,
    /// Frozen once by the assembler; every queue and delivery shares the same bytes.
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        self.properties.delivery_mode() == &Some(2)
    }
}
