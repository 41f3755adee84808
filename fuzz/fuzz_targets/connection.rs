//! The connection state machine: a real broker on loopback, a valid handshake and channel.open,
//! then arbitrary bytes. Whatever they are, the broker answers or closes, and keeps serving.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::codec::frame;

struct Env {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    prelude: Vec<u8>,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let handle = rt
            .block_on(warren::start(warren::Config {
                port: 0,
                ..Default::default()
            }))
            .expect("broker");
        let addr = handle.local_addr();
        std::mem::forget(handle);
        // Protocol header, start-ok (PLAIN guest), tune-ok, open, channel.open 1.
        let mut p = b"AMQP\x00\x00\x09\x01".to_vec();
        let mut start_ok = vec![0, 10, 0, 11, 0, 0, 0, 0, 5];
        start_ok.extend_from_slice(b"PLAIN");
        start_ok.extend_from_slice(&12u32.to_be_bytes());
        start_ok.extend_from_slice(b"\0guest\0guest");
        start_ok.extend_from_slice(&[5]);
        start_ok.extend_from_slice(b"en_US");
        p.extend(frame(1, 0, &start_ok));
        p.extend(frame(1, 0, &[0, 10, 0, 31, 0x07, 0xFF, 0, 2, 0, 0, 0, 0]));
        p.extend(frame(1, 0, &[0, 10, 0, 40, 1, b'/', 0, 0]));
        p.extend(frame(1, 1, &[0, 20, 0, 10, 0]));
        Env {
            rt,
            addr,
            prelude: p,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let e = env();
    e.rt.block_on(async {
        let Ok(mut s) = tokio::net::TcpStream::connect(e.addr).await else {
            return;
        };
        let _ = s.write_all(&e.prelude).await;
        let _ = s.write_all(data).await;
        let mut sink = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(5), async {
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        // The broker still answers a new connection.
        let alive = tokio::time::timeout(Duration::from_secs(5), async {
            let mut c = tokio::net::TcpStream::connect(e.addr).await.ok()?;
            c.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
            let mut b = [0u8; 7];
            c.read_exact(&mut b).await.ok()
        })
        .await;
        assert!(matches!(alive, Ok(Some(_))), "broker stopped answering");
    });
});
