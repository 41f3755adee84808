//! The latency floor of this machine for row e of BENCHMARKS.md: what p99 a "broker" that does
//! no work at all gets at a fixed rate. A relay thread forwards bytes from one loopback socket to
//! another; the client is built like warren-perf's (a multi-threaded tokio runtime, a producer
//! paced by tokio timers writing an 8-byte timestamp, a consumer task reading it back). Whatever
//! this prints is the cost of the two socket hops and the thread wake-ups, which every broker
//! pays; a broker can only add to it.
//!
//! `cargo run --release --example latency_floor -- [--mode thread|spin] [--rate 1000] [--time 10]`
//!
//! `thread` parks the relay in a blocking read, as an idle broker parks in epoll_wait; `spin`
//! busy-polls a non-blocking socket (one core at 100%) to show what is left once the relay's
//! wake-up is gone. Prints one JSON line in warren-perf's latency format.

use clap::Parser;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream as StdStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// thread (blocking relay) or spin (busy-polling relay).
    #[arg(long, default_value = "thread")]
    mode: String,
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    time: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn relay(l: TcpListener, spin: bool) -> std::io::Result<()> {
    let (mut from, _) = l.accept()?;
    let (mut to, _) = l.accept()?;
    to.set_nodelay(true)?;
    from.set_nonblocking(spin)?;
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let spin = args.mode == "spin";
    std::thread::spawn(move || relay(l, spin));
    let mut tx = tokio::net::TcpStream::connect(addr).await?;
    tx.set_nodelay(true)?;
    // The relay accepts in order: the sending socket first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut rx = tokio::net::TcpStream::connect(addr).await?;
    let total = args.rate.max(1) * args.time;
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        let mut buf = [0u8; 8];
        for _ in 0..total {
            if rx.read_exact(&mut buf).await.is_err() {
                break;
            }
            lat.push(now_ns().saturating_sub(u64::from_be_bytes(buf)) / 1000);
        }
        lat
    });
    let start = Instant::now();
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / args.rate.max(1) as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        tx.write_all(&now_ns().to_be_bytes()).await?;
    }
    let mut lat = reader.await?;
    drop(StdStream::connect(addr));
    lat.sort_unstable();
    let pct = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "{{\"mode\":\"{}\",\"consumed\":{},\"latency_us\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}}}}",
        args.mode,
        lat.len(),
        pct(0.5).unwrap_or(&0),
        pct(0.95).unwrap_or(&0),
        pct(0.99).unwrap_or(&0),
        lat.last().unwrap_or(&0)
    );
    Ok(())
}
