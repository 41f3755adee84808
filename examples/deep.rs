//! warren-deep: how a broker holds a backlog. Publishes `--messages` persistent messages into
//! one durable queue with confirms (no consumer), reporting the publish rate per tenth of the
//! run and the broker's RSS (`--pid`), then drains the queue with one consumer (prefetch 1000,
//! multiple acks) and reports that rate. Any AMQP 0-9-1 broker:
//!
//! cargo run --release --example deep -- --uri amqp://guest:guest@127.0.0.1:5672/%2f \
//!     --messages 1000000 --size 1024 --pid $(pidof warren)

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    uri: String,
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// The broker's process, for its RSS (0: not reported).
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Publisher confirms outstanding at most.
    #[arg(long, default_value_t = 1000)]
    confirm: usize,
    /// Publish only, and leave the queue (to measure a restart with the backlog).
    #[arg(long)]
    keep: bool,
    /// Drain `--messages` from a queue a `--keep` run left (after a restart), publishing none.
    #[arg(long)]
    drain_only: bool,
    #[arg(long, default_value = "deep-bench")]
    queue: String,
    /// Publish transient messages (delivery mode 1): what a broker spills under memory pressure.
    #[arg(long)]
    transient: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = Args::parse();
    let conn = Connection::connect(&a.uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(a.queue.as_str().into(), durable, FieldTable::default())
        .await?;
    if !a.drain_only {
        ch.queue_purge(a.queue.as_str().into(), Default::default())
            .await?;
    }
    ch.confirm_select(Default::default()).await?;
    let body = vec![b'x'; a.size];
    let props = BasicProperties::default().with_delivery_mode(if a.transient { 1 } else { 2 });
    let tenth = (a.messages / 10).max(1);
    let (start, mut t) = (Instant::now(), Instant::now());
    let mut inflight = VecDeque::new();
    let mut rss_max: f64 = 0.0;
    let publish = if a.drain_only { 0 } else { a.messages };
    for i in 1..=publish {
        let c = ch
            .basic_publish(
                "".into(),
                a.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await?;
        inflight.push_back(c);
        while inflight.len() > a.confirm {
            if let Some(c) = inflight.pop_front() {
                c.await?;
            }
        }
        if i.is_multiple_of(tenth) {
            let rss = if a.pid > 0 { rss_mib(a.pid) } else { 0.0 };
            rss_max = rss_max.max(rss);
            println!(
                "published {i}: {:.0} msg/s over the last tenth, broker RSS {rss:.0} MiB",
                tenth as f64 / t.elapsed().as_secs_f64()
            );
            t = Instant::now();
        }
    }
    for c in inflight {
        c.await?;
    }
    let publish_rate = publish as f64 / start.elapsed().as_secs_f64();
    if a.pid > 0 && !a.drain_only {
        // Give the broker its once-a-second housekeeping before reading RSS at rest.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    let rss_full = if a.pid > 0 { rss_mib(a.pid) } else { 0.0 };
    println!(
        "publish: {publish_rate:.0} msg/s; broker RSS with {} queued: {rss_full:.0} MiB (max while publishing {rss_max:.0} MiB)",
        a.messages
    );
    if a.keep {
        return Ok(());
    }
    ch.basic_qos(1000, Default::default()).await?;
    let mut consumer = ch
        .basic_consume(
            a.queue.as_str().into(),
            "deep".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut got = 0u64;
    while got < a.messages {
        let Some(d) = consumer.next().await else {
            break;
        };
        let d = d?;
        got += 1;
        if got.is_multiple_of(500) || got == a.messages {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
        if got.is_multiple_of(tenth) {
            let rss = if a.pid > 0 { rss_mib(a.pid) } else { 0.0 };
            println!("drained {got}: broker RSS {rss:.0} MiB");
        }
    }
    println!(
        "drain: {:.0} msg/s ({got} messages)",
        got as f64 / start.elapsed().as_secs_f64()
    );
    ch.queue_delete(a.queue.as_str().into(), Default::default())
        .await?;
    Ok(())
}
