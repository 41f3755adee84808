//! warren-perf: a PerfTest-style load generator for any AMQP 0-9-1 broker.
//!
//! `cargo run --release --example perf -- --uri amqp://guest:guest@127.0.0.1:5672/%2f --time 10`
//!
//! Producers and consumers speak AMQP over raw sockets (frames built with amq-protocol once,
//! then copied per message; a burst of publishes goes out in one write; consumers parse only
//! what they need), so on a 2-core box the generator does not cap what can be measured. Topology
//! is set up and removed with lapin. Latency comes from a timestamp in the first 8 body bytes.
//! With --confirm, only confirmed messages count as published. Prints a progress line per
//! second and a final JSON line.

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel, confirm, connection, AMQPClass, BasicProperties};
use amq_protocol::types::FieldTable;
use clap::Parser;
use lapin::options::*;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "warren-perf",
    about = "AMQP 0-9-1 throughput and latency tool (PerfTest-style)"
)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    uri: String,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Queues; producers spread messages over them (direct/topic), fanout copies to all.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Body size in bytes (at least 8, for the timestamp).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    time: u64,
    /// Total publish rate limit in msg/s (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop publishing after this many messages in total (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pmessages: u64,
    /// Publisher confirms with at most this many outstanding per producer (0 = no confirms).
    #[arg(long, default_value_t = 0)]
    confirm: u64,
    /// delivery_mode 2 and durable queues.
    #[arg(long)]
    persistent: bool,
    /// Consume with no-ack.
    #[arg(long)]
    autoack: bool,
    /// Manual acks with multiple=true every N messages (0 or 1 = ack each).
    #[arg(long, default_value_t = 0)]
    multi_ack_every: u64,
    /// basic.qos prefetch per consumer (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    qos: u16,
    #[arg(long, default_value = "direct")]
    exchange_type: String,
    /// Fanout to this many queues, one consumer each (overrides --queues/--consumers).
    #[arg(long, default_value_t = 0)]
    fanout_queues: usize,
    /// Leave queues and exchange in place at the end (e.g. to measure recovery or memory).
    #[arg(long)]
    keep: bool,
    /// Extra bindings that never match (to measure routing cost as bindings grow).
    #[arg(long, default_value_t = 0)]
    extra_bindings: usize,
    /// Stream queues (x-queue-type=stream, durable); consumers need --qos and manual acks.
    #[arg(long)]
    stream: bool,
    /// Where stream consumers start (x-stream-offset: first, last, next or a number).
    #[arg(long, default_value = "first")]
    stream_offset: String,
    /// Name the exchange and queues after this instead of a random id (a --keep run's
    /// queues can then be consumed by a later run).
    #[arg(long)]
    run_id: Option<String>,
    /// Stop once this many messages were consumed (0 = run for --time).
    #[arg(long, default_value_t = 0)]
    cmessages: u64,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Default)]
