//! Shared helpers: one broker per test binary (or WARREN_TEST_AMQP_URL), lapin connections,
//! unique names, error-code extraction, and a raw-frame client for wire-level checks.

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{connection as conn, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the tests run against an external broker (e.g. RabbitMQ 3.10 as referee).
pub fn external() -> bool {
    std::env::var("WARREN_TEST_AMQP_URL").is_ok_and(|u| !u.is_empty())
}

/// URL of the broker under test: WARREN_TEST_AMQP_URL, or an in-process Warren started once on
/// 127.0.0.1:0 on its own runtime thread (so it outlives each test's runtime).
pub fn url() -> String {
    broker().0.clone()
}

/// host:port of the management API under test: WARREN_TEST_MGMT_ADDR with an external broker
/// (RabbitMQ's management plugin), else the in-process Warren's. None: skip management tests.
pub fn mgmt_addr() -> Option<String> {
    if external() {
        return std::env::var("WARREN_TEST_MGMT_ADDR")
            .ok()
            .filter(|a| !a.is_empty());
    }
    broker().1.clone()
}

fn broker() -> &'static (String, Option<String>) {
    static BROKER: OnceLock<(String, Option<String>)> = OnceLock::new();
    BROKER.get_or_init(|| {
        if external() {
            return (
                std::env::var("WARREN_TEST_AMQP_URL").unwrap_or_default(),
                None,
            );
        }
        spawn_broker(warren::Config {
            port: 0,
            max_message_size: 1024 * 1024,
            mgmt_port: Some(0),
            ..Default::default()
        })
    })
}

/// An in-process Warren on its own runtime thread, for the rest of the test binary (keep it in
/// a `OnceLock`): its AMQP URL and management address.
pub fn spawn_broker(config: warren::Config) -> (String, Option<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let handle = warren::start(config).await.expect("start warren");
            let mgmt = handle.mgmt_addr().map(|a| a.to_string());
            tx.send((handle.url(), mgmt)).expect("send url");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("broker url")
}

/// One HTTP request to the management API at `addr` with Basic `auth` ("user:pass"),
/// returning (status, JSON body or Null).
pub async fn http_at(
    addr: &str,
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let answer = warren::mgmt::client::Target::new(addr, auth)
        .send(method, path, body.as_ref(), &[])
        .await
        .expect("management API answers");
    (answer.status, answer.body)
}

/// Run warrenctl against the management API on `port`: (exit status ok, stdout + stderr).
pub fn warrenctl(port: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--port", port])
        .args(args)
        .output()
        .expect("run warrenctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn addr() -> String {
    let u = url();
    let after_at = u.rsplit('@').next().unwrap_or(&u).to_string();
    after_at.split('/').next().unwrap_or_default().to_string()
}

pub async fn connect() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect")
}

/// A connection to the broker at `url` and one channel on it.
pub async fn channel_at(url: &str) -> (Connection, Channel) {
    let c = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

/// delivery_mode 2.
pub fn persistent() -> lapin::BasicProperties {
    lapin::BasicProperties::default().with_delivery_mode(2)
}

pub async fn channel() -> (Connection, Channel) {
    let c = connect().await;
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

pub fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", warren::names::random_token(10))
}

/// The AMQP reply code carried by a lapin error, if it is a protocol error.
pub fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(err) => Some(err.get_id()),
        _ => None,
    }
}

pub fn text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(err) => err.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, lapin::Error>, expected: u16) -> lapin::Error {
    match r {
        Ok(v) => panic!("expected error {expected}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(code(&e), Some(expected), "unexpected error: {e:?}");
            e
        }
    }
}

pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// A minimal hand-driven AMQP client for frames that real clients refuse to send.
pub struct Raw<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    /// A raw client over any stream (TLS in the AMQPS tests).
    pub fn over(stream: S) -> Raw<S> {
        Raw {
            stream,
            buf: Vec::new(),
        }
    }
}

impl Raw {
    pub async fn tcp() -> Raw {
        Raw::tcp_at(&addr()).await
    }

