//! The management listener on hyper: connection cap, header and body deadlines, credentials
//! checked before a body is read, a body size limit, then `api::handle` and a RabbitMQ-shaped
//! response. A change is answered once it is durable.

use super::http::{target, Request, Response};
use crate::broker::Broker;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Management connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 512;
/// RabbitMQ's default `management.http.max_body_size`.
const MAX_BODY: usize = 20 * 1024 * 1024;

/// Serve management requests until `shutdown` completes.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    accept_loop(listener, None, broker, shutdown).await
}

/// The same over HTTPS.
pub async fn run_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(listener, Some(acceptor), broker, shutdown).await
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if let Ok(a) = listener.local_addr() {
        broker.listening(if tls.is_some() { "https" } else { "http" }, a.port());
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let broker = broker.clone();
                        match tls.clone() {
                            None => {
                                tokio::spawn(serve(stream, broker, peer, permit));
                            }
                            Some(acceptor) => {
                                tokio::spawn(async move {
                                    let deadline =
                                        Duration::from_millis(broker.config.mgmt_timeout_ms.max(1));
                                    if let Ok(Ok(s)) =
                                        tokio::time::timeout(deadline, acceptor.accept(stream)).await
                                    {
                                        serve(s, broker, peer, permit).await;
                                    }
                                });
                            }
                        }
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "management connection refused: too many open");
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "management accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    broker: Arc<Broker>,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let deadline = Duration::from_millis(broker.config.mgmt_timeout_ms.max(1));
    let svc = service_fn(move |req| {
        let broker = broker.clone();
        async move { Ok::<_, Infallible>(handle(&broker, peer, req, deadline).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A head trickled in byte by byte is cut off (slowloris).
        .header_read_timeout(deadline)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), svc);
    // Keep-alive connections do not live forever either: a slot is a slot.
    let _ = tokio::time::timeout(deadline * 12, conn).await;
}

async fn handle(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    deadline: Duration,
) -> hyper::Response<Full<Bytes>> {
    // The UI's own calls get no Basic challenge with a 401: the browser would put up its
    // login dialog over the page's.
    let challenge = req.headers().get("x-requested-with").is_none();
    let resp = answer(broker, peer, req, deadline).await;
    tracing::debug!(status = resp.status, "management request");
    to_hyper(resp, challenge)
}

async fn answer(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    deadline: Duration,
) -> Response {
    let (parts, body) = req.into_parts();
    let (segments, query) = match target(parts.uri.path(), parts.uri.query().unwrap_or("")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    if let Some(page) = super::ui::asset(parts.method.as_str(), &segments) {
        return page;
    }
    let public =
        broker.config.metrics_public && segments.first().map(String::as_str) == Some("metrics");
    // Credentials first: an unauthenticated peer never gets a body read.
    let credentials = header("authorization");
    let user = super::basic_auth::authenticate(broker, credentials.as_deref(), peer);
    match &user {
        None if public => {}
        // RabbitMQ answers with an empty body and the Basic challenge...
        None if credentials.is_none() => return Response::empty(401),
        // ...and to wrong credentials with its "Login failed".
        None => return Response::error(401, "not_authorized", "Login failed"),
        Some(u) => {
            if let Err(refused) =
                super::access::authorize(broker, u, parts.method.as_str(), &segments)
            {
                return refused;
            }
        }
    }
    // A declared length over the limit is refused before any of it is read.
    if hyper::body::Body::size_hint(&body).lower() > MAX_BODY as u64 {
        return Response::error(413, "bad_request", "body too large");
    }
    let body = match tokio::time::timeout(deadline, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes().to_vec(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Response::error(413, "bad_request", "body too large")
        }
        Ok(Err(e)) => return Response::error(400, "bad_request", e.to_string()),
        Err(_) => return Response::error(408, "bad_request", "body not received in time"),
    };
    let channels = if super::channels::wants_channels(&segments) {
        Some(broker.channel_snapshots().await)
    } else {
        None
    };
    let req = Request {
        channels,
        method: parts.method.as_str().to_string(),
        segments,
        query,
        authorization: header("authorization"),
        user,
        reason: header("x-reason"),
        body,
    };
    let mut resp = match super::testing::handle_async(broker, &req).await {
        Some(r) => r,
        None => super::api::handle(broker, &req),
    };
    if req.method != "GET" && resp.status < 300 {
        // A change is answered once it is durable, as over AMQP.
        if let Err(e) = broker.sync().await {
            resp = Response::error(500, "internal_server_error", format!("storage failed: {e}"));
        }
    }
    resp
}

fn to_hyper(r: Response, challenge: bool) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder()
        .status(r.status)
        .header("content-type", r.content_type);
    if r.status == 401 && challenge {
        b = b.header("www-authenticate", "Basic realm=\"RabbitMQ Management\"");
    }
    if let Some(allow) = &r.allow {
        b = b.header("allow", allow.as_str());
    }
    b.body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
