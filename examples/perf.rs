//! warren-perf: a PerfTest-style load generator for any AMQP 0-9-1 broker.
//!
//! `cargo run --release --example perf -- --uri amqp://guest:guest@127.0.0.1:5672/%2f --time 10`
//! Prints a progress line per second and a final JSON line. Latency is measured from a
//! timestamp the producer writes into the first 8 bytes of each body. With --confirm, only
//! confirmed messages count as published.

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Publisher confirms with at most this many outstanding per producer (0 = no confirms).
    #[arg(long, default_value_t = 0)]
    confirm: usize,
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
    /// For fanout: number of queues bound (each with one consumer); overrides --queues/--consumers.
    #[arg(long, default_value_t = 0)]
    fanout_queues: usize,
    /// Leave queues and exchange in place at the end (e.g. to measure recovery).
    #[arg(long)]
    keep: bool,
}

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
    // utime + stime of this process, from /proc/self/stat (clock ticks of 100 Hz).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let mut args = Args::parse();
    args.size = args.size.max(8);
    if args.fanout_queues > 0 {
        args.exchange_type = "fanout".into();
        args.queues = args.fanout_queues;
        args.consumers = args.fanout_queues;
    }
    let run_id = format!("{:x}", now_ns() & 0xffff_ffff);
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
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: args.persistent,
                ..Default::default()
            },
            FieldTable::default(),
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
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut conns = Vec::new();
    for c in 0..args.consumers {
        let conn = Connection::connect(&args.uri, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        if args.qos > 0 {
            ch.basic_qos(args.qos, BasicQosOptions::default()).await?;
        }
        let q = queues[c % queues.len()].clone();
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: args.autoack,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let stats = stats.clone();
        let a = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut since_ack = 0u64;
            let mut lat = Vec::with_capacity(1 << 16);
            while let Some(Ok(d)) = consumer.next().await {
                let sent = u64::from_be_bytes(d.data[..8].try_into().unwrap_or([0; 8]));
                lat.push(
                    now_ns()
                        .saturating_sub(sent)
                        .min(u64::from(u32::MAX) * 1000) as u32
                        / 1000,
                );
                stats.consumed.fetch_add(1, Ordering::Relaxed);
                if !a.autoack {
                    since_ack += 1;
                    if a.multi_ack_every <= 1 {
                        let _ = d.acker.ack(BasicAckOptions::default()).await;
                        since_ack = 0;
                    } else if since_ack >= a.multi_ack_every {
                        let _ = d.acker.ack(BasicAckOptions { multiple: true }).await;
                        since_ack = 0;
                    }
                }
                if lat.len() >= 1 << 16 {
                    stats
                        .latencies_us
                        .lock()
                        .map(|mut l| l.append(&mut lat))
                        .ok();
                }
            }
            stats
                .latencies_us
                .lock()
                .map(|mut l| l.append(&mut lat))
                .ok();
        }));
        conns.push(conn);
    }
    for p in 0..args.producers {
        let conn = Connection::connect(&args.uri, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        if args.confirm > 0 {
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
        }
        let stats = stats.clone();
        let stop = stop.clone();
        let a = args.clone();
        let exchange = exchange.clone();
        tasks.push(tokio::spawn(async move {
            let props = if a.persistent {
                BasicProperties::default().with_delivery_mode(2)
            } else {
                BasicProperties::default()
            };
            let mut body = vec![0u8; a.size];
            let mut pending = VecDeque::new();
            let per_producer = a.rate as f64 / a.producers as f64;
            let start = Instant::now();
            let mut n: u64 = 0;
            let nq = a.queues.max(1) as u64;
            while !stop.load(Ordering::Relaxed) {
                if per_producer > 0.0 {
                    let due = start + Duration::from_secs_f64(n as f64 / per_producer);
                    let now = Instant::now();
                    if due > now {
                        tokio::time::sleep(due - now).await;
                    }
                }
                body[..8].copy_from_slice(&now_ns().to_be_bytes());
                let key = format!("k{}", (n + p as u64) % nq);
                match ch
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        props.clone(),
                    )
                    .await
                {
                    Ok(confirm) => {
                        n += 1;
                        stats.published.fetch_add(1, Ordering::Relaxed);
                        if a.confirm > 0 {
                            pending.push_back(confirm);
                            while pending.len() >= a.confirm {
                                if let Some(c) = pending.pop_front() {
                                    if matches!(c.await, Ok(lapin::Confirmation::Ack(_))) {
                                        stats.confirmed.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
            for c in pending {
                if matches!(c.await, Ok(lapin::Confirmation::Ack(_))) {
                    stats.confirmed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        conns.push(conn);
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let (mut last_p, mut last_c) = (0, 0);
    for s in 1..=args.time {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + Duration::from_secs(s))).await;
        let (p, c) = (
            stats.published.load(Ordering::Relaxed),
            stats.consumed.load(Ordering::Relaxed),
        );
        eprintln!(
            "time {s}s, sent {} msg/s, received {} msg/s",
            p - last_p,
            c - last_c
        );
        (last_p, last_c) = (p, c);
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let published = stats.published.load(Ordering::Relaxed);
    let consumed_at_stop = stats.consumed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let confirmed = stats.confirmed.load(Ordering::Relaxed);
    let client_cpu = cpu_seconds() - cpu0;
    for c in &conns {
        let _ = c.close(200, "done".into()).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
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
        "{{\"published\":{counted},\"sent\":{published},\"confirmed\":{confirmed},\"consumed\":{consumed_at_stop},\"seconds\":{elapsed:.2},\"publish_rate\":{:.0},\"consume_rate\":{:.0},\"latency_us\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}},\"client_cpu_s\":{client_cpu:.2}}}",
        counted as f64 / elapsed,
        consumed_at_stop as f64 / elapsed,
        pct(0.50),
        pct(0.95),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
    Ok(())
}