    pub async fn tcp_at(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Handshake against a broker at `addr` (not the shared one).
    pub async fn open_at(addr: &str) -> Raw {
        let mut r = Raw::tcp_at(addr).await;
        r.handshake(2047, 131072, 0).await;
        r
    }

    /// Connect and finish the handshake with the given tune-ok values.
    pub async fn open_with(channel_max: u16, frame_max: u32, heartbeat: u16) -> Raw {
        let mut r = Raw::tcp().await;
        r.handshake(channel_max, frame_max, heartbeat).await;
        r
    }

    pub async fn open() -> Raw {
        Raw::open_with(2047, 131072, 0).await
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    pub async fn handshake(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
        self.send_open(channel_max, frame_max, heartbeat, "/").await;
        match self.recv_method().await {
            Some((0, AMQPClass::Connection(conn::AMQPMethod::OpenOk(_)))) => {}
            other => panic!("expected open-ok, got {other:?}"),
        }
    }

    /// The handshake up to and including connection.open, without waiting for its answer
    /// (for tests of what refuses a connection at open).
    pub async fn send_open(
        &mut self,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
        vhost: &str,
    ) {
        self.send_bytes(b"AMQP\x00\x00\x09\x01").await;
        self.recv_method().await.expect("start");
        self.start_ok("PLAIN", b"\0guest\0guest").await;
        self.recv_method().await.expect("tune");
        self.send(
            0,
            AMQPClass::Connection(conn::AMQPMethod::TuneOk(conn::TuneOk {
                channel_max,
                frame_max,
                heartbeat,
            })),
        )
        .await;
        self.send(
            0,
            AMQPClass::Connection(conn::AMQPMethod::Open(conn::Open {
                virtual_host: vhost.into(),
            })),
        )
        .await;
    }

    pub async fn start_ok(&mut self, mechanism: &str, response: &[u8]) {
        let mut caps = FieldTable::default();
        caps.insert(
            "authentication_failure_close".into(),
            AMQPValue::Boolean(true),
        );
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        caps.insert("connection.blocked".into(), AMQPValue::Boolean(true));
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        self.send(
            0,
            AMQPClass::Connection(conn::AMQPMethod::StartOk(conn::StartOk {
                client_properties: props,
                mechanism: mechanism.into(),
                response: response.to_vec().into(),
                locale: "en_US".into(),
            })),
        )
        .await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        let _ = self.stream.write_all(b).await;
    }

    pub async fn send_frame(&mut self, f: AMQPFrame) {
        let out = gen_frame(&f)(WriteContext::from(Vec::new()))
            .expect("gen")
            .into_inner()
            .0;
        self.send_bytes(&out).await;
    }

    pub async fn send(&mut self, channel: u16, m: AMQPClass) {
        self.send_frame(AMQPFrame::Method(channel, m)).await;
    }

    /// Next frame, or None on EOF / 15 s of silence.
    pub async fn recv(&mut self) -> Option<AMQPFrame> {
        loop {
            if let Ok((rest, f)) = parse_frame(&self.buf[..]) {
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                return Some(f);
            }
            let mut tmp = [0u8; 65536];
            match tokio::time::timeout(Duration::from_secs(15), self.stream.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&tmp[..n]),
                _ => return None,
            }
        }
    }

    pub async fn recv_method(&mut self) -> Option<(u16, AMQPClass)> {
        loop {
            match self.recv().await? {
                AMQPFrame::Method(ch, m) => return Some((ch, m)),
                AMQPFrame::Heartbeat => continue,
                _ => continue,
            }
        }
    }

    /// Wait for a channel.close or connection.close: (channel, code, class_id, method_id).
    pub async fn expect_close(&mut self) -> (u16, u16, u16, u16) {
        use amq_protocol::protocol::channel as chan;
        loop {
            match self.recv_method().await {
                Some((ch, AMQPClass::Channel(chan::AMQPMethod::Close(c)))) => {
                    return (ch, c.reply_code, c.class_id, c.method_id)
                }
                Some((0, AMQPClass::Connection(conn::AMQPMethod::Close(c)))) => {
                    self.send(
                        0,
                        AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                    )
                    .await;
                    return (0, c.reply_code, c.class_id, c.method_id);
                }
                Some(_) => continue,
                None => panic!("socket closed without a close method"),
            }
        }
    }

    /// The peer ends the connection within `secs`: answering a connection.close with close-ok
    /// as a polite client would, until the socket closes.
    pub async fn ends_within(&mut self, secs: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.recv()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(f)) => f,
            };
            if let AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Close(_))) = frame {
                self.send(
                    0,
                    AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                )
                .await;
            }
        }
    }

    /// The socket is closed by the peer within `secs`.
    pub async fn closed_within(&mut self, secs: u64) -> bool {
        let mut tmp = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    pub async fn open_channel(&mut self, ch: u16) {
        use amq_protocol::protocol::channel as chan;
        self.send(
            ch,
            AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
        )
        .await;
        match self.recv_method().await {
            Some((c, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_)))) if c == ch => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }
}

