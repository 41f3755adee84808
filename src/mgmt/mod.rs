//! The management interface: a RabbitMQ-compatible subset of the HTTP API (/api/...) plus
//! Prometheus metrics (/metrics), on its own port. `warrenctl` is a client of it. Requests are
//! authenticated with HTTP Basic against the broker's users, guest from loopback only, as in
//! RabbitMQ's management plugin; /metrics too, unless `--metrics-public`.

mod access;
pub mod api;
mod basic_auth;
mod channels;
pub mod client;
pub mod definitions;
pub mod endpoints;
pub mod http;
pub mod json;
pub mod metrics;
mod node;
mod paging;
mod parameters;
mod policies;
pub mod prometheus;
mod reply;
mod server;
mod testing;
mod ui;
mod users;
mod vhosts;
mod write;

pub use server::{run, run_tls};

pub use crate::auth::base64::{decode as base64_decode, encode as base64_encode};
