//! What queues (and the vhost) push up to a consumer's connection task.

use super::{Credit, Queue, QueuedMessage};
use crate::message::Message;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A connection's inbox for deliveries and server-initiated events.
pub type Outbox = mpsc::UnboundedSender<Outbound>;

#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    pub consumer_tag: Arc<str>,
    pub queue: Arc<Queue>,
    pub entry: QueuedMessage,
    pub no_ack: bool,
    /// The consumer's credit; no-ack consumers give it back once the delivery leaves the inbox.
    pub credit: Arc<Credit>,
}

impl Delivery {
    /// Its consumer could not take it (channel, consumer or connection gone): give the credit
    /// back (a no-ack delivery returned its own on leaving the inbox) and put the message back
    /// in place.
    pub fn give_back(self, fx: &mut super::Effects) {
        if !self.no_ack {
            self.credit.release(1);
        }
        self.queue
            .requeue([self.entry], super::Return::Released, fx);
    }
}

/// A connection hears from the committer through its inbox.
impl crate::store::DurableSink for Outbox {
    fn durable(&self, ticket: u64) {
        let _ = self.send(Outbound::Durable(ticket));
    }

    fn failed(&self, ticket: u64) {
        let _ = self.send(Outbound::StoreFailed(ticket));
    }
}

#[derive(Debug)]
pub enum Outbound {
    Deliver(Delivery),
    /// Direct reply-to: a response for the channel's `amq.rabbitmq.reply-to` consumer.
    Reply {
        channel: u16,
        message: Arc<Message>,
    },
    /// The queue went away under the consumer (basic.cancel from the server).
    Cancel {
        channel: u16,
        consumer_tag: Arc<str>,
    },
    /// Close the connection with 320 CONNECTION_FORCED (shutdown or operator request).
    ForceClose(String),
    /// The committer made this connection's submissions durable up to this ticket.
    Durable(u64),
    /// A commit holding this connection's submissions up to this ticket failed (it is being
    /// retried): nack their confirms, fail a reply that waited for them.
    StoreFailed(u64),
    /// The management API asks what the connection's channels look like.
    Snapshot(tokio::sync::oneshot::Sender<Vec<crate::meta::ChannelSnapshot>>),
    /// A test clock moved: check consumer_timeout against it now; answer once done.
    ClockMoved(tokio::sync::oneshot::Sender<()>),
}
