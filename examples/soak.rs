//! Soak: hold many idle connections and many empty queues on a running broker and report what
//! each costs in the broker's resident memory. Not a timed test; see BENCHMARKS.md.
//!
//! ```sh
//! ulimit -n 65536
//! target/release/warren --port 5690 --mgmt-port 0 --in-memory &
//! cargo run --release --example soak -- --port 5690 --pid $! --connections 10000 --queues 100000
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;
use warren::codec::frame;

/// Read frames until a method with this class and method id arrives.
fn wait_for(s: &mut TcpStream, class: u16, method: u16) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 7];
        s.read_exact(&mut head)?;
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0u8; size + 1];
        s.read_exact(&mut payload)?;
        if head[0] == 1 && payload.len() >= 4 {
            let c = u16::from_be_bytes([payload[0], payload[1]]);
            let m = u16::from_be_bytes([payload[2], payload[3]]);
            if (c, m) == (class, method) {
                return Ok(());
            }
        }
    }
}

/// A connection through the handshake (no heartbeats), idle from then on.
fn connect(port: u16) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"AMQP\x00\x00\x09\x01")?;
    wait_for(&mut s, 10, 10)?;
    let mut start_ok = vec![0, 10, 0, 11, 0, 0, 0, 0, 5];
    start_ok.extend_from_slice(b"PLAIN");
    start_ok.extend_from_slice(&12u32.to_be_bytes());
    start_ok.extend_from_slice(b"\0guest\0guest");
    start_ok.push(5);
    start_ok.extend_from_slice(b"en_US");
    let mut out = frame(1, 0, &start_ok);
    out.extend(frame(1, 0, &[0, 10, 0, 31, 0x07, 0xFF, 0, 2, 0, 0, 0, 0]));
    out.extend(frame(1, 0, &[0, 10, 0, 40, 1, b'/', 0, 0]));
    s.write_all(&out)?;
    wait_for(&mut s, 10, 41)?;
    Ok(s)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let port = u16::try_from(arg("--port", 5672)).unwrap_or(5672);
    let pid = u32::try_from(arg("--pid", 0)).unwrap_or(0);
    let n_conns = arg("--connections", 10_000);
    let n_queues = arg("--queues", 100_000);
    let settle = || std::thread::sleep(std::time::Duration::from_secs(2));
    settle();
    let base = rss_kib(pid);

    let t = Instant::now();
    let mut conns = Vec::with_capacity(n_conns as usize);
    for _ in 0..n_conns {
        conns.push(connect(port)?);
    }
    let conn_secs = t.elapsed().as_secs_f64();
    settle();
    let with_conns = rss_kib(pid);

    // Queues: declared on one more connection, nowait, then one declare-ok to sync.
    let mut s = connect(port)?;
    s.write_all(&frame(1, 1, &[0, 20, 0, 10, 0]))?;
    wait_for(&mut s, 20, 11)?;
    let t = Instant::now();
    let mut batch = Vec::new();
    for i in 0..n_queues {
        let name = format!("soak-{i}");
        let mut m = vec![0, 50, 0, 10, 0, 0, name.len() as u8];
        m.extend_from_slice(name.as_bytes());
        m.push(0b10000); // nowait
        m.extend_from_slice(&0u32.to_be_bytes());
        batch.extend(frame(1, 1, &m));
        if batch.len() > 64 * 1024 {
            s.write_all(&batch)?;
            batch.clear();
        }
    }
    s.write_all(&batch)?;
    let mut sync = vec![0, 50, 0, 10, 0, 0, 9];
    sync.extend_from_slice(b"soak-sync");
    sync.push(0);
    sync.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&frame(1, 1, &sync))?;
    wait_for(&mut s, 50, 11)?;
    let queue_secs = t.elapsed().as_secs_f64();
    settle();
    let with_queues = rss_kib(pid);

    let per_conn = (with_conns.saturating_sub(base) * 1024) / n_conns.max(1);
    let per_queue = (with_queues.saturating_sub(with_conns) * 1024) / (n_queues + 1).max(1);
    println!(
        "{{\"connections\":{n_conns},\"queues\":{n_queues},\"rss_base_kib\":{base},\
         \"rss_with_connections_kib\":{with_conns},\"rss_with_queues_kib\":{with_queues},\
         \"bytes_per_idle_connection\":{per_conn},\"bytes_per_empty_queue\":{per_queue},\
         \"connect_secs\":{conn_secs:.2},\"declare_secs\":{queue_secs:.2}}}"
    );
    drop(conns);
    Ok(())
}