struct Stats {
    published: AtomicU64,
    confirmed: AtomicU64,
    consumed: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<String> = s
                .rsplit(')')
                .next()?
                .split_whitespace()
                .map(String::from)
                .collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

fn frame(f: &AMQPFrame) -> Vec<u8> {
    gen_frame(f)(WriteContext::from(Vec::new()))
        .map(|c| c.into_inner().0)
        .unwrap_or_default()
}

fn method(ch: u16, m: AMQPClass) -> Vec<u8> {
    frame(&AMQPFrame::Method(ch, m))
}

/// A raw AMQP connection with channel 1 open.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(uri: &str) -> Res<Raw> {
        let u: amq_protocol::uri::AMQPUri = uri.parse()?;
        let stream = TcpStream::connect((u.authority.host.as_str(), u.authority.port)).await?;
        stream.set_nodelay(true)?;
        let mut r = Raw {
            stream,
            buf: Vec::with_capacity(1 << 20),
        };
        r.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        r.expect_method().await?; // start
        let resp = format!(
            "\0{}\0{}",
            u.authority.userinfo.username, u.authority.userinfo.password
        );
        r.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: resp.into_bytes().into(),
                locale: "en_US".into(),
            })),
        ))
        .await?;
        r.expect_method().await?; // tune
        r.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: 16,
                frame_max: 131072,
                heartbeat: 0,
            })),
        ))
        .await?;
        r.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: u.vhost.as_str().into(),
            })),
        ))
        .await?;
        r.expect_method().await?; // open-ok
        r.send(method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ))
        .await?;
        r.expect_method().await?; // channel open-ok
        Ok(r)
    }

    async fn send(&mut self, b: Vec<u8>) -> Res<()> {
        self.stream.write_all(&b).await?;
        Ok(())
    }

    /// Read until one whole frame is buffered; returns (type, payload) and consumes it.
    async fn next_frame(&mut self) -> Res<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.buf.len() >= size + 8 {
                    let kind = self.buf[0];
                    let payload = self.buf[7..7 + size].to_vec();
                    self.buf.drain(..size + 8);
                    return Ok((kind, payload));
                }
            }
            let mut tmp = [0u8; 65536];
            let n = self.stream.read(&mut tmp).await?;
            if n == 0 {
                return Err("connection closed by broker".into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    async fn expect_method(&mut self) -> Res<Vec<u8>> {
        loop {
            let (kind, payload) = self.next_frame().await?;
            if kind == 1 {
                if payload.get(..4) == Some(&[0, 10, 0, 50])
                    || payload.get(..4) == Some(&[0, 20, 0, 40])
                {
                    return Err(
                        format!("broker closed: {}", String::from_utf8_lossy(&payload)).into(),
                    );
                }
                return Ok(payload);
            }
        }
    }
}

async fn producer(
    args: Args,
    exchange: String,
    id: usize,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    quota: Arc<AtomicU64>,
) -> Res<()> {
    let raw = Raw::connect(&args.uri).await?;
    let Raw { stream, mut buf } = raw;
    let (mut rd, mut wr) = stream.into_split();
    let outstanding = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(tokio::sync::Notify::new());
    if args.confirm > 0 {
        wr.write_all(&method(
            1,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        ))
        .await?;
        // Reader: confirm.select-ok, then basic.ack / nack (multiple) → confirmed count.
        let (outstanding, acked, stats) = (outstanding.clone(), acked.clone(), stats.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tmp = vec![0u8; 65536];
            loop {
                while buf.len() >= 7 {
                    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
                    if buf.len() < size + 8 {
                        break;
                    }
                    let p = &buf[7..7 + size];
                    if buf[0] == 1
                        && p.len() >= 13
                        && p[..2] == [0, 60]
                        && (p[2..4] == [0, 80] || p[2..4] == [0, 120])
                    {
                        let tag = u64::from_be_bytes(p[4..12].try_into().unwrap_or([0; 8]));
                        let multiple = p[12] & 1 == 1;
                        let n = if multiple {
                            tag.saturating_sub(last)
                        } else {
                            1
                        };
                        last = last.max(tag);
                        if p[2..4] == [0, 80] {
                            stats.confirmed.fetch_add(n, Ordering::Relaxed);
                        }
                        outstanding.fetch_sub(
                            n.min(outstanding.load(Ordering::Relaxed)),
                            Ordering::Relaxed,
                        );
                        acked.notify_one();
                    }
                    buf.drain(..size + 8);
                }
                match rd.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
        });
    } else {
        // Drain whatever the broker sends (nothing, normally) so it never blocks on us.
        tokio::spawn(async move {
            let mut tmp = vec![0u8; 4096];
            while let Ok(n) = rd.read(&mut tmp).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
    let nq = args.queues.max(1);
    let props = if args.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    // One pre-built message per routing key: publish + header + body; only the timestamp in the
    // body changes per message.
    let templates: Vec<(Vec<u8>, usize)> = (0..nq)
        .map(|q| {
            let mut t = method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: exchange.as_str().into(),
                    routing_key: format!("k{}", (q + id) % nq).into(),
                    mandatory: false,
                    immediate: false,
                })),
            );
            t.extend(frame(&AMQPFrame::Header(
                1,
                AMQPContentHeader {
                    class_id: 60,
                    body_size: args.size as u64,
                    properties: props.clone(),
                },
            )));
            let body_at = t.len() + 7;
            // Body frames fit the negotiated frame_max (131072, minus the 8-byte overhead).
            for chunk in vec![0u8; args.size].chunks(131_072 - 8) {
                t.extend(frame(&AMQPFrame::Body(1, chunk.to_vec())));
            }
            (t, body_at)
        })
        .collect();
    let per_producer = args.rate as f64 / args.producers as f64;
    let batch: u64 = if per_producer > 0.0 { 1 } else { 64 };
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut out = Vec::with_capacity(1 << 20);
    while !stop.load(Ordering::Relaxed) {
        if per_producer > 0.0 {
            let due = start + Duration::from_secs_f64(n as f64 / per_producer);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let mut k = batch;
        if args.confirm > 0 {
            while outstanding.load(Ordering::Relaxed) + k > args.confirm
                && !stop.load(Ordering::Relaxed)
            {
                let _ = tokio::time::timeout(Duration::from_millis(50), acked.notified()).await;
            }
        }
        if args.pmessages > 0 {
            let left = quota.fetch_sub(k.min(quota.load(Ordering::Relaxed)), Ordering::Relaxed);
            k = k.min(left);
            if k == 0 {
                break;
            }
        }
        out.clear();
        let ts = now_ns().to_be_bytes();
        for i in 0..k {
            let (t, body_at) = &templates[((n + i) as usize) % nq];
            let at = out.len();
            out.extend_from_slice(t);
            out[at + body_at..at + body_at + 8].copy_from_slice(&ts);
        }
        if args.confirm > 0 {
            outstanding.fetch_add(k, Ordering::Relaxed);
        }
        wr.write_all(&out).await?;
        n += k;
        stats.published.fetch_add(k, Ordering::Relaxed);
    }
    if args.confirm > 0 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), acked.notified()).await;
        }
    }
    Ok(())
}

