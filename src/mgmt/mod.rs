//! The management interface: a RabbitMQ-compatible subset of the HTTP API (/api/...) plus
//! Prometheus metrics (/metrics), on its own port. `warrenctl` is a client of it. Requests are
//! authenticated with HTTP Basic against the broker's users, guest from loopback only, as in
//! RabbitMQ's management plugin; /metrics too, unless `--metrics-public`.

pub mod api;
mod basic_auth;
pub mod definitions;
pub mod http;
pub mod json;
pub mod metrics;
mod node;
mod reply;
mod server;
mod write;

pub use server::run;

pub use basic_auth::{base64_decode, base64_encode};