pub mod ops {
    //! Short forms of the lapin calls most tests repeat.
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Channel};

    /// A server-named exclusive queue.
    pub async fn temp_queue(ch: &Channel) -> String {
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare")
        .name()
        .to_string()
    }

    pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
        publish_props(ch, exchange, key, body, BasicProperties::default()).await;
    }

    pub async fn publish_props(
        ch: &Channel,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish");
    }

    /// Publish on a confirm-mode channel and wait for the broker's answer: the confirmation,
    /// or the channel error the publish caused.
    pub async fn confirmed(
        ch: &Channel,
        exchange: lapin::types::ShortString,
        routing_key: lapin::types::ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<lapin::Confirmation, lapin::Error> {
        ch.basic_publish(exchange, routing_key, options, payload, props)
            .await?
            .await
    }

    /// basic.consume with no arguments; `no_ack` for auto-ack.
    pub async fn consume(ch: &Channel, q: &str, tag: &str, no_ack: bool) -> lapin::Consumer {
        ch.basic_consume(
            q.into(),
            tag.into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume")
    }

    /// queue.declare passive=true: the queue's counts, or the broker's refusal.
    pub async fn passive(ch: &Channel, q: &str) -> Result<lapin::Queue, lapin::Error> {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
    }

    /// A named, non-durable, non-exclusive queue with no arguments.
    pub async fn declare(ch: &Channel, q: &str) {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    }

    /// Ready messages in `q`, by passive declare.
    pub async fn message_count(ch: &Channel, q: &str) -> u32 {
        passive(ch, q)
            .await
            .expect("passive declare")
            .message_count()
    }

    pub async fn bind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) {
        ch.queue_bind(
            q.into(),
            x.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        )
        .await
        .expect("bind");
    }

    /// basic.get with auto-ack; bodies as strings.
    pub async fn get(ch: &Channel, q: &str) -> Option<String> {
        ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
    }

    /// Every message currently ready in `q` (auto-ack).
    pub async fn drain(ch: &Channel, q: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = get(ch, q).await {
            out.push(m);
        }
        out
    }

    /// basic.get until a message shows up (messages that travel between queues, such as dead
    /// letters, arrive asynchronously); None after about a second.
    pub async fn get_within(
        ch: &Channel,
        q: &str,
        no_ack: bool,
    ) -> Option<lapin::message::BasicGetMessage> {
        for _ in 0..100 {
            if let Some(m) = ch
                .basic_get(q.into(), BasicGetOptions { no_ack })
                .await
                .expect("get")
            {
                return Some(m);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        None
    }

    pub async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
        use futures_lite::StreamExt;
        tokio::time::timeout(std::time::Duration::from_secs(5), consumer.next())
            .await
            .expect("delivery within 5 s")
            .expect("stream open")
            .expect("delivery")
    }

    /// No delivery arrives within `ms`.
    pub async fn quiet(consumer: &mut lapin::Consumer, ms: u64) -> bool {
        use futures_lite::StreamExt;
        tokio::time::timeout(std::time::Duration::from_millis(ms), consumer.next())
            .await
            .is_err()
    }
}

/// What the scenario files share: declaring with arguments, reading x-death, a topic
/// exchange that outlives its bindings.
pub mod setup {
    use super::ops::*;
    use super::*;
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::ExchangeKind;

    pub fn int(n: i64) -> AMQPValue {
        AMQPValue::LongLongInt(n)
    }

    pub async fn declare_args(ch: &lapin::Channel, name: &str, args: FieldTable) -> String {
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                auto_delete: false,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare")
        .name()
        .to_string()
    }

    pub async fn cleanup(ch: &lapin::Channel, queues: &[&str]) {
        for q in queues {
            let _ = ch
                .queue_delete((*q).into(), QueueDeleteOptions::default())
                .await;
        }
    }

    pub async fn get_msg(ch: &lapin::Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
        ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
    }

    pub fn death(m: &lapin::message::Delivery, i: usize) -> FieldTable {
        let h = m.properties.headers().clone().expect("headers");
        match h.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => match &a.as_slice()[i] {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            },
            other => panic!("no x-death: {other:?}"),
        }
    }

    pub fn str_of(t: &FieldTable, k: &str) -> String {
        match t.inner().get(k) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(s)) => s.to_string(),
            other => panic!("{k}: {other:?}"),
        }
    }

    pub fn count_of(t: &FieldTable) -> i64 {
        match t.inner().get("count") {
            Some(AMQPValue::LongLongInt(n)) => *n,
            other => panic!("count: {other:?}"),
        }
    }

    /// A topic exchange that outlives its bindings (not auto-delete); `routed` checks one pattern
    /// at a time and removes its queue, which would delete an auto-delete exchange.
    pub async fn topic(ch: &lapin::Channel) -> String {
        let x = uniq("t");
        ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("x");
        x
    }

    pub async fn drop_exchange(ch: &lapin::Channel, x: &str) {
        ch.exchange_delete(x.into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete");
    }

    pub async fn routed(ch: &lapin::Channel, x: &str, pattern: &str, key: &str) -> bool {
        let q = temp_queue(ch).await;
        bind(ch, &q, x, pattern, FieldTable::default()).await;
        publish(ch, x, key, b"m").await;
        let got = !drain(ch, &q).await.is_empty();
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete");
        got
    }
}

/// Open a store on a directory this process had open a moment ago: sled's flusher thread lets
/// go of the directory lock on its next tick after the last handle drops, so an open right
/// away can find it still held (a new process never does). Retries for up to 3 s, then fails
/// with the real error.
pub fn reopen_in_process<T>(mut open: impl FnMut() -> warren::store::StoreResult<T>) -> T {
    for _ in 0..60 {
        match open() {
            Err(e) if e.kind == warren::store::StoreErrorKind::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            r => return r.expect("open the store"),
        }
    }
    open().expect("open the store")
}
