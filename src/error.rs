//! `AmqpError`: one error type for every AMQP exception a handler can raise.
//!
//! Handlers return data (reply code, text, failing class/method); the connection decides what
//! to close. RabbitMQ closes the channel for soft errors and the connection for hard errors or
//! for anything raised on channel 0 (rabbit_binary_generator:map_exception/2).

use amq_protocol::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use std::fmt;

/// An AMQP exception with RabbitMQ's reply code and text.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpError {
    pub kind: AMQPErrorKind,
    /// What went wrong, without the code name ("no queue 'q' in vhost '/'"); the wire text
    /// prefixes it (`reply_text`), the management API shows it alone.
    pub explanation: String,
    /// Class and method of the method that failed (0/0 when no method is to blame).
    pub class_id: u16,
    pub method_id: u16,
}

/// Reply codes by name, for code that asks which error it holds.
pub mod code {
    pub const NOT_FOUND: u16 = 404;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const NOT_ALLOWED: u16 = 530;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const INTERNAL_ERROR: u16 = 541;
}

/// RabbitMQ caps reply texts at 255 bytes (a shortstr); cut on a char boundary.
fn cap_text(mut text: String) -> String {
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn code_name(kind: &AMQPErrorKind) -> &'static str {
    match kind {
        AMQPErrorKind::Soft(s) => match s {
            AMQPSoftError::CONTENTTOOLARGE => "CONTENT_TOO_LARGE",
            AMQPSoftError::NOROUTE => "NO_ROUTE",
            AMQPSoftError::NOCONSUMERS => "NO_CONSUMERS",
            AMQPSoftError::ACCESSREFUSED => "ACCESS_REFUSED",
            AMQPSoftError::NOTFOUND => "NOT_FOUND",
            AMQPSoftError::RESOURCELOCKED => "RESOURCE_LOCKED",
            AMQPSoftError::PRECONDITIONFAILED => "PRECONDITION_FAILED",
        },
        AMQPErrorKind::Hard(h) => match h {
            AMQPHardError::CONNECTIONFORCED => "CONNECTION_FORCED",
            AMQPHardError::INVALIDPATH => "INVALID_PATH",
            AMQPHardError::FRAMEERROR => "FRAME_ERROR",
            AMQPHardError::SYNTAXERROR => "SYNTAX_ERROR",
            AMQPHardError::COMMANDINVALID => "COMMAND_INVALID",
            AMQPHardError::CHANNELERROR => "CHANNEL_ERROR",
            AMQPHardError::UNEXPECTEDFRAME => "UNEXPECTED_FRAME",
            AMQPHardError::RESOURCEERROR => "RESOURCE_ERROR",
            AMQPHardError::NOTALLOWED => "NOT_ALLOWED",
            AMQPHardError::NOTIMPLEMENTED => "NOT_IMPLEMENTED",
            AMQPHardError::INTERNALERROR => "INTERNAL_ERROR",
        },
    }
}

impl AmqpError {
    pub fn new(kind: impl Into<AMQPErrorKind>, explanation: impl fmt::Display) -> Self {
        AmqpError {
            kind: kind.into(),
            explanation: explanation.to_string(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// The text on the wire: RabbitMQ's code name, " - ", the explanation, in 255 bytes.
    pub fn reply_text(&self) -> String {
        cap_text(format!("{} - {}", code_name(&self.kind), self.explanation))
    }

    /// Name the method that failed; the connection copies it into channel/connection.close.
    pub fn on(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// Set the failing method only if the handler did not already name one.
    pub fn or_on(self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.on(class_id, method_id)
        } else {
            self
        }
    }

    pub fn code(&self) -> u16 {
        self.kind.get_id()
    }

    /// Soft errors close only their channel; hard ones the whole connection.
    pub fn closes_connection(&self) -> bool {
        matches!(self.kind, AMQPErrorKind::Hard(_))
    }

    pub fn access_refused(e: impl fmt::Display) -> Self {
        Self::new(AMQPSoftError::ACCESSREFUSED, e)
    }
    pub fn not_found(e: impl fmt::Display) -> Self {
        Self::new(AMQPSoftError::NOTFOUND, e)
    }
    pub fn resource_locked(e: impl fmt::Display) -> Self {
        Self::new(AMQPSoftError::RESOURCELOCKED, e)
    }
    pub fn precondition_failed(e: impl fmt::Display) -> Self {
        Self::new(AMQPSoftError::PRECONDITIONFAILED, e)
    }
    pub fn connection_forced(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::CONNECTIONFORCED, e)
    }
    pub fn frame_error(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::FRAMEERROR, e)
    }
    pub fn syntax_error(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::SYNTAXERROR, e)
    }
    pub fn command_invalid(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::COMMANDINVALID, e)
    }
    pub fn channel_error(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::CHANNELERROR, e)
    }
    pub fn unexpected_frame(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::UNEXPECTEDFRAME, e)
    }
    pub fn resource_error(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::RESOURCEERROR, e)
    }
    pub fn not_allowed(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::NOTALLOWED, e)
    }
    pub fn not_implemented(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::NOTIMPLEMENTED, e)
    }
    pub fn internal_error(e: impl fmt::Display) -> Self {
        Self::new(AMQPHardError::INTERNALERROR, e)
    }

    /// `no queue 'q' in vhost '/'`, RabbitMQ's wording for a missing queue.
    pub fn no_queue(name: &str, vhost: &str) -> Self {
        Self::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
    }
    pub fn no_exchange(name: &str, vhost: &str) -> Self {
        Self::not_found(format!("no exchange '{name}' in vhost '{vhost}'"))
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (class {}, method {})",
            self.code(),
            self.reply_text(),
            self.class_id,
            self.method_id
        )
    }
}

impl std::error::Error for AmqpError {}

pub type AmqpResult<T> = Result<T, AmqpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_prefixed_and_capped() {
        let e = AmqpError::not_found("x".repeat(400)).on(50, 10);
        assert!(e.reply_text().starts_with("NOT_FOUND - x"));
        assert_eq!(e.reply_text().len(), 255);
        assert_eq!(e.explanation.len(), 400);
        assert_eq!(e.code(), code::NOT_FOUND);
        assert!(!e.closes_connection());
        assert!(AmqpError::frame_error("bad").closes_connection());
    }
}
