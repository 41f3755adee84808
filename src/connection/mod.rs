//! One client connection: a single task that reads frames, runs the channels, takes
//! deliveries from its inbox, writes batched output, and keeps heartbeats.
//!
//! All output of a read burst or an inbox drain goes into one buffer and out in one write.
//! Reading pauses (TCP back-pressure instead of growing our memory) while:
//! - that buffer is above a high-water mark (a client that does not read);
//! - the committer is congested and this connection has writes in flight (a publisher that
//!   outruns the disk; consumers and acks keep flowing, they have nothing in flight);
//! - a topology change waits to be durable: its reply is held, and the frames after it wait
//!   in the read buffer, so that nothing overtakes it;
//! - a memory or disk alarm is in effect and this connection published (RabbitMQ's blocking:
//!   connection.blocked to clients that asked for it, connection.unblocked when it clears).

mod handshake;

pub use crate::broker::Broker;
pub use crate::channel::{ClientCaps, ConnInfo};
pub use handshake::server_properties;

use crate::channel::{Channel, Cx};
use crate::codec::{self, Frame};
use crate::error::AmqpError;
use crate::queue::{Effects, Outbound, Queue};
use amq_protocol::protocol::{basic, channel as chan, connection as conn, AMQPClass};
use bytes::BytesMut;
use socket::Socket;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

const WRITE_HIGH_WATER: usize = 1 << 20;
/// Read buffer: an idle connection keeps `READ_INITIAL`; a read that fills the buffer doubles it,
/// up to `READ_BUFFER` (publishers get big reads, 10,000 idle connections stay small).
const READ_BUFFER: usize = 64 * 1024;
const READ_INITIAL: usize = 2 * 1024;
/// Above this an empty output buffer is given back (after a burst of large messages).
const OUT_KEEP: usize = 256 * 1024;
/// How long to wait for connection.close-ok after sending connection.close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Inbox items handled per wake, so a flood of deliveries cannot starve reading.
const INBOX_BATCH: usize = 512;

/// A handler context over the connection's disjoint fields (a macro, so `self.channels` can
/// stay borrowed at the same time).
macro_rules! cx {
    ($c:expr) => {
        Cx {
            conn: &$c.info,
            out: &mut $c.out,
            kicks: &mut $c.kicks,
            fx: &mut $c.fx,
            now: $c.now,
        }
    };
}

// After the macro, so that these files can use it.
mod ack_timeout;
mod catch_unwind;
mod channels;
mod flow;
mod frames;
mod inbox;
pub mod socket;

use catch_unwind::CatchUnwind;

#[derive(Debug, PartialEq)]
enum State {
    Running,
    /// We sent connection.close; waiting for close-ok until the deadline.
    Closing(Instant),
    /// Done: flush what is buffered and drop the socket.
    Closed,
}

struct Connection {
    info: ConnInfo,
    channels: HashMap<u16, Channel>,
    out: Vec<u8>,
    kicks: Vec<Arc<Queue>>,
    /// Storage writes and dead letters of the current burst; its origin numbers this
    /// connection's submissions to the committer.
    fx: Effects,
    /// The highest ticket the committer reported durable (or failed).
    durable_ticket: u64,
    /// A topology change's reply waits for this ticket; `held` is that reply.
    barrier: Option<u64>,
    held: Vec<u8>,
    committer: Option<Arc<crate::store::Committer>>,
    /// The broker's alarms; `alarm_blocked` once this connection published under one.
    alarms: tokio::sync::watch::Receiver<u8>,
    alarm_blocked: bool,
    blocked_sent: bool,
    /// The broker's consumer_timeout (ms); queues may override it.
    consumer_timeout: Option<u64>,
    /// For limits that count across connections (a user's max-channels).
    broker: Arc<Broker>,
    /// The time (ms since the epoch) read once per read burst or inbox drain, for delivery
    /// timestamps: one clock read per wake, not one per message.
    now: u64,
    state: State,
}

