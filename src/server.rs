//! Accept loop and shutdown: every connection gets its own task. Shutdown keeps the promise a
//! durable queue makes: stop accepting, close every connection with 320 CONNECTION_FORCED (each
//! submits its last writes as it goes), then wait until the committer has made everything
//! durable, and only then return.

use crate::broker::Broker;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serve until `shutdown` completes; Err when the store could not make the last writes
/// durable.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    tokio::pin!(shutdown);
    if let Ok(a) = listener.local_addr() {
        broker.listening("amqp", a.port());
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
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
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
