//! warren-stream-bench: a stream queue over AMQP 0-9-1, on any broker that has them (Warren,
//! RabbitMQ 3.9+). Publishes `--messages` messages of `--size` bytes into a new stream with
//! confirms (at most `--confirm` outstanding), then replays it with `--readers` consumers
//! (prefetch `--prefetch`, multiple acks), reader i starting at offset i × messages / readers
//! and reading to the end. Reports the publish rate, each reader's rate and the aggregate, and
//! the broker's RSS (`--pid`) at its highest while replaying.
//!
//! cargo run --release --example stream_bench -- --uri amqp://guest:guest@127.0.0.1:5672/%2f \
//!     --messages 1000000 --size 1024 --readers 1 --pid $(pidof warren)

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    uri: String,
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    readers: u64,
    /// Publishing connections, each sending its share of the messages.
    #[arg(long, default_value_t = 1)]
    publishers: u64,
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    #[arg(long, default_value_t = 1000)]
    confirm: usize,
    /// The broker's process, for its RSS (0: not reported).
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Replay an existing stream of this name (published by an earlier run with --keep).
    #[arg(long)]
    replay_only: Option<String>,
    /// Leave the stream in place.
    #[arg(long)]
    keep: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One publisher's share, with confirms.
async fn publish_part(uri: String, name: String, n: u64, size: usize, window: usize) -> Res<()> {
    let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(Default::default()).await?;
    let body = vec![b'x'; size];
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut inflight = VecDeque::new();
    for _ in 0..n {
        let c = ch
            .basic_publish(
                "".into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await?;
        inflight.push_back(c);
        while inflight.len() > window {
            if let Some(c) = inflight.pop_front() {
                c.await?;
            }
        }
    }
    for c in inflight {
        c.await?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn publish(name: &str, a: &Args) -> Res<f64> {
    let start = Instant::now();
    let mut parts = Vec::new();
    let n = a.publishers.max(1);
    for i in 0..n {
        let share = a.messages / n + u64::from(i < a.messages % n);
        parts.push(tokio::spawn(publish_part(
            a.uri.clone(),
            name.to_string(),
            share,
            a.size,
            a.confirm,
        )));
    }
    for p in parts {
        p.await??;
    }
    Ok(a.messages as f64 / start.elapsed().as_secs_f64())
}

/// One reader from `from` to the end (`total` offsets in all): its rate.
async fn read(uri: String, name: String, from: u64, count: u64, prefetch: u16) -> Res<f64> {
    let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch, Default::default()).await?;
    let mut args = FieldTable::default();
    let offset = i64::try_from(from).unwrap_or(i64::MAX);
    args.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset));
    let mut consumer = ch
        .basic_consume(name.as_str().into(), "".into(), Default::default(), args)
        .await?;
    let start = Instant::now();
    let every = u64::from(prefetch / 2).max(1);
    let mut got = 0u64;
    while got < count {
        let Some(d) = consumer.next().await else {
            break;
        };
        let d = d?;
        got += 1;
        if got.is_multiple_of(every) || got == count {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    Ok(rate)
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = Args::parse();
    let conn = Connection::connect(&a.uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let name = match &a.replay_only {
        Some(n) => n.clone(),
        None => {
            let name = format!("stream-bench-{}", std::process::id());
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(name.as_str().into(), durable, args)
                .await?;
            let rate = publish(&name, &a).await?;
            let rss = if a.pid > 0 { rss_mib(a.pid) } else { 0.0 };
            println!(
                "publish: {rate:.0} msg/s ({} x {} B, confirms), broker RSS {rss:.0} MiB",
                a.messages, a.size
            );
            name
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), a.pid);
        tokio::spawn(async move {
            let mut max: f64 = 0.0;
            while !done.load(Ordering::Relaxed) && pid > 0 {
                max = max.max(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            max
        })
    };
    let start = Instant::now();
    let mut readers = Vec::new();
    for i in 0..a.readers {
        let from = i * a.messages / a.readers;
        readers.push(tokio::spawn(read(
            a.uri.clone(),
            name.clone(),
            from,
            a.messages - from,
            a.prefetch,
        )));
    }
    let mut total = 0u64;
    for (i, r) in readers.into_iter().enumerate() {
        let rate = r.await??;
        let from = i as u64 * a.messages / a.readers;
        total += a.messages - from;
        println!("reader {i} from offset {from}: {rate:.0} msg/s");
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let rss_max = sampler.await.unwrap_or(0.0);
    println!(
        "replay: {:.0} msg/s aggregate ({total} deliveries in {secs:.1} s), broker RSS at most {rss_max:.0} MiB",
        total as f64 / secs
    );
    if !a.keep {
        ch.queue_delete(name.as_str().into(), Default::default())
            .await?;
    }
    Ok(())
}