/// Serve one accepted TCP socket until it closes.
pub async fn serve(stream: TcpStream, broker: Arc<Broker>, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    serve_on(stream, broker, peer, local, None).await
}

/// Serve one connection on any socket (TCP or TLS). `external`: the common name of a
/// verified client certificate (offers SASL EXTERNAL).
pub async fn serve_on<S: Socket>(
    mut stream: S,
    broker: Arc<Broker>,
    peer: SocketAddr,
    local: SocketAddr,
    external: Option<String>,
) {
    let Ok(slot) = broker.handshakes.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "too many connections in the handshake; closed");
        return;
    };
    let mut rbuf = BytesMut::with_capacity(READ_INITIAL);
    let timeout = Duration::from_millis(broker.config.handshake_timeout_ms);
    let negotiated = match tokio::time::timeout(
        timeout,
        handshake::run(&mut stream, &mut rbuf, &broker, peer, external.as_deref()),
    )
    .await
    {
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            return;
        }
        Ok(Err(handshake::Failed::Drop)) => return,
        Ok(Err(handshake::Failed::Close(e))) => {
            tracing::info!(%peer, error = %e, "handshake failed");
            close_during_handshake(&mut stream, &mut rbuf, e).await;
            return;
        }
        Ok(Ok(n)) => n,
    };
    drop(slot);
    let (outbox, inbox) = mpsc::unbounded_channel();
    let id = broker.next_connection_id();
    let meta = Arc::new(crate::meta::ConnMeta {
        id,
        name: format!("{peer} -> {local}"),
        peer,
        user: negotiated.user.clone(),
        vhost: negotiated.vhost.name.clone(),
        client_properties: negotiated.client_properties,
        connected_at_ms: crate::queue::now_ms(),
        channel_max: negotiated.channel_max,
        frame_max: negotiated.frame_max,
        heartbeat: negotiated.heartbeat,
        channels: Default::default(),
        stats: Default::default(),
    });
    broker.register(outbox.clone(), meta.clone());
    let span = tracing::info_span!("connection", id, %peer, user = %negotiated.user);
    let _enter = span.enter();
    tracing::info!(vhost = %negotiated.vhost.name, "connection open");
    let heartbeat = negotiated.heartbeat;
    let committer = negotiated.vhost.committer.clone();
    let mut c = Connection {
        info: ConnInfo {
            id,
            vhost: negotiated.vhost,
            user: negotiated.user,
            users: broker.users.clone(),
            outbox: outbox.clone(),
            frame_max: negotiated.frame_max,
            channel_max: negotiated.channel_max,
            caps: negotiated.caps,
            max_message_size: broker.config.max_message_size,
            max_consumers_per_channel: broker.config.max_consumers_per_channel,
            pending: crate::channel::Budget::new(broker.config.max_pending_bytes),
            meta,
        },
        channels: HashMap::new(),
        out: Vec::new(),
        kicks: Vec::new(),
        fx: Effects::for_connection(outbox.clone()),
        durable_ticket: 0,
        barrier: None,
        held: Vec::new(),
        committer,
        alarms: broker.alarms.subscribe(),
        alarm_blocked: false,
        blocked_sent: false,
        consumer_timeout: broker.config.consumer_timeout_ms,
        broker: broker.clone(),
        now: broker.clock.now_ms(),
        state: State::Running,
    };
    let mut inbox = inbox;
    let ran = CatchUnwind(Box::pin(c.run(stream, rbuf, &mut inbox, heartbeat))).await;
    let reader = match ran {
        Ok(reader) => reader,
        Err(()) => {
            // A bug, not the peer's doing: whatever the connection held still goes back.
            tracing::error!("bug: the connection task panicked; releasing what it held");
            None
        }
    };
    c.release_inbox(&mut inbox);
    c.teardown_channels();
    c.info.vhost.connection_closed(id, &mut c.fx);
    c.submit_ops();
    broker.unregister(id);
    tracing::info!("connection closed");
    if let Some(reader) = reader {
        drain(reader).await;
    }
}

