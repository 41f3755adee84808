//! Broker configuration: command-line flags and WARREN_* environment variables.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    pub data_dir: Option<PathBuf>,
    /// Largest message body accepted (RabbitMQ 3.x: 128 MiB).
    pub max_message_size: u64,
    /// What Tune proposes (RabbitMQ's defaults).
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    /// RabbitMQ's handshake_timeout.
    pub handshake_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 5672,
            data_dir: None,
            max_message_size: crate::channel::DEFAULT_MAX_MESSAGE_SIZE,
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
            handshake_timeout_ms: 10_000,
        }
    }
}
