//! The real `warren` binary: flags, data directory, and shutdown on SIGTERM.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn sigterm_closes_connections_with_320_and_exits_0() {
    if external() {
        return;
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("warren-test-{}", uniq("data")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warren");
    let addr = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up, "warren did not start listening");
    assert!(dir.is_dir(), "the data directory is created");
    let mut raw = Raw::open_at(&addr).await;
    raw.open_channel(1).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(raw.expect_close().await, (0, 320, 0, 0));
    let mut exited = None;
    for _ in 0..500 {
        if let Some(s) = child.try_wait().expect("wait") {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(exited.and_then(|s| s.code()), Some(0));
}