/// Read and discard until the peer closes its side, for at most `CLOSE_TIMEOUT`.
async fn drain<R: tokio::io::AsyncRead + Unpin>(mut reader: R) {
    let mut scratch = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(n) = reader.read(&mut scratch).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

/// Send connection.close and give the peer a moment to answer close-ok.
async fn close_during_handshake<S: Socket>(stream: &mut S, rbuf: &mut BytesMut, e: AmqpError) {
    let mut out = Vec::new();
    codec::write_method(&mut out, 0, close_method(&e));
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match codec::decode(rbuf, 0) {
                Ok(Some(Frame::Method(0, m)))
                    if matches!(*m, AMQPClass::Connection(conn::AMQPMethod::CloseOk(_))) =>
                {
                    return
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return,
            }
            match stream.read_buf(rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn close_method(e: &AmqpError) -> AMQPClass {
    AMQPClass::Connection(conn::AMQPMethod::Close(conn::Close {
        reply_code: e.code(),
        reply_text: crate::names::short(&e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    }))
}

impl Connection {
    async fn run<S: Socket>(
        &mut self,
        stream: S,
        mut rbuf: BytesMut,
        inbox: &mut mpsc::UnboundedReceiver<Outbound>,
        heartbeat: u16,
    ) -> Option<S::Read> {
        let (mut reader, mut writer) = stream.into_halves();
        let mut written = 0usize;
        let hb = Duration::from_secs(heartbeat.max(1).into());
        let mut ticker = tokio::time::interval(hb / 2);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        let mut wrote_since_tick = false;
        let mut alarms_open = true;
        let mut read_size = READ_INITIAL;
        // Frames that arrived with the handshake's last read.
        self.process(&mut rbuf);
        loop {
            if self.state == State::Closed && written >= self.out.len() {
                break;
            }
            let pending = self.out.len() - written;
            let running = self.state != State::Closed;
            let paused = self.paused();
            let ack_deadline = if self.state == State::Running {
                self.ack_deadline()
            } else {
                None
            };
            let deadline = match self.state {
                State::Closing(d) => d,
                _ => Instant::now() + Duration::from_secs(3600),
            };
            let spare = rbuf.capacity() - rbuf.len();
            tokio::select! {
                r = reader.read_buf(&mut rbuf), if running && pending < WRITE_HIGH_WATER && !paused => {
                    match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            self.info.meta.stats.recv_oct.fetch_add(n as u64, Relaxed);
                            last_read = Instant::now();
                            if n >= spare {
                                // The peer had more to say than we had room for.
                                read_size = (read_size * 2).min(READ_BUFFER);
                            }
                            self.process(&mut rbuf);
                            if rbuf.capacity() - rbuf.len() < read_size / 2 {
                                rbuf.reserve(read_size);
                            }
                        }
                    }
                }
                r = writer.write(&self.out[written..]), if pending > 0 => {
                    match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            self.info.meta.stats.send_oct.fetch_add(n as u64, Relaxed);
                            written += n;
                            wrote_since_tick = true;
                            if written == self.out.len() {
                                self.out.clear();
                                if self.out.capacity() > OUT_KEEP {
                                    self.out = Vec::new();
                                }
                                written = 0;
                            }
                        }
                    }
                }
                m = inbox.recv(), if running && pending < WRITE_HIGH_WATER => {
                    let Some(m) = m else { break };
                    self.now = self.broker.clock.now_ms();
                    self.outbound(m);
                    for _ in 0..INBOX_BATCH {
                        match inbox.try_recv() {
                            Ok(m) => self.outbound(m),
                            Err(_) => break,
                        }
                    }
                    self.after_burst();
                    if paused && !self.paused() && !rbuf.is_empty() {
                        // A held reply went out: the frames that waited behind it run now.
                        self.process(&mut rbuf);
                    }
                }
                changed = self.alarms.changed(), if alarms_open => {
                    match changed {
                        Ok(()) if self.alarms_changed() => self.process(&mut rbuf),
                        Ok(()) => {}
                        Err(_) => alarms_open = false,
                    }
                }
                // On a test clock the deadline passes only when the clock is moved
                // (Outbound::ClockMoved), not while real time goes by.
                _ = tokio::time::sleep(Duration::from_millis(
                    ack_deadline.unwrap_or(0).saturating_sub(self.broker.clock.now_ms())
                )), if ack_deadline.is_some() && !self.broker.clock.is_test() => {
                    self.ack_timeouts();
                    self.after_burst();
                }
                _ = ticker.tick(), if heartbeat > 0 => {
                    if pending >= WRITE_HIGH_WATER || paused {
                        // We stopped reading (back-pressure), so the peer's heartbeats sit
                        // unread in the socket: silence here says nothing about the peer.
                        last_read = Instant::now();
                    }
                    if last_read.elapsed() > hb * 2 {
                        tracing::warn!(timeout_s = heartbeat, "missed heartbeats from client, closing");
                        break;
                    }
                    if !wrote_since_tick && pending == 0 {
                        codec::write_heartbeat(&mut self.out);
                    }
                    if last_read.elapsed() >= hb / 2 && rbuf.is_empty() && read_size > READ_INITIAL {
                        // Quiet for a while: give the big read buffer back.
                        read_size = READ_INITIAL;
                        rbuf = BytesMut::with_capacity(READ_INITIAL);
                    }
                    wrote_since_tick = false;
                }
                _ = tokio::time::sleep_until(deadline), if matches!(self.state, State::Closing(_)) => {
                    break;
                }
            }
        }
        // Best effort: the peer may already be gone.
        if written < self.out.len() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                writer.write_all(&self.out[written..]),
            )
            .await;
        }
        let _ = writer.shutdown().await;
        // After a close handshake the peer may still be sending (amqplib flushes publishes it
        // queued before its connection.close): give the socket back to be drained, so that
        // closing it with unread data does not reset the connection under the close-ok.
        (self.state == State::Closed).then_some(reader)
    }

    /// Handle every complete frame in the read buffer, then flush confirms and kicks.
    fn process(&mut self, rbuf: &mut BytesMut) {
        self.now = self.broker.clock.now_ms();
        while self.state != State::Closed && self.barrier.is_none() && !self.alarm_blocked {
            let frame_max = self.info.frame_max;
            match codec::decode(rbuf, frame_max) {
                Ok(Some(frame)) => {
                    let mark = self.out.len();
                    let publish = matches!(&frame, Frame::Method(_, m)
                        if matches!(**m, AMQPClass::Basic(basic::AMQPMethod::Publish(_))));
                    if let Err(e) = self.frame(frame) {
                        self.close_connection(e);
                    }
                    if let Some(ticket) = self.fx.barrier.take() {
                        if self.state == State::Running && ticket > self.durable_ticket {
                            // Its reply goes out once the change is durable.
                            self.held = self.out.split_off(mark);
                            self.barrier = Some(ticket);
                        }
                    }
                    if publish && self.state == State::Running {
                        let active = *self.alarms.borrow();
                        if active != 0 {
                            self.block_for_alarm(active);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.close_connection(e);
                    // The stream cannot be re-synchronised after a framing error.
                    rbuf.clear();
                    break;
                }
            }
        }
        self.after_burst();
    }

    fn after_burst(&mut self) {
        let channels = u32::try_from(self.channels.len()).unwrap_or(u32::MAX);
        self.info.meta.channels.store(channels, Relaxed);
        for q in std::mem::take(&mut self.kicks) {
            q.kick(&mut self.fx);
        }
        self.submit_ops();
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut self.out, self.durable_ticket, &self.info);
        }
    }

    /// Hand this burst's storage writes to the committer, which reports back with the ticket.
    fn submit_ops(&mut self) {
        self.info.vhost.submit(&mut self.fx);
    }
}