/// A stream consumer's x-stream-offset.
fn consume_args(args: &Args) -> FieldTable {
    use amq_protocol::types::AMQPValue;
    let mut t = FieldTable::default();
    if args.stream {
        let v = match args.stream_offset.parse::<i64>() {
            Ok(n) => AMQPValue::LongLongInt(n),
            Err(_) => AMQPValue::LongString(args.stream_offset.as_str().into()),
        };
        t.insert("x-stream-offset".into(), v);
    }
    t
}

async fn consumer(args: Args, queue: String, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Res<()> {
    let mut raw = Raw::connect(&args.uri).await?;
    if args.qos > 0 {
        raw.send(method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: args.qos,
                global: false,
            })),
        ))
        .await?;
        raw.expect_method().await?;
    }
    raw.send(method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.as_str().into(),
            consumer_tag: "".into(),
            no_local: false,
            no_ack: args.autoack,
            exclusive: false,
            nowait: false,
            arguments: consume_args(&args),
        })),
    ))
    .await?;
    raw.expect_method().await?; // consume-ok
    let Raw {
        mut stream,
        mut buf,
    } = raw;
    let every = args.multi_ack_every.max(1);
    let mut last_tag = 0u64;
    let mut unacked = 0u64;
    let mut lat = Vec::with_capacity(1 << 16);
    let mut tmp = vec![0u8; 1 << 17];
    let mut acks = Vec::new();
    let mut pos = 0usize;
    let mut first_body = false;
    while !stop.load(Ordering::Relaxed) {
        // Parse every whole frame in the buffer.
        let mut consumed = 0u64;
        loop {
            if buf.len() - pos < 7 {
                break;
            }
            let b = &buf[pos..];
            let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
            if b.len() < size + 8 {
                break;
            }
            let p = &b[7..7 + size];
            match b[0] {
                1 if p.len() > 5 && p[..4] == [0, 60, 0, 60] => {
                    let tag_len = p[4] as usize;
                    if let Some(t) = p.get(5 + tag_len..13 + tag_len) {
                        last_tag = u64::from_be_bytes(t.try_into().unwrap_or([0; 8]));
                    }
                }
                2 => first_body = true,
                // Only a message's first body frame carries the timestamp and counts.
                3 if first_body && p.len() >= 8 => {
                    first_body = false;
                    let sent = u64::from_be_bytes(p[..8].try_into().unwrap_or([0; 8]));
                    lat.push(
                        (now_ns().saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32,
                    );
                    consumed += 1;
                    if !args.autoack {
                        unacked += 1;
                        if unacked >= every {
                            acks.extend(method(
                                1,
                                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                                    delivery_tag: last_tag,
                                    multiple: every > 1,
                                })),
                            ));
                            unacked = 0;
                        }
                    }
                }
                _ => {}
            }
            pos += size + 8;
        }
        if consumed > 0 {
            stats.consumed.fetch_add(consumed, Ordering::Relaxed);
        }
        if !acks.is_empty() {
            stream.write_all(&acks).await?;
            acks.clear();
        }
        if pos > (1 << 20) || pos == buf.len() {
            buf.drain(..pos);
            pos = 0;
        }
        if lat.len() >= 1 << 16 {
            stats
                .latencies_us
                .lock()
                .map(|mut l| l.append(&mut lat))
                .ok();
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => {}
        }
    }
    stats
        .latencies_us
        .lock()
        .map(|mut l| l.append(&mut lat))
        .ok();
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let mut args = Args::parse();
    args.size = args.size.max(8);
    if args.fanout_queues > 0 {
        args.exchange_type = "fanout".into();
        args.queues = args.fanout_queues;
        args.consumers = args.fanout_queues;
    }
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{:x}", now_ns() & 0xffff_ffff));
    let exchange = format!("perf-x-{run_id}");
    let queues: Vec<String> = (0..args.queues)
        .map(|i| format!("perf-q-{run_id}-{i}"))
        .collect();
    let kind = match args.exchange_type.as_str() {
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        _ => ExchangeKind::Direct,
    };
    let setup = Connection::connect(&args.uri, ConnectionProperties::default()).await?;
    let ch = setup.create_channel().await?;
    ch.exchange_declare(
        exchange.as_str().into(),
        kind,
        ExchangeDeclareOptions {
            durable: args.persistent,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    for (i, q) in queues.iter().enumerate() {
        let mut qargs = FieldTable::default();
        if args.stream {
            qargs.insert(
                "x-queue-type".into(),
                amq_protocol::types::AMQPValue::LongString("stream".into()),
            );
        }
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: args.persistent || args.stream,
                ..Default::default()
            },
            qargs,
        )
        .await?;
        ch.queue_bind(
            q.as_str().into(),
            exchange.as_str().into(),
            format!("k{i}").as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    if args.extra_bindings > 0 {
        // Patterns that cannot match the k<i> keys producers use.
        let q = queues[0].clone();
        let conn = Arc::new(Connection::connect(&args.uri, ConnectionProperties::default()).await?);
        let mut tasks = Vec::new();
        for part in 0..8 {
            let (conn, q, x, n) = (
                conn.clone(),
                q.clone(),
                exchange.clone(),
                args.extra_bindings,
            );
            tasks.push(tokio::spawn(async move {
                let ch = conn.create_channel().await?;
                for i in (part..n).step_by(8) {
                    let key = if i % 2 == 0 {
                        format!("other.{i}.#")
                    } else {
                        format!("other.*.{i}")
                    };
                    ch.queue_bind(
                        q.as_str().into(),
                        x.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions {
                            nowait: i % 64 != 0,
                        },
                        FieldTable::default(),
                    )
                    .await?;
                }
                ch.close(200, "done".into()).await?;
                Ok::<(), lapin::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let quota = Arc::new(AtomicU64::new(args.pmessages));
    let mut consumers = Vec::new();
    for c in 0..args.consumers {
        consumers.push(tokio::spawn(consumer(
            args.clone(),
            queues[c % queues.len()].clone(),
            stats.clone(),
            stop_consumers.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut producers = Vec::new();
    for p in 0..args.producers {
        producers.push(tokio::spawn(producer(
            args.clone(),
            exchange.clone(),
            p,
            stats.clone(),
            stop.clone(),
            quota.clone(),
        )));
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let (mut last_p, mut last_c) = (0, 0);
    let mut next_report = 1;
    // Ends at --time, or as soon as --pmessages are published (confirmed) with no consumers,
    // or --cmessages consumed: the rates are then over the time that work took.
    let done = || {
        let published = if args.confirm > 0 {
            stats.confirmed.load(Ordering::Relaxed)
        } else {
            stats.published.load(Ordering::Relaxed)
        };
        (args.pmessages > 0 && args.consumers == 0 && published >= args.pmessages)
            || (args.cmessages > 0 && stats.consumed.load(Ordering::Relaxed) >= args.cmessages)
    };
    while t0.elapsed() < Duration::from_secs(args.time) && !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if t0.elapsed() >= Duration::from_secs(next_report) {
            let (p, c) = (
                stats.published.load(Ordering::Relaxed),
                stats.consumed.load(Ordering::Relaxed),
            );
            eprintln!(
                "time {next_report}s, sent {} msg/s, received {} msg/s",
                p - last_p,
                c - last_c
            );
            (last_p, last_c) = (p, c);
            next_report += 1;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let published = stats.published.load(Ordering::Relaxed);
    let consumed = stats.consumed.load(Ordering::Relaxed);
    for p in producers {
        if let Ok(Err(e)) = p.await {
            eprintln!("producer: {e}");
        }
    }
    let confirmed = stats.confirmed.load(Ordering::Relaxed);
    let client_cpu = cpu_seconds() - cpu0;
    stop_consumers.store(true, Ordering::Relaxed);
    for c in consumers {
        if let Ok(Err(e)) = c.await {
            eprintln!("consumer: {e}");
        }
    }
    if !args.keep {
        for q in &queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = ch
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = setup.close(200, "done".into()).await;
    let mut lat = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize]
        }
    };
    let counted = if args.confirm > 0 {
        confirmed
    } else {
        published
    };
    println!(
        "{{\"published\":{counted},\"sent\":{published},\"confirmed\":{confirmed},\"consumed\":{consumed},\"seconds\":{elapsed:.2},\"publish_rate\":{:.0},\"consume_rate\":{:.0},\"latency_us\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}},\"client_cpu_s\":{client_cpu:.2}}}",
        counted as f64 / elapsed,
        consumed as f64 / elapsed,
        pct(0.50),
        pct(0.95),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
    Ok(())
}
