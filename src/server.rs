//! Accept loop and shutdown: every connection gets its own task. Shutdown keeps the promise a
//! durable queue makes: stop accepting, close every connection with 320 CONNECTION_FORCED (each
//! submits its last writes as it goes), then wait until the committer has made everything
//! durable, and only then return.

use crate::broker::Broker;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// AMQPS: a listener and the TLS configuration its connections use.
pub struct Tls {
    pub listener: TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// Serve until `shutdown` completes; Err when the store could not make the last writes
/// durable.
pub async fn run(
    listener: TcpListener,
    tls: Option<Tls>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> crate::store::StoreResult<()> {
    tokio::pin!(shutdown);
    if let Ok(a) = listener.local_addr() {
        broker.listening("amqp", a.port());
    }
    if let Some(a) = tls.as_ref().and_then(|t| t.listener.local_addr().ok()) {
        broker.listening("amqp/ssl", a.port());
    }

    tokio::spawn(crate::alarm::monitor(
        Arc::downgrade(&broker.alarms),
        broker.disk_dir().map(Into::into),
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    tokio::spawn(crate::connection::serve(stream, broker, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            accepted = accept_tls(&tls) => {
                match (accepted, &tls) {
                    (Ok((stream, peer)), Some(t)) => {
                        tokio::spawn(serve_tls(stream, peer, t.acceptor.clone(), broker.clone()));
                    }
                    (Err(e), _) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => {}
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(tls);
    broker.close_all("broker forced connection closure with reason 'shutdown'");
    // Give clients a moment to answer close-ok; connections time out on their own after that.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let backlog = broker.committer().backlog_bytes();
    let r = broker.sync().await;
    match &r {
        Ok(()) => tracing::info!(
            backlog_bytes = backlog,
            ms = started.elapsed().as_millis() as u64,
            "storage flushed"
        ),
        Err(e) => tracing::error!(error = %e, "storage could not flush at shutdown"),
    }
    r
}

/// The next AMQPS socket; never, without TLS. (accept is cancel-safe, so this may lose a race
/// in `select!` without losing a socket.)
async fn accept_tls(
    tls: &Option<Tls>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match tls {
        Some(t) => t.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The TLS handshake (bounded by the AMQP handshake timeout), then an AMQP connection on it.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    broker: Arc<Broker>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    // Unauthenticated TLS handshakes take a handshake slot too (the AMQP one takes its own).
    let Ok(slot) = broker.handshakes.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "too many connections in the handshake; closed");
        return;
    };
    let timeout = Duration::from_millis(broker.config.handshake_timeout_ms);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    drop(slot);
    let cn = crate::tls::peer_common_name(tls.get_ref().1);
    crate::connection::serve_on(tls, broker, peer, local, cn).await
}
