//! Warren: an AMQP 0-9-1 message broker that RabbitMQ clients use without noticing.
//!
//! Layers, top to bottom (each depends only on those below it):
//! - `server` accepts sockets; `connection` runs one task per socket (handshake, heartbeats,
//!   channel table, close policy) over `codec` (amq-protocol frames).
//! - `channel` assembles publishes and handles the exchange/queue/basic/tx/confirm classes.
//! - `vhost` holds exchanges, queues and bindings and routes messages (`exchange`).
//! - `queue` keeps ready messages and consumers and pushes deliveries up to connections.
//! - `error::AmqpError` is the one error type; the connection decides what it closes.
//!
//! Embedding (for tests of applications that need a broker):
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let broker = warren::start(warren::Config { port: 0, ..Default::default() }).await?;
//! println!("connect to {}", broker.url());
//! broker.shutdown().await;
//! # Ok(()) }
//! ```

pub mod alarm;
pub mod args;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod codec;
pub mod config;
pub mod connection;
pub mod error;
pub mod exchange;
pub mod message;
pub mod meta;
pub mod mgmt;
pub mod names;
pub mod queue;
pub mod server;
pub mod store;
pub mod vhost;

pub use broker::Broker;
pub use config::Config;
pub use error::AmqpError;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A broker running inside this process.
pub struct BrokerHandle {
    addr: SocketAddr,
    mgmt: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://guest:guest@host:port/%2f`, ready for any client.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Where the management HTTP API listens, when `Config::mgmt_port` asked for it.
    pub fn mgmt_addr(&self) -> Option<SocketAddr> {
        self.mgmt.as_ref().map(|(a, _)| *a)
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stop listening, close every connection with 320 CONNECTION_FORCED, and wait until
    /// everything durable queues hold is on disk.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some((_, task)) = self.mgmt.take() {
            task.abort();
        }
    }
}

/// Bind `config.bind:config.port` (port 0 picks a free one) and serve in the background; with
/// `config.mgmt_port`, the management API too (0 picks a free port).
pub async fn start(config: Config) -> std::io::Result<BrokerHandle> {
    let listener = tokio::net::TcpListener::bind((config.bind.as_str(), config.port)).await?;
    let addr = listener.local_addr()?;
    let mgmt_listener = match config.mgmt_port {
        Some(port) => Some(tokio::net::TcpListener::bind((config.bind.as_str(), port)).await?),
        None => None,
    };
    let broker = Broker::new(config)?;
    let mgmt = match mgmt_listener {
        Some(l) => {
            let a = l.local_addr()?;
            let task = tokio::spawn(mgmt::run(l, broker.clone(), std::future::pending()));
            Some((a, task))
        }
        None => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, broker.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(BrokerHandle {
        addr,
        mgmt,
        broker,
        stop: Some(stop),
        task,
    })
}
