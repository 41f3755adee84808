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
pub mod clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod error;
pub mod exchange;
pub mod federation;
pub mod message;
pub mod meta;
pub mod mgmt;
pub mod names;
pub mod queue;
pub mod server;
pub mod shovel;
pub mod stats;
pub mod store;
pub mod testing;
pub mod tls;
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
    tls_addr: Option<SocketAddr>,
    mgmt_tls: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    mgmt: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    prometheus: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<store::StoreResult<()>>,
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://guest:guest@host:port/%2f` (the configured default user and vhost), ready for
    /// any client.
    pub fn url(&self) -> String {
        let c = &self.broker.config;
        let enc = |s: &str| {
            let mut out = String::new();
            for b in s.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(b as char)
                    }
                    _ => out.push_str(&format!("%{b:02x}")),
                }
            }
            out
        };
        format!(
            "amqp://{}:{}@{}/{}",
            enc(&c.default_user),
            enc(&c.default_pass),
            self.addr,
            enc(&c.default_vhost)
        )
    }

    /// Where AMQPS listens, when `Config::tls_port` asked for it.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where the management API's HTTPS listens, when `Config::mgmt_tls_port` asked for it.
    pub fn mgmt_tls_addr(&self) -> Option<SocketAddr> {
        self.mgmt_tls.as_ref().map(|(a, _)| *a)
    }

    /// Where the management HTTP API listens, when `Config::mgmt_port` asked for it.
    pub fn mgmt_addr(&self) -> Option<SocketAddr> {
        self.mgmt.as_ref().map(|(a, _)| *a)
    }

    /// Where the Prometheus endpoint listens, when `Config::prometheus_port` asked for it.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(a, _)| *a)
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Reset between tests (see `Broker::reset`): connections closed, every queue, exchange,
    /// binding and policy gone (or only the messages, with `keep_topology`), users kept.
    pub async fn reset(&self, keep_topology: bool) -> store::StoreResult<()> {
        self.broker.reset(keep_topology).await
    }

    /// Stop listening, close every connection with 320 CONNECTION_FORCED, and wait until
    /// everything durable queues hold is on disk.
    pub async fn shutdown(self) {
        let _ = self.stop().await;
    }

    /// Ask the broker to stop without waiting (for `Drop`s): listeners close and connections
    /// are closed with 320 by the server task, if the runtime still runs it.
    pub fn signal_stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for (_, task) in [
            self.mgmt.take(),
            self.mgmt_tls.take(),
            self.prometheus.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }

    /// `shutdown`, telling whether the last writes were made durable (Err: the store failed).
    pub async fn stop(mut self) -> store::StoreResult<()> {
        self.broker.shovels.stop_all();
        self.broker.federation.stop_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let r = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(store::StoreError::new(
                store::StoreErrorKind::Closed,
                format!("server task ended abnormally: {e}"),
            )),
        };
        if let Some((_, task)) = self.mgmt.take() {
            task.abort();
        }
        if let Some((_, task)) = self.mgmt_tls.take() {
            task.abort();
        }
        if let Some((_, task)) = self.prometheus.take() {
            task.abort();
        }
        // Let go of the data directory, so that a broker started next in this process (a
        // restart in a test) can open it.
        self.broker.close_store();
        r
    }
}

/// A listener on `bind:port`, or an error naming what it was for.
async fn listen(bind: &str, port: u16, what: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((bind, port))
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {bind}:{port} ({what}): {e}"),
            )
        })
}

/// Start a broker, the one boot path of the binary, embedding applications and the tests:
/// open and replay the store (nothing listens while a backlog is recovered), apply
/// `config.definitions`, then listen on `config.bind:config.port` (port 0 picks a free one)
/// and, with `config.mgmt_port`, serve the management API (0 picks a free port too).
pub async fn start(config: Config) -> std::io::Result<BrokerHandle> {
    use std::io::{Error, ErrorKind};
    let broker = Broker::new(config)?;
    broker::rates::spawn_sampler(&broker);
    if let Some(path) = broker.config.definitions.clone() {
        let applied = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}")))
            .and_then(|defs| mgmt::definitions::import(&broker, &defs));
        let applied = match applied {
            Ok(n) => broker.sync().await.map(|()| n).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match applied {
            Ok(n) => tracing::info!(
                file = %path.display(),
                exchanges = n.exchanges,
                queues = n.queues,
                bindings = n.bindings,
                "definitions loaded"
            ),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("cannot load definitions from {}: {e}", path.display()),
                ))
            }
        }
    }
    let bind = broker.config.bind.clone();
    let port = broker.config.port;
    let listener = listen(&bind, port, "AMQP").await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        port = addr.port(),
        "warren {} listening",
        env!("CARGO_PKG_VERSION")
    );
    let mgmt = match broker.config.mgmt_port {
        None => None,
        Some(port) => match listen(&bind, port, "management").await {
            Ok(l) => {
                let a = l.local_addr()?;
                tracing::info!(port = a.port(), "management API listening");
                let task = tokio::spawn(mgmt::run(l, broker.clone(), std::future::pending()));
                Some((a, task))
            }
            Err(e) if broker.config.mgmt_port_optional => {
                tracing::warn!(port, error = %e, "management API disabled: cannot listen");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let prometheus = match broker.config.prometheus_port {
        None => None,
        Some(port) => match listen(&bind, port, "prometheus").await {
            Ok(l) => {
                let a = l.local_addr()?;
                tracing::info!(port = a.port(), "prometheus metrics listening");
                Some((a, tokio::spawn(mgmt::prometheus::run(l, broker.clone()))))
            }
            Err(e) if broker.config.mgmt_port_optional => {
                tracing::warn!(port, error = %e, "prometheus endpoint disabled: cannot listen");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let tls_config = match &broker.config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None => None,
    };
    let amqps = match (broker.config.tls_port, &tls_config) {
        (Some(port), Some(cfg)) => {
            let l = listen(&bind, port, "AMQPS").await?;
            tracing::info!(port = l.local_addr()?.port(), "AMQPS listening");
            Some(server::Tls {
                listener: l,
                acceptor: tokio_rustls::TlsAcceptor::from(cfg.clone()),
            })
        }
        (Some(_), None) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "--tls-port needs --tls-cert and --tls-key",
            ))
        }
        _ => None,
    };
    let tls_addr = match &amqps {
        Some(t) => Some(t.listener.local_addr()?),
        None => None,
    };
    let mgmt_tls = match (broker.config.mgmt_tls_port, &tls_config) {
        (Some(port), Some(cfg)) => {
            let l = listen(&bind, port, "management HTTPS").await?;
            let a = l.local_addr()?;
            tracing::info!(port = a.port(), "management API (HTTPS) listening");
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            let task = tokio::spawn(mgmt::run_tls(
                l,
                acceptor,
                broker.clone(),
                std::future::pending(),
            ));
            Some((a, task))
        }
        (Some(_), None) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "--mgmt-tls-port needs --tls-cert and --tls-key",
            ))
        }
        _ => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, amqps, broker.clone(), async move {
        let _ = stopped.await;
    }));
    broker.start_shovels(addr.port());
    Ok(BrokerHandle {
        addr,
        tls_addr,
        mgmt_tls,
        mgmt,
        prometheus,
        broker,
        stop: Some(stop),
        task,
    })
}
